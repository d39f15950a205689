"""The Markdown table for pull requests and $GITHUB_STEP_SUMMARY.

Split by tier from tests/test_markdown.py: these are its sessions tests; the others are in
tests/unit/report/test_markdown.py.
"""

from __future__ import annotations

import json

import pytest
from helpers import SUITE, table_rows

from pytest_llmperf.formatting import display as fmt
from pytest_llmperf.report.markdown import append_step_summary


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
