"""Power in the reports (issue 25): the MDE column, the blind mark and the tail's sample count
in the HTML comparison table, the session Markdown, and llmperf compare's renderings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import parse_page, results_doc, write_baselines

from pytest_llmperf.commits.bisect import Commit, Comparison
from pytest_llmperf.commits.compare import CompareOptions, CompareOutcome, result_document
from pytest_llmperf.report import compare as compare_report
from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.report.view import build_report, load_history
from pytest_llmperf.verdict.stats import MetricVerdict

NODE = "test_suite.py::test_chat"


def blind_doc(tmp_path: Path) -> dict[str, Any]:
    commits = write_baselines(tmp_path / "baselines", [50, 51, 52])
    doc = results_doc(baseline_commit=commits[-1])
    [chat] = [t for t in doc["tests"] if t["nodeid"] == NODE]
    chat["outcome"] = "passed"
    ttft, tps, p99 = chat["comparison"]["metrics"]
    ttft.update(verdict="ok", change_pct=1.0, ci_low_pct=-6.0, ci_high_pct=8.0, mde_pct=3.2)
    tps.update(mde_pct=12.3, blind=True, needs=9, needs_unit="repeats")
    p99.update(tail_samples=4, verdict="ok", change_pct=1.0)
    # The run's checks come from thresholds.evaluate: the p95 limit recorded its 4 requests.
    [p95] = [c for c in chat["runs"][0]["client"]["checks"] if c["name"] == "ttft_p95_ms"]
    assert p95["samples"] == 4
    return doc


def test_html_comparison_table_shows_mde_blind_and_tail_counts(tmp_path: Path) -> None:
    doc = blind_doc(tmp_path)
    page = parse_page(render_html(build_report(doc, load_history(tmp_path / "baselines"))))
    chat = page.find("section", data_nodeid=NODE)
    table = chat.find("table", class_="comparison")
    assert "MDE" in [th.text() for th in table.find_all("th")]
    tps = table.find("tr", data_metric="output_tps")
    assert tps.find("td", class_="mde").text() == "12.3%"
    assert tps.find("span", class_="blind").text() == "blind"
    ttft = table.find("tr", data_metric="ttft_p50_ms")
    assert ttft.find("td", class_="mde").text() == "3.2%"
    assert not ttft.find_all("span", class_="blind")
    p99 = table.find("tr", data_metric="ttft_p99_ms")
    assert p99.find("span", class_="samples").text() == "p99 of 4 requests"
    assert p99.find("td", class_="mde").text() == "-"
    # The threshold row of a tail percentile says how many requests it rests on.
    check = chat.find("tr", data_threshold="ttft_p95_ms")
    assert check.find("span", class_="samples").text() == "p95 of 4 requests"
    overview = {r.attrs["data-nodeid"]: r.find_all("td")[3].text()
                for r in page.find(id="overview-table").find_all("tr")
                if "data-nodeid" in r.attrs}
    assert overview[NODE] == "no regression, blind"


def test_markdown_marks_a_blind_pass_with_its_mdes(tmp_path: Path) -> None:
    doc = blind_doc(tmp_path)
    text = render_markdown(build_report(doc, with_plots=False))
    [row] = [line for line in text.splitlines() if line.startswith("| `test_chat`")]
    assert "⚠️ no regression, blind: ttft_p50_ms +1.0% (MDE 3.2%), output_tps +1.0% " \
           "(MDE 12.3%)" in row


def outcome(blind: bool) -> CompareOutcome:
    v = MetricVerdict(metric="tpot_p50_ms", baseline=10.0, current=10.2, change_pct=2.0,
                      ci_low_pct=-9.0, ci_high_pct=13.0, verdict="ok", gated=True,
                      p_value=0.3, method="paired", n_baseline=10, n_current=10,
                      pairs_run=10, mde_pct=28.4 if blind else 3.1, blind=blind,
                      needs=130 if blind else None, needs_unit="pairs")
    comp = Comparison(commit="h" * 40, subject="head", reference="b" * 40, pairs=10,
                      alpha=0.01, alpha_per_test=0.01, tests={"t.py::test": [v]})
    return CompareOutcome(base=Commit("b" * 40, "base"), head=Commit("h" * 40, "head"),
                          comparison=comp, opts=CompareOptions(base="main"), elapsed_s=1.0)


def test_compare_renderings_carry_the_mde_and_the_blind_warning() -> None:
    seen = outcome(blind=True)
    table = compare_report.render_table(seen)
    header, row = table.splitlines()[:2]
    assert header.split()[-2:] == ["MDE", "verdict"] and "28.4%" in row
    assert row.rstrip().endswith("ok (blind)")
    assert ("WARNING t.py::test: blind: tpot_p50_ms could only see changes of 28.4% or more "
            "at 80% power (tolerance 5%); needs about 130 pairs") in table
    assert "blind: 1 gated metric(s) could not see a change of their tolerance (MDE up to " \
           "28.4%)" in seen.headline()
    md = compare_report.render_markdown(seen)
    assert "| MDE | verdict |" in md and "| 28.4% | ⚠️ ok (blind) |" in md
    page = parse_page(compare_report.render_html(seen))
    assert page.find("td", class_="mde").text() == "28.4%"
    assert "needs about 130 pairs" in page.find("div", class_="blind").text()
    doc = result_document(seen)
    assert doc["blind"][0]["mde_pct"] == 28.4 and doc["blind"][0]["needs"] == 130
    assert doc["tests"]["t.py::test"]["metrics"][0]["mde_pct"] == 28.4
    junit = compare_report.render_junit(seen)
    assert 'name="tpot_p50_ms.mde_pct" value="28.4%"' in junit
    quiet = outcome(blind=False)
    assert "blind" not in compare_report.render_table(quiet)
    assert result_document(quiet)["blind"] == []


def test_terminal_lines_carry_the_mde_and_the_blind_warning() -> None:
    from pytest_llmperf.report.terminal import ab_lines, gate_lines

    blind = {"metric": "tpot_p50_ms", "baseline": 10.0, "current": 10.1, "change_pct": 1.0,
             "ci_low_pct": -20.0, "ci_high_pct": 25.0, "verdict": "ok", "gated": True,
             "tolerance_pct": 5.0, "mde_pct": 41.5, "blind": True, "needs": 30,
             "needs_unit": "repeats"}
    line = MetricVerdict.from_dict(blind).blind_text(named=True)
    test = {"nodeid": NODE, "runs": [],
            "comparison": {"status": "compared", "message": "compared with abc",
                           "metrics": [blind], "warnings": [], "blind": [line]}}
    lines = gate_lines([test])
    assert "  tpot_p50_ms: ok, 10.1 vs 10 (+1.0%, interval -20.0%..+25.0%, MDE 41.5%)" in lines
    assert f"  WARNING {line}" in lines
    assert line == ("blind: tpot_p50_ms could only see changes of 41.5% or more at 80% power "
                    "(tolerance 5%); needs about 30 repeats")
    ab_test = {"nodeid": NODE, "ab": [{"message": "B vs A: ok", "metrics": [
        {**blind, "needs_unit": "pairs"}]}]}
    table = ab_lines([ab_test])
    assert table[0].split()[-2:] == ["MDE", "verdict"]
    assert "41.5%" in table[1] and table[1].endswith("ok (blind)")
