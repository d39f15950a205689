"""Writing the files this project stores (results, baselines, reports, state): plain, sorted,
versioned JSON, written atomically so that no reader ever sees half a file; and output paths
checked before a long run (a path that can never be written stops the session or command
before the benchmark instead of after it)."""

from __future__ import annotations

import io
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import Settings

WRITE_SLICE = 1 << 20  # characters of a string written at once
JSON_BATCH = 4096  # encoder tokens joined into one piece


def atomic_write(path: str | Path, fill: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` atomically: ``fill`` writes the bytes into a temporary file in the same
    directory, which is fsynced and renamed over the target (an exception while ``fill``
    runs leaves the target as it was).

    The file gets the permissions of any file the user creates (mkstemp's are 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str | Iterable[str]) -> None:
    """``text`` (a string, or its pieces, written as they come) written atomically as UTF-8
    (see ``atomic_write``)."""

    def fill(fh: IO[bytes]) -> None:
        out = io.TextIOWrapper(fh, encoding="utf-8", newline="\n")
        # A long string is written in slices, so its bytes are never one more copy of it.
        pieces = ((text[i:i + WRITE_SLICE] for i in range(0, len(text), WRITE_SLICE))
                  if isinstance(text, str) else text)
        for piece in pieces:
            out.write(piece)
        out.flush()
        out.detach()

    atomic_write(path, fill)


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=1, allow_nan=False) + "\n"


def dumps_pieces(data: Any, *, newline: bool = True) -> Iterator[str]:
    """``dumps(data)`` (without its final newline when not ``newline``), the same text in
    pieces: the encoder's tokens joined ``JSON_BATCH`` at a time, so neither the whole text
    nor the token list ``json.dumps`` keeps is ever held."""
    pieces = json.JSONEncoder(sort_keys=True, indent=1, allow_nan=False).iterencode(data)
    while batch := list(itertools.islice(pieces, JSON_BATCH)):
        yield "".join(batch)
    if newline:
        yield "\n"


class ReportPathError(ValueError):
    """A report path that cannot be written."""


def os_reason(exc: OSError) -> str:
    """``Permission denied: out/r.html``: what went wrong, and where."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def check_path(option: str, raw: str) -> None:
    path = Path(raw)
    if path.is_dir():
        raise ReportPathError(f"{option} {raw}: is a directory; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the nearest existing ancestor: we create the rest
    if not parent.is_dir():
        raise ReportPathError(f"{option} {raw}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportPathError(f"{option} {raw}: directory {parent} is not writable"
                              f"{not_writable_hint(parent)}")


def not_writable_hint(directory: Path) -> str:
    """Whose the directory is and who asks (a container volume mounted with the wrong owner
    is the usual case: docker/README.md), or '' where the platform has no uids."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return ""
    try:
        owner = directory.stat().st_uid
    except OSError:
        return ""
    uid = getuid()
    if owner == uid:
        return f" by uid {uid}, its owner"
    return (f" by uid {uid} (it is uid {owner}'s): make it writable for this user, e.g. "
            f"chown {uid} {directory}, or podman's -v DIR:{directory}:U")


def check_report_paths(settings: Settings) -> None:
    """Raise ReportPathError when --llmperf-json, --llmperf-html or --llmperf-markdown cannot
    be written."""
    for option, raw in (("--llmperf-json", settings.json), ("--llmperf-html", settings.html),
                        ("--llmperf-markdown", settings.markdown)):
        if raw:
            check_path(option, raw)
