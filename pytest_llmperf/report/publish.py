"""Writing the HTML page and the Markdown table at the end of a session (controller only).

``publish`` renders from the session's results document (the ``--llmperf-json`` shape, as
``llmperf report`` does from stored files) and returns the lines written and the errors, one
clear line each, never a traceback. (The paths were checked when the session started:
``files.check_report_paths``.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, os_reason
from .html import render_html
from .markdown import append_step_summary, render_markdown
from .view import build_report, load_history


def publish(
    doc: Mapping[str, Any],
    *,
    html_path: str | None = None,
    md_path: str | None = None,
    baseline_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Write the HTML page and the Markdown summary of a results document (and append the
    summary to ``$GITHUB_STEP_SUMMARY``): (lines written, errors)."""
    env = os.environ if environ is None else environ
    want_summary = bool(env.get("GITHUB_STEP_SUMMARY")) and bool(doc.get("tests"))
    if not (html_path or md_path or want_summary):
        return [], []
    history = load_history(baseline_dir) if html_path else None
    report = build_report(dict(doc), history, with_plots=bool(html_path))
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
