"""Reading the files this project stores (results, baselines, state, workloads), bounded.

Every file the plugin or a command reads may come from somewhere it does not control: a shared
bucket, a ``llmperf-baselines`` branch anyone can push to, a results volume of a Kubernetes Job.
So a read here

- opens only a regular file: a FIFO (which would block for ever), a device (``/dev/zero``, which
  never ends) or a directory is refused by name, whatever symlink leads to it;
- reads at most ``limit`` bytes (``LLMPERF_MAX_FILE_MB``, 1024 MiB by default) and says which
  limit a larger file broke, instead of filling the machine's memory;
- parses JSON refusing ``NaN``/``Infinity`` and nesting deeper than Python can follow (a
  ``RecursionError`` becomes one line that names the file).

Every failure is a ``ReadLimitError`` (a ``ValueError``) whose message starts with the path.
Standard library only; no pytest, no project imports.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_FILE_ENV = "LLMPERF_MAX_FILE_MB"
DEFAULT_MAX_FILE_MB = 1024


class ReadLimitError(ValueError):
    """A file that is not a regular file, is larger than the limit, or is not JSON we accept."""


def max_file_bytes() -> int:
    """The largest file any reader here accepts: ``$LLMPERF_MAX_FILE_MB`` MiB (default 1024)."""
    raw = os.environ.get(MAX_FILE_ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_FILE_MB
    except ValueError:
        mb = DEFAULT_MAX_FILE_MB
    if not mb > 0:
        mb = DEFAULT_MAX_FILE_MB
    return int(mb * 1024 * 1024)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (following symlinks); never opens, so never blocks."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` (default
    ``max_file_bytes()``); ``ReadLimitError`` for anything else, ``OSError`` as ``open`` raises
    it (missing file, no permission)."""
    limit = max_file_bytes() if limit is None else limit
    # O_NONBLOCK: opening a FIFO for reading with no writer would block before fstat can look.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadLimitError(f"{path}: {_kind(st.st_mode)}, not a regular file; not read")
        if st.st_size > limit:
            raise ReadLimitError(_too_large(path, st.st_size, limit))
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while we read: stop at the limit all the same
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ReadLimitError(_too_large(path, total, limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: str | Path, size: int, limit: int) -> str:
    return (f"{path}: {size / 2**20:.1f} MiB is larger than the {limit / 2**20:g} MiB limit "
            f"for a file this tool reads (raise {MAX_FILE_ENV} if it is genuine)")


def read_text(path: str | Path, limit: int | None = None) -> str:
    """``read_bytes`` decoded as UTF-8; ``ReadLimitError`` when it is not UTF-8."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadLimitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number this tool accepts")


def loads(text: str | bytes, where: str | Path) -> Any:
    """JSON ``text`` (from ``where``, named in errors) without ``NaN``/``Infinity`` and without
    nesting deeper than the interpreter can follow."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ReadLimitError(f"{where}: JSON nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise ReadLimitError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:
        raise ReadLimitError(f"{where}: not valid JSON ({exc})") from None


def read_json(path: str | Path, limit: int | None = None) -> Any:
    """The JSON document in the regular file at ``path``, bounded as ``read_bytes`` and
    ``loads`` are."""
    return loads(read_bytes(path, limit), path)
