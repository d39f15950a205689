"""Multi-turn runs in the HTML report and the Markdown summary: per-session figures, a row per
turn (requests, errors, TTFT p50 and p95, mean prompt length) and TTFT by turn as a plot, the
numbers checked against the JSON results of the same session; single-turn tests unchanged.

Split by tier from tests/test_turns_report.py: these are its unit tests; the others are in
tests/sessions/test_turns_report_session.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import metric_cells as cells
from helpers import parse_page, table_rows
from helpers import turns_run as run

from pytest_llmperf.formatting import display as fmt
from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.report.view import build_report

# ----------------------------------------------------- hand-made results: errors, runs, gaps


def test_errors_missing_turns_and_several_runs() -> None:
    first = run({(0, 1): 10.0, (0, 2): 30.0, (0, 3): None, (1, 1): 20.0, (1, 2): None},
                ttft_p50_ms_turn1=15.0, ttft_p50_ms_turn2=30.0, ttft_p50_ms_turn3=None,
                sessions=2, session_turns_mean=1.5, session_duration_p50_s=2.5,
                session_duration_max_s=4.0)
    second = run({(0, 1): 12.0, (1, 1): 14.0}, ttft_p50_ms_turn1=13.0, sessions=2,
                 session_turns_mean=1.0, session_duration_p50_s=0.5,
                 session_duration_max_s=0.75)
    del second["samples"]  # a results file written without samples
    doc = {"tests": [{"nodeid": "t.py::test_chat", "outcome": "passed",
                      "runs": [first, second]}]}
    report = build_report(doc)
    page = parse_page(render_html(report))
    section = page.find("section", data_nodeid="t.py::test_chat")
    assert "2 sessions of 3 turns" in section.text() and "think time 0.5-1.0 s" in section.text()
    runs = section.find_all("div", class_="multi-turn-run")
    assert [r.attrs["data-run"] for r in runs] == ["run 1", "run 2"]
    rows = [cells(r) for r in runs[0].find_all("tr") if "data-turn" in r.attrs]
    assert rows == [
        {"requests": "2", "errors": "0", "ttft_p50_ms": "15",
         "ttft_p95_ms": fmt(float(np.percentile([10.0, 20.0], 95))), "prompt_tokens_mean": "10"},
        {"requests": "2", "errors": "1", "ttft_p50_ms": "30", "ttft_p95_ms": "30",
         "prompt_tokens_mean": "20"},
        {"requests": "1", "errors": "1", "ttft_p50_ms": "-", "ttft_p95_ms": "-",
         "prompt_tokens_mean": "30"},
    ]
    # Without samples: the summary's p50, nothing counted.
    assert [cells(r) for r in runs[1].find_all("tr") if "data-turn" in r.attrs] == [
        {"requests": "-", "errors": "-", "ttft_p50_ms": "13", "ttft_p95_ms": "-",
         "prompt_tokens_mean": "-"}]
    assert cells(runs[1].find("table", class_="multi-turn-sessions").find_all("tr")[1]) == {
        "sessions": "2", "session_turns_mean": "1", "session_duration_p50_s": "0.5",
        "session_duration_max_s": "0.75"}
    # Several runs: one p50 line each; turn 3 of run 1 has no value and is left out.
    plot = section.find("svg", data_plot="turns")
    lines = {p.attrs["data-label"] for p in plot.find_all("path", class_="series")}
    assert lines == {"run 1 p50", "run 2 p50"}
    assert [(c.attrs["data-x"], c.attrs["data-y"])
            for c in plot.find_all("circle", class_="point")] == [
        ("1", "15"), ("2", "30"), ("1", "13")]

    text = render_markdown(report)
    rows_md = table_rows(text)
    start = next(i for i, r in enumerate(rows_md) if r[0] == "multi-turn test")
    assert rows_md[start + 1:] == [
        ["`test_chat` (run 1)", "2", "1.5", "2.5", "4", "15 / 30 / -"],
        ["`test_chat` (run 2)", "2", "1", "0.5", "0.75", "13"],
    ]


def test_single_turn_reports_are_unchanged(tmp_path: Path) -> None:
    from helpers import results_doc

    report = build_report(results_doc())
    html = render_html(report)
    assert all(not t.multi_turn and not t.turns_plot for t in report.tests)
    assert "multi-turn" not in html and 'data-plot="turns"' not in html
    assert "multi-turn" not in render_markdown(report)
