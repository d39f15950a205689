"""A paired A/B (``llmperf_bench.compare``, ``--llmperf-ab``) in every report: the HTML page's
overview and tests table, its plots (B beside A), the Markdown headline and table, and the
terminal's gate lines; the stored gate's one-run "inconclusive"/"undecided" lines are left out
of a test that a paired A/B decides (issue 27, point 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    AB_LABEL_B,
    AB_UNDECIDED,
    ab_results_doc,
    make_samples,
    parse_page,
    results_doc,
    table_rows,
)
from helpers import fake_commit as commit

from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.report.terminal import gate_lines, render_text
from pytest_llmperf.report.view import ReportInputError, ab_headline, build_report, load_results
from pytest_llmperf.run.metrics import RequestRecord, RunResult, summarize
from pytest_llmperf.verdict.ab import ABVerdict


def _page(doc: dict[str, Any]) -> Any:
    return parse_page(render_html(build_report(doc)))


def _cells(page: Any, nodeid: str) -> list[Any]:
    row = next(r for r in page.find(id="overview-table").find_all("tr")
               if r.attrs.get("data-nodeid") == nodeid)
    return list(row.find_all("td"))


def test_the_overview_counts_and_lists_the_ab_regressions() -> None:
    page = _page(ab_results_doc())
    card = page.find(id="glance-regressions")
    assert card.find(class_="big").text() == "2"  # tpot_p50_ms and output_tps, in the A/B
    assert "bad" in card.attrs["class"]
    assert card.find(class_="n-ab").text() == "2" and card.find(class_="n-baseline").text() == "0"
    listed = page.find(id="regression-list").text()
    assert "test_decode: A/B output_tps -70.0%" in listed
    assert "test_decode: A/B tpot_p50_ms +233.3%" in listed


def test_the_tests_table_has_an_ab_column_with_the_verdict_and_its_change() -> None:
    page = _page(ab_results_doc())
    heads = [th.text() for th in page.find(id="overview-table").find_all("th")]
    assert heads[:5] == ["test", "result", "thresholds", "vs baseline", "A/B"]
    cells = _cells(page, "test_suite.py::test_decode")
    ab = cells[4].find(class_="ab-headline")
    assert ab.attrs["data-verdict"] == "regression"
    assert ab.find("a").text() == "regression"
    assert [c.text() for c in ab.find_all("span", class_="nowrap")] == [
        "tpot_p50_ms +233.3%", "output_tps -70.0%"]
    assert ab.find("a").attrs["href"] == "#test-1-ab-1"  # the A/B's own table
    assert "Paired A/B" in page.find(id="test-1-ab-1").text()
    # The stored gate decided nothing on A's one run: said once, quietly.
    assert cells[3].text() == "not decided on one run (see A/B)"
    # Without an A/B the table keeps its columns.
    plain = _page(results_doc(baseline_commit=commit(1)))
    assert "A/B" not in [th.text() for th in plain.find(id="overview-table").find_all("th")]


def test_the_stored_gates_undecided_noise_is_left_out_of_an_ab_test() -> None:
    doc = ab_results_doc()
    section = _page(doc).find("section", data_nodeid="test_suite.py::test_decode")
    assert section.find_all("tr", data_verdict="inconclusive") == []
    assert "undecided" not in section.text()
    note = section.find("p", class_="hidden-inconclusive").text()
    assert note.startswith("3 metric(s) not decided on one run against the stored baseline")
    # A decided stored-gate metric is still shown.
    doc["tests"][0]["comparison"]["metrics"][2]["verdict"] = "regression"
    section = _page(doc).find("section", data_nodeid="test_suite.py::test_decode")
    rows = [r for r in section.find("table", class_="comparison").find_all("tr")
            if "data-metric" in r.attrs]
    assert [(r.attrs["data-metric"], r.attrs["data-verdict"]) for r in rows] == [
        ("output_tps", "regression")]
    # The A/B's table comes before the thresholds and the baseline, not below them.
    html = render_html(build_report(ab_results_doc()))
    assert html.index('class="ab-verdict"') < html.index("<h3>Thresholds</h3>")


def test_the_plots_draw_b_beside_a() -> None:
    page = _page(ab_results_doc())
    section = page.find("section", data_nodeid="test_suite.py::test_decode")
    ttft = section.find("svg", data_plot="cdf", data_metric="ttft")
    series = {s.attrs["data-label"]: s.attrs for s in ttft.find_all("path", class_="series")}
    assert list(series) == ["A", AB_LABEL_B]
    assert series["A"]["data-p50"] == "21.5" and series[AB_LABEL_B]["data-p50"] == "23"
    itl = section.find("svg", data_plot="cdf", data_metric="itl")
    p50 = {s.attrs["data-label"]: float(s.attrs["data-p50"])
           for s in itl.find_all("path", class_="series")}
    assert p50["A"] == pytest.approx(5) and p50[AB_LABEL_B] == pytest.approx(50 / 3, rel=1e-3)
    tokens = section.find("svg", data_plot="tokens")
    assert [s.attrs["data-label"] for s in tokens.find_all("path", class_="series")] == [
        "A", AB_LABEL_B]
    assert "This run: A and B (the last pair)" in section.text()


def test_a_compare_without_a_kept_run_plots_its_own_a_samples() -> None:
    doc = ab_results_doc()
    entry = doc["tests"][0]["ab"][0]
    del entry["a_run"]
    entry["samples_a"] = make_samples([30.0, 31.0], itl_ms=4.0, tokens=4)
    entry["label_b"] = "B " + "x" * 60  # a long label is shortened in the legend
    section = _page(doc).find("section", data_nodeid="test_suite.py::test_decode")
    ttft = section.find("svg", data_plot="cdf", data_metric="ttft")
    labels = [s.attrs["data-label"] for s in ttft.find_all("path", class_="series")]
    assert labels == ["", "A", "B " + "x" * 37 + "…"]  # the test's run, then the A/B's pair


def test_ab_headline_names_the_changes_behind_the_verdict() -> None:
    entry = ab_results_doc()["tests"][0]["ab"][0]
    assert ab_headline(entry) == ("regression", "tpot_p50_ms +233.3%, output_tps -70.0%")
    for m in entry["metrics"]:
        m["verdict"] = "ok" if m["gated"] else m["verdict"]
    entry["verdict"] = "ok"
    assert ab_headline(entry) == ("ok", "tpot_p50_ms +233.3%")  # the largest change
    assert ab_headline({"verdict": "inconclusive", "metrics": []}) == ("inconclusive", "")


def test_markdown_puts_the_ab_verdict_in_the_headline_and_the_table() -> None:
    text = render_markdown(build_report(ab_results_doc(), with_plots=False))
    assert text.startswith("### pytest-llmperf ❌ 1/1 tests passed")
    assert "**regressions** 2 (2 in paired A/B)" in text
    header, row = table_rows(text)[:2]
    assert header[-2:] == ["vs baseline", "A/B"]
    assert row[-1] == "❌ regression: tpot_p50_ms +233.3%, output_tps -70.0%"
    assert row[-2] == "not decided on one run (see A/B)"
    assert "undecided" not in text and "inconclusive" not in text
    plain = render_markdown(build_report(results_doc(), with_plots=False))
    assert table_rows(plain)[0][-1] == "vs baseline"


def test_terminal_leaves_the_stored_gates_undecided_lines_out_of_an_ab_test() -> None:
    tests = ab_results_doc()["tests"]
    lines = gate_lines(tests)
    assert lines == [f"test_suite.py::test_decode: A/B {tests[0]['ab'][0]['message']}"]
    assert AB_UNDECIDED not in render_text(tests, width=400)
    # In an --llmperf-ab session, also for a test without an A/B entry of its own.
    tests[0]["ab"] = []
    assert lines != gate_lines(tests) and any("inconclusive" in ln for ln in gate_lines(tests))
    assert any(AB_UNDECIDED in ln for ln in gate_lines(tests))
    assert AB_UNDECIDED in render_text(tests, width=400)
    assert gate_lines(tests, ab=True) == []
    assert AB_UNDECIDED not in render_text(tests, width=400, ab=True)
    # A decided stored-gate metric is still printed.
    tests[0]["comparison"]["metrics"][2]["verdict"] = "regression"
    assert [ln.split(":")[0].strip() for ln in gate_lines(tests, ab=True)] == [
        "test_suite.py", "output_tps"]


def _run(ttfts: list[float]) -> RunResult:
    samples = [RequestRecord.from_dict(s) for s in make_samples(ttfts, itl_ms=5.0, tokens=4)]
    return RunResult(summary=summarize(samples), samples=samples)


def test_the_ab_entry_carries_the_last_pairs_samples() -> None:
    verdict = ABVerdict(verdict="ok", metrics=[], pairs=2, stages=1, alpha=0.01,
                        runs_a=[_run([10.0]), _run([11.0, 12.0])],
                        runs_b=[_run([20.0]), _run([21.0, 22.0, 23.0])])
    data = verdict.to_dict()
    assert [s["index"] for s in data["samples_a"]] == [0, 1]
    assert [s["index"] for s in data["samples_b"]] == [0, 1, 2]
    assert "a_run" not in data
    verdict.a_run = 0  # --llmperf-ab keeps A's last run as the test's run: not copied
    data = verdict.to_dict()
    assert data["a_run"] == 0 and "samples_a" not in data and len(data["samples_b"]) == 3
    json.dumps(data)  # plain JSON
    # Summaries only (no runs kept): nothing to plot, and no empty keys either.
    assert not {"samples_a", "samples_b", "a_run"} & set(
        ABVerdict(verdict="ok", metrics=[], pairs=2, stages=1, alpha=0.01).to_dict())


def test_a_bad_ab_sample_is_a_clean_input_error(tmp_path: Path) -> None:
    doc = ab_results_doc()
    doc["tests"][0]["ab"][0]["samples_b"][1]["send_ns"] = "soon"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportInputError, match=r"tests\[0\]\.ab\[0\]\.samples_b\[1\]: send_ns"):
        load_results([path])
    doc["tests"][0]["ab"][0]["samples_b"][1]["send_ns"] = 0
    doc["tests"][0]["ab"][0]["metrics"][0]["change_pct"] = "big"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportInputError, match=r"ab\[0\]\.metrics\[0\]\.change_pct"):
        load_results([path])


def test_no_baseline_for_every_test_is_one_line_relative_to_the_root() -> None:
    """Issue 26, item 5: one line for a session with no baseline at all."""
    from pathlib import Path

    from pytest_llmperf.report.terminal import START_BASELINE_HINT

    msg = "no baseline in /work/proj/baselines for HEAD 0123456789ab or its ancestors"
    tests = [{"nodeid": f"t.py::test_{i}", "comparison": {"status": "no baseline",
                                                         "message": msg}} for i in range(3)]
    root = Path("/work/proj")
    assert gate_lines(tests, root=root) == [
        "no baseline for any of the 3 tests - no baseline in ./baselines for HEAD "
        f"0123456789ab or its ancestors; {START_BASELINE_HINT}"]
    assert gate_lines(tests, root=root, saving=True)[0].endswith("or its ancestors")
    # One test, two reasons, or a test with something else to show: a line per test.
    assert gate_lines(tests[:1], root=root) == [
        "t.py::test_0: no baseline - no baseline in ./baselines for HEAD 0123456789ab or its "
        "ancestors"]
    other = [*tests[:2], {"nodeid": "t.py::test_x",
                          "comparison": {"status": "no baseline", "message": "other"}}]
    assert len(gate_lines(other)) == 3
    compared = [*tests[:2], {"nodeid": "t.py::test_y", "comparison": {"status": "compared"}}]
    assert len(gate_lines(compared)) == 3
