"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no fetches).

``--llmperf-html PATH`` writes it at the end of a session; ``llmperf report --html OUT``
builds the same page from stored results files and baselines.
"""

from __future__ import annotations

from typing import Any

import jinja2

from ..formatting import display
from ..metric_table import TABLE_METRICS, with_optional
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


def render_html(report: Report) -> str:
    template = _environment().get_template("report.html.j2")
    # Energy and cost columns only when some run has them.
    columns = with_optional(TABLE_METRICS, (s for t in report.tests for s in t.summaries))
    context: dict[str, Any] = {"report": report, "fmt": display, "table_metrics": columns}
    return template.render(**context)

