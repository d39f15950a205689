"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no fetches).

``--llmperf-html PATH`` writes it at the end of a session; ``llmperf report --html OUT``
builds the same page from stored results files and baselines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2

from ..formatting import display
from ..metric_table import TABLE_METRICS, with_optional
from .model_table import COLUMNS as MODEL_COLUMNS
from .view import Report

_ENV: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.PackageLoader("pytest_llmperf.report", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


def html_chunks(report: Report) -> Iterator[str]:
    """The page in pieces, as the template makes them (written to a file as they come: the
    page is never one string)."""
    template = _environment().get_template("report.html.j2")
    # Energy and cost columns only when some run has them.
    columns = with_optional(TABLE_METRICS, (s for t in report.tests for s in t.summaries))
    context: dict[str, Any] = {"report": report, "fmt": display, "table_metrics": columns,
                               "model_columns": MODEL_COLUMNS}
    return template.generate(**context)


def render_html(report: Report) -> str:
    return "".join(html_chunks(report))

