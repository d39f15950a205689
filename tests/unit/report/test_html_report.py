"""The HTML report: real sessions write it; the page is parsed and its numbers checked.

Split by tier from tests/test_html_report.py: these are its unit tests; the others are in
tests/sessions/test_html_report_session.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import (
    PROFILE,
    WARNING,
    parse_page,
    results_doc,
    write_baselines,
)
from helpers import (
    fake_commit as commit,
)

from pytest_llmperf.cli.report import main as cli_main
from pytest_llmperf.report import plots
from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.view import build_report, load_history


def test_comparison_trends_and_warnings_are_rendered(tmp_path: Path) -> None:
    commits = write_baselines(tmp_path / "baselines", [50, 51, 52, 70, 52, 52])
    doc = results_doc(baseline_commit=commits[-1])
    report = build_report(doc, load_history(tmp_path / "baselines"))
    page = parse_page(render_html(report))

    assert page.find(id="glance-regressions").find(class_="big").text() == "1"
    assert page.find(id="glance-baseline").find(class_="big").text() == commits[-1][:10]
    assert "test_chat: ttft_p50_ms +21.2%" in page.find(id="regression-list").text()
    assert page.find(id="glance-warnings").find(class_="big").text() == "1"

    overview = {r.attrs["data-nodeid"]: r.find_all("td")[3].text()
                for r in page.find(id="overview-table").find_all("tr")
                if "data-nodeid" in r.attrs}
    assert overview == {"test_suite.py::test_chat": "1 regression(s)",
                        "test_suite.py::test_prefill": "no baseline"}

    chat = page.find("section", data_nodeid="test_suite.py::test_chat")
    row = chat.find("tr", data_metric="ttft_p50_ms", data_verdict="regression")
    cells = [td.text() for td in row.find_all("td")]
    assert cells[:5] == ["ttft_p50_ms gated", "52", "63", "+21.2%", "[+13.2%, +29.2%]"]
    assert chat.find("tr", data_metric="output_tps").attrs["data-verdict"] == "ok"
    assert chat.find("tr", data_metric="ttft_p99_ms").attrs["class"] == "warn"
    warning = chat.find("div", class_="client-warnings")
    assert WARNING in warning.text() and warning.attrs["role"] == "alert"

    trend = chat.find("svg", data_plot="trend", data_metric="ttft_p50_ms")
    points = trend.find_all("circle", class_="pt")
    # Six commits oldest first (medians of 3 runs: ttft+2), then this run.
    assert [p.attrs["data-commit"] for p in points] == [c[:7] for c in commits] + ["this run"]
    assert [float(p.attrs["data-value"]) for p in points] == [52, 53, 54, 72, 54, 54, 63]
    assert [p.attrs["data-mark"] for p in points] == ["", "", "", "jump", "", "", "regression"]
    assert "current" in points[-1].attrs["class"]
    assert trend.attrs["data-regressions"] == "1"
    # Throughput trend: higher is better, so the 72 ms commit's drop is the jump.
    tps = chat.find("svg", data_plot="trend", data_metric="output_tps")
    assert [p.attrs["data-mark"] for p in tps.find_all("circle", class_="pt")][3] == "jump"

    prefill = page.find("section", data_nodeid="test_suite.py::test_prefill")
    assert "no baseline" in prefill.find(class_="comparison-status").text()
    assert prefill.find("tr", data_threshold="ttft_p50_ms").find(class_="measured").text() == "210"


def test_current_run_already_saved_as_baseline_is_not_drawn_twice(tmp_path: Path) -> None:
    commits = write_baselines(tmp_path / "b", [50, 51])
    doc = results_doc(baseline_commit=commits[0])
    saved = json.loads((tmp_path / "b" / PROFILE / f"{commits[1]}.json").read_text())
    saved["tests"]["test_suite.py::test_chat"]["runs"] = doc["tests"][0]["runs"]
    (tmp_path / "b" / PROFILE / f"{commits[1]}.json").write_text(json.dumps(saved))
    page = parse_page(render_html(build_report(doc, load_history(tmp_path / "b"))))
    points = page.find("svg", data_plot="trend", data_metric="ttft_p50_ms").find_all("circle")
    assert [p.attrs["data-commit"] for p in points] == [commits[0][:7], commits[1][:7]]
    assert "current" in points[1].attrs["class"] and points[1].attrs["data-mark"] == "regression"


def test_html_escapes_what_tests_print(tmp_path: Path) -> None:
    doc = results_doc()
    doc["tests"][1]["message"] = "llmperf: <script>alert(1)</script> & more"
    doc["tests"][0]["runs"][0]["warnings"] = ['server said "<b>busy</b>"']
    html = render_html(build_report(doc))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "&lt;b&gt;busy&lt;/b&gt;" in html


def test_cli_merges_results_files_with_trends(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    commits = write_baselines(tmp_path / "baselines", [50, 51, 52])
    doc = results_doc(baseline_commit=commits[-1])
    first, second = dict(doc), dict(doc)
    first["tests"], second["tests"] = doc["tests"][:1], doc["tests"][1:]
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(second))
    out = tmp_path / "site" / "index.html"
    md = tmp_path / "site" / "summary.md"
    code = cli_main(["report", "--html", str(out), "--markdown", str(md),
                     "--json", str(tmp_path / "a.json"), "--json", str(tmp_path / "b.json"),
                     "--baselines", str(tmp_path / "baselines")])
    assert code == 0
    assert f"HTML report: {out} (2 test(s))" in capsys.readouterr().out
    page = parse_page(out.read_text())
    assert {s.attrs["data-nodeid"] for s in page.find_all("section", class_="test")} == {
        "test_suite.py::test_chat", "test_suite.py::test_prefill"}
    trend = page.find("svg", data_plot="trend", data_metric="ttft_p50_ms")
    assert len(trend.find_all("circle", class_="pt")) == 4
    assert "| `test_chat` |" in md.read_text()


def test_cli_without_results_shows_the_newest_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    write_baselines(tmp_path / "baselines", [50, 51, 60])
    out = tmp_path / "nightly.html"
    assert cli_main(["report", "--html", str(out),
                     "--baselines", str(tmp_path / "baselines")]) == 0
    page = parse_page(out.read_text())
    section = page.find("section", data_nodeid="test_suite.py::test_chat")
    points = section.find("svg", data_plot="trend", data_metric="ttft_p50_ms").find_all(
        "circle")
    assert [p.attrs["data-commit"] for p in points] == [commit(i)[:7] for i in range(3)]
    assert [p.attrs["data-mark"] for p in points] == ["", "", "jump"]  # 53 -> 62: +17%
    assert "current" in points[-1].attrs["class"]


def test_plot_helpers() -> None:
    assert plots.nice_ticks(0, 64) == [0, 20, 40, 60, 80]
    assert plots.nice_ticks(45, 250)[0] <= 45 and plots.nice_ticks(45, 250)[-1] >= 250
    empty = plots.cdf_svg([("", [])], "TTFT", "ms", metric="ttft")
    assert 'data-empty="true"' in empty and "no samples" in empty
    many = plots.cdf_svg([("", [float(i) for i in range(10_000)])], "ITL", "ms")
    path = parse_page(many).find("path", class_="series")
    assert path.attrs["d"].count("L") <= 2 * plots.MAX_POINTS  # downsampled
    assert float(path.attrs["data-p50"]) == pytest.approx(4999.5)


def test_repeats_are_drawn_and_listed_per_run() -> None:
    from helpers import make_run

    doc = results_doc()
    doc["tests"][0]["runs"] = [make_run([60.0, 70.0], thresholds={"ttft_p50_ms": 60}),
                               make_run([50.0, 52.0, 54.0], thresholds={"ttft_p50_ms": 60})]
    page = parse_page(render_html(build_report(doc)))
    chat = page.find("section", data_nodeid="test_suite.py::test_chat")
    series = chat.find("svg", data_plot="cdf", data_metric="ttft").find_all("path",
                                                                         class_="series")
    assert [(s.attrs["data-label"], s.attrs["data-n"]) for s in series] == [
        ("run 1", "2"), ("run 2", "3")]
    assert [float(s.attrs["data-p50"]) for s in series] == [65, 52]
    rows = chat.find("table", class_="thresholds").find_all("tr", data_threshold="ttft_p50_ms")
    assert [r.find_all("td")[0].text() for r in rows] == ["1", "2"]
    assert ["FAIL" in rows[0].text(), "pass" in rows[1].text()] == [True, True]
    assert len(chat.find("table", class_="metrics").find_all("tr")) == 3  # header + 2 runs


def test_realized_lengths_are_drawn_as_histograms_when_they_vary() -> None:
    """Length distributions (issue 24): each request's realized input and output lengths in
    a histogram per test, its bars' counts readable from the page; a fixed-length run (the
    other test) has none."""
    from helpers import make_run

    doc = results_doc()
    run = make_run([50.0] * 6, tokens=4)
    inputs = [10, 12, 12, 30, 31, 75]
    for sample, n in zip(run["samples"], inputs, strict=True):
        sample["prompt_tokens"] = n
    run["samples"][5]["output_tokens"] = 9  # one answer longer than the others
    run["workload"]["input_tokens"] = {"dist": "lognormal", "mean": 30, "std": 20}
    doc["tests"][0]["runs"] = [run]
    page = parse_page(render_html(build_report(doc)))
    chat = page.find("section", data_nodeid="test_suite.py::test_chat")
    hist = chat.find("svg", data_plot="lengths", data_kind="input")
    series = hist.find("g", class_="series")
    assert (series.attrs["data-n"], series.attrs["data-min"], series.attrs["data-max"]) == (
        "6", "10", "75")
    assert float(series.attrs["data-mean"]) == pytest.approx(sum(inputs) / 6, rel=1e-5)
    bars = [(int(b.attrs["data-lo"]), int(b.attrs["data-hi"]), int(b.attrs["data-n"]))
            for b in series.find_all("rect", class_="bar")]
    assert sum(n for *_, n in bars) == 6
    for lo, hi, n in bars:  # each bar counts the lengths in its bin
        assert n == sum(1 for x in inputs if lo <= x < hi)
    assert bars[0] == (10, 13, 3)  # 66 lengths apart in 24 bins: 3 wide
    out = chat.find("svg", data_plot="lengths", data_kind="output").find("g", class_="series")
    assert (out.attrs["data-min"], out.attrs["data-max"]) == ("4", "9")
    assert "lognormal(mu" in chat.text()  # the workload line names the distribution
    other = page.find("section", data_nodeid="test_suite.py::test_prefill")
    assert other.find_all("svg", data_plot="lengths") == []
