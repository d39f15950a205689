"""Report paths checked when the session starts, so a path that can never be written stops
the session before a long benchmark instead of after it. Imports nothing heavy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings


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
        raise ReportPathError(f"{option} {raw}: directory {parent} is not writable")


def check_report_paths(settings: Settings) -> None:
    """Raise ReportPathError when --llmperf-json, --llmperf-html or --llmperf-markdown cannot
    be written."""
    for option, raw in (("--llmperf-json", settings.json), ("--llmperf-html", settings.html),
                        ("--llmperf-markdown", settings.markdown)):
        if raw:
            check_path(option, raw)
