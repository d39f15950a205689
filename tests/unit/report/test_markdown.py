"""The Markdown table for pull requests and $GITHUB_STEP_SUMMARY.

Split by tier from tests/test_markdown.py: these are its unit tests; the others are in
tests/sessions/test_markdown_session.py.
"""

from __future__ import annotations

from pathlib import Path

from helpers import WARNING, results_doc, table_rows

from pytest_llmperf.report.markdown import cell, render_markdown
from pytest_llmperf.report.view import build_report


def test_regressions_warnings_and_baseline_in_the_table() -> None:
    doc = results_doc(baseline_commit="05c0ffee" * 5)
    text = render_markdown(build_report(doc, with_plots=False), html_link="report.html")
    assert "**regressions** 1" in text and "**baseline** `05c0ffee05`" in text
    rows = {r[0]: r for r in table_rows(text)[1:]}
    assert rows["`test_chat`"][-1] == "❌ ttft_p50_ms +21.2%"
    assert rows["`test_prefill`"][-1] == "no baseline"
    assert rows["`test_prefill`"][-2] == "❌ 1/2: ttft_p50_ms 210 > 100"
    assert f"> ⚠️ **client warning** `test_chat`: {WARNING}" in text
    assert text.rstrip().endswith("Full report: `report.html`")


def test_no_regression_shows_the_gated_changes() -> None:
    doc = results_doc(baseline_commit="05c0ffee" * 5)
    doc["tests"][0]["comparison"]["metrics"][0]["verdict"] = "ok"  # ttft_p50_ms
    rows = {r[0]: r for r in table_rows(render_markdown(build_report(doc)))[1:]}
    assert rows["`test_chat`"][-1] == "⚠️ ttft_p99_ms +50.0%"  # an ungated tail warns
    doc["tests"][0]["comparison"]["metrics"].pop()
    rows = {r[0]: r for r in table_rows(render_markdown(build_report(doc)))[1:]}
    assert rows["`test_chat`"][-1] == "✅ no regression: ttft_p50_ms +21.2%, output_tps +1.0%"
    doc["tests"][0]["comparison"]["metrics"][1]["verdict"] = "inconclusive"
    rows = {r[0]: r for r in table_rows(render_markdown(build_report(doc)))[1:]}
    assert rows["`test_chat`"][-1].startswith("❔ inconclusive: ttft_p50_ms +21.2%")


def test_cells_cannot_break_the_table(tmp_path: Path) -> None:
    assert cell("a | b\nc") == "a \\| b c"
    doc = results_doc()
    doc["tests"][0]["nodeid"] = "test_suite.py::test_x[a|b]"
    rows = table_rows(render_markdown(build_report(doc)))
    assert all(len(r) == len(rows[0]) for r in rows)


def test_repeats_show_the_median() -> None:
    from helpers import make_run

    doc = results_doc()
    doc["tests"][0]["runs"] = [make_run([60.0, 70.0]), make_run([50.0, 52.0, 54.0]),
                               make_run([40.0])]
    rows = {r[0]: r for r in table_rows(render_markdown(build_report(doc)))[1:]}
    row = rows["`test_chat` (3 runs, median)"]
    assert row[2] == "52"  # TTFT p50 of the runs: 65, 52, 40
