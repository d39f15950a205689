"""The Markdown table for pull requests and $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import SUITE, WARNING, results_doc, table_rows

from pytest_llmperf.formatting import display as fmt
from pytest_llmperf.report.markdown import append_step_summary, cell, render_markdown
from pytest_llmperf.report.view import build_report


def test_session_writes_the_table_and_appends_the_step_summary(
    llmperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary_file = llmperf_pytester.path / "step_summary.md"
    summary_file.write_text("## earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    llmperf_pytester.makepyfile(test_suite=SUITE)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-markdown=pr.md",
                                        "--llmperf-json=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["Markdown summary: pr.md",
                                 f"Markdown summary appended to {summary_file}"])
    text = (llmperf_pytester.path / "pr.md").read_text()
    data = {t["nodeid"]: t for t in json.loads((llmperf_pytester.path / "r.json").read_text())
            ["tests"]}

    assert text.startswith("### pytest-llmperf ❌ 1/2 tests passed\n")
    assert "**thresholds** 3/4 passed" in text and "**regressions** 0" in text
    rows = table_rows(text)
    header = rows[0]
    assert header[:2] == ["test", "result"] and header[-2:] == ["thresholds", "vs baseline"]
    by_name = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert set(by_name) == {"`test_fast`", "`test_too_strict`"}
    for name, row in by_name.items():
        summary = data[f"test_suite.py::{name.strip('`')}"]["runs"][0]["summary"]
        assert row["TTFT p50 ms"] == fmt(summary["ttft_p50_ms"])
        assert row["out tok/s"] == fmt(summary["output_tps"])
    assert by_name["`test_fast`"]["result"] == "✅ passed"
    assert by_name["`test_fast`"]["thresholds"] == "✅ 2/2"
    strict = by_name["`test_too_strict`"]
    measured = data["test_suite.py::test_too_strict"]["runs"][0]["summary"]["ttft_p50_ms"]
    assert strict["result"] == "❌ failed"
    assert strict["thresholds"] == f"❌ 1/2: ttft_p50_ms {fmt(measured)} > 1e-06"

    # The same table, appended after what an earlier step wrote.
    summary = summary_file.read_text()
    assert summary.startswith("## earlier step\n")
    assert text in summary


def test_no_step_summary_without_the_variable(
    llmperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    llmperf_pytester.makepyfile(test_suite=SUITE.split("@llmperf(ttft_p50_ms")[0])
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-markdown=out/pr.md")
    result.assert_outcomes(passed=1)
    assert "appended" not in result.stdout.str()
    assert (llmperf_pytester.path / "out" / "pr.md").exists()
    assert append_step_summary("x", environ={}) is None


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
