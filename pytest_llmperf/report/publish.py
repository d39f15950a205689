"""Writing the HTML page and the Markdown table at the end of a session (controller only).

The plugin calls ``check_report_paths`` when it starts, so a report path that can never be
written stops the session before a long benchmark instead of after it, and
``publish_session`` at the end; both return or raise one clear line, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .html import render_html
from .json_report import atomic_write_text
from .markdown import append_step_summary, render_markdown
from .view import build_report, document_from_state, load_history

if TYPE_CHECKING:
    from ..session import SessionState


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


def check_report_paths(settings: Any) -> None:
    """Raise ReportPathError when --llmperf-html or --llmperf-markdown cannot be written."""
    for option, raw in (("--llmperf-html", getattr(settings, "html", None)),
                        ("--llmperf-markdown", getattr(settings, "markdown", None))):
        if raw:
            check_path(option, raw)


def publish_session(
    state: SessionState,
    baseline_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Write the session's HTML and Markdown reports: (lines written, errors)."""
    settings = state.settings
    html_path = getattr(settings, "html", None)
    md_path = getattr(settings, "markdown", None)
    env = os.environ if environ is None else environ
    want_summary = bool(env.get("GITHUB_STEP_SUMMARY")) and bool(state.tests)
    if not (html_path or md_path or want_summary):
        return [], []
    doc = document_from_state(state)
    baseline_dir = baseline_dir or getattr(settings, "baseline_dir", None)
    history = load_history(baseline_dir) if html_path else None
    report = build_report(doc, history, with_plots=bool(html_path))
    done: list[str] = []
    errors: list[str] = []
    if html_path:
        try:
            atomic_write_text(html_path, render_html(report))
            done.append(f"HTML report: {html_path}")
        except OSError as exc:
            errors.append(f"cannot write the HTML report to {html_path}: "
                          f"{os_reason(exc)}")
    if md_path or want_summary:
        text = render_markdown(report, html_link=html_path)
        if md_path:
            try:
                atomic_write_text(md_path, text)
                done.append(f"Markdown summary: {md_path}")
            except OSError as exc:
                errors.append(f"cannot write the Markdown summary to {md_path}: "
                              f"{os_reason(exc)}")
        try:
            where = append_step_summary(text, env)
        except OSError as exc:
            errors.append(f"cannot append to $GITHUB_STEP_SUMMARY: {os_reason(exc)}")
        else:
            if where:
                done.append(f"Markdown summary appended to {where}")
    return done, errors
