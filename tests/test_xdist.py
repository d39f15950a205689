"""Under pytest-xdist: results of every worker reach the controller through the test reports,
and only the controller writes the reports."""

from __future__ import annotations

import json

import pytest
from _report_data import parse_page

pytest.importorskip("xdist", reason="needs pytest-xdist (the dev extra)")

SUITE = """
import os
from pathlib import Path

import pytest
from pytest_llmperf import Workload, llmperf

@pytest.mark.parametrize("n", [1, 2, 3, 4])
@llmperf(ttft_p95_ms=60000, min_tps=0.1)
def test_chat(llmperf_bench, llm_engine, n):
    # Which worker ran which test, for the assertions below.
    Path(f"ran_{n}_on_{os.environ['PYTEST_XDIST_WORKER']}").write_text("")
    result = llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=2 + n,
                                                requests=2))
    assert result.errors == 0
"""


def test_two_workers_one_set_of_reports(
    llmperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary = llmperf_pytester.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    llmperf_pytester.makepyfile(test_suite=SUITE)
    result = llmperf_pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "--llmperf", "--llmperf-json=r.json",
        "--llmperf-html=r.html", "--llmperf-markdown=r.md",
    )
    result.assert_outcomes(passed=4)
    ran = sorted(p.name for p in llmperf_pytester.path.glob("ran_*"))
    assert len(ran) == 4
    assert {name.rsplit("_on_", 1)[1] for name in ran} == {"gw0", "gw1"}  # both worked

    # Every worker's results in the controller's files, with their own numbers.
    tests = json.loads((llmperf_pytester.path / "r.json").read_text())["tests"]
    by_id = {t["nodeid"]: t for t in tests}
    assert set(by_id) == {f"test_suite.py::test_chat[{n}]" for n in (1, 2, 3, 4)}
    for n in (1, 2, 3, 4):
        summary_n = by_id[f"test_suite.py::test_chat[{n}]"]["runs"][0]["summary"]
        assert summary_n["output_tokens"] == 2 * (2 + n)

    page = parse_page((llmperf_pytester.path / "r.html").read_text())
    sections = page.find_all("section", class_="test")
    assert {s.attrs["data-nodeid"] for s in sections} == set(by_id)
    assert page.find(id="glance-tests").find(class_="big").text() == "4"
    for s in sections:
        tokens = s.find("svg", data_plot="tokens")
        nodeid = s.attrs["data-nodeid"]
        assert int(tokens.attrs["data-tokens"]) == by_id[nodeid]["runs"][0]["summary"][
            "output_tokens"]

    md = (llmperf_pytester.path / "r.md").read_text()
    assert md.count("| `test_chat[") == 4
    # Written once, by the controller: workers would have appended their own tables.
    assert summary.read_text().count("### pytest-llmperf") == 1
    assert summary.read_text().count("| `test_chat[") == 4
