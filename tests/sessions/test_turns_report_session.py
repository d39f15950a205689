"""Multi-turn runs in the HTML report and the Markdown summary: per-session figures, a row per
turn (requests, errors, TTFT p50 and p95, mean prompt length) and TTFT by turn as a plot, the
numbers checked against the JSON results of the same session; single-turn tests unchanged.

Split by tier from tests/test_turns_report.py: these are its sessions tests; the others are in
tests/unit/report/test_turns_report.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from helpers import ITL_MS, PREFILL_MS, TTFT_MS, external_references, parse_page, table_rows
from helpers import metric_cells as cells
from helpers import multiturn_oracle as oracle

from pytest_llmperf.cli.report import main as cli_main
from pytest_llmperf.formatting import display as fmt
from pytest_llmperf.run.metrics import RequestRecord
from pytest_llmperf.testing.oracle import OracleServer

# One session at a time: the server's tokenizer (engines/tokenizers.py ServerTokenizer) shares
# one HTTP connection, which concurrent sessions' turns would use from several threads at once.
SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf(max_errors=0)
def test_chat(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=10, output_tokens=3, requests=3, warmup=0,
                                       concurrency=1, turns=3, think_time_s=0.01))

@llmperf(max_errors=0)
def test_single(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=10, output_tokens=3, requests=3, warmup=0))
"""
CHAT = "test_suite.py::test_chat"
SINGLE = "test_suite.py::test_single"


@pytest.fixture
def uncached() -> Iterator[OracleServer]:
    """No prefix cache: turn k prefills its whole history, so each turn's TTFT differs."""
    with oracle(prefix_cache=False) as server:
        yield server


def per_turn(samples: list[dict[str, Any]], turn: int) -> list[RequestRecord]:
    return [r for r in map(RequestRecord.from_dict, samples)
            if r.turn == turn and not r.warmup]


def check_page(html: str, data: dict[str, Any]) -> None:
    """The multi-turn section of CHAT shows the JSON's numbers; SINGLE has none."""
    page = parse_page(html)
    assert external_references(html) == []
    run = next(t for t in data["tests"] if t["nodeid"] == CHAT)["runs"][0]
    summary, samples = run["summary"], run["samples"]
    section = page.find("section", data_nodeid=CHAT)
    block = section.find("div", class_="multi-turn")
    sessions = block.find("table", class_="multi-turn-sessions").find_all("tr")[1]
    assert cells(sessions) == {
        key: fmt(summary[key]) for key in ("sessions", "session_turns_mean",
                                           "session_duration_p50_s", "session_duration_max_s")}
    rows = [r for r in block.find("table", class_="per-turn").find_all("tr")
            if "data-turn" in r.attrs]
    assert [r.attrs["data-turn"] for r in rows] == ["1", "2", "3"]
    for k, row in enumerate(rows, 1):
        recs = per_turn(samples, k)
        ttfts = [r.ttft_ns / 1e6 for r in recs if r.ttft_ns is not None]
        assert cells(row) == {
            "requests": str(len(recs)), "errors": "0",
            "ttft_p50_ms": fmt(summary[f"ttft_p50_ms_turn{k}"]),
            "ttft_p95_ms": fmt(float(np.percentile(ttfts, 95))),
            "prompt_tokens_mean": fmt(sum(r.prompt_tokens for r in recs) / len(recs)),
        }
    plot = block.find("svg", data_plot="turns")
    lines = {p.attrs["data-label"]: p for p in plot.find_all("path", class_="series")}
    assert set(lines) == {"p50", "p95"}
    points = [(float(c.attrs["data-x"]), float(c.attrs["data-y"]))
              for c in plot.find_all("circle", class_="point")]
    p50 = [(float(k), summary[f"ttft_p50_ms_turn{k}"]) for k in (1, 2, 3)]
    assert points[:3] == [(x, pytest.approx(y, rel=1e-5)) for x, y in p50]
    assert [t.text() for t in plot.find_all("text")
            if t.parent is not None and t.parent.attrs.get("class") == "axes"
            ][-5:-2] == ["1", "2", "3"]  # whole turns on the x axis, then the two labels

    single = page.find("section", data_nodeid=SINGLE)
    assert not single.find_all(class_="multi-turn")
    assert not single.find_all("svg", data_plot="turns")
    assert "3 sessions of 3 turns" in section.find_all("p", class_="sub")[1].text()
    assert "3 requests" in single.find_all("p", class_="sub")[1].text()


def check_markdown(text: str, data: dict[str, Any]) -> None:
    summary = next(t for t in data["tests"] if t["nodeid"] == CHAT)["runs"][0]["summary"]
    rows = table_rows(text)
    start = next(i for i, r in enumerate(rows) if r[0] == "multi-turn test")
    header, body = rows[start], rows[start + 1:]
    assert body == [[
        "`test_chat`", fmt(summary["sessions"]), fmt(summary["session_turns_mean"]),
        fmt(summary["session_duration_p50_s"]), fmt(summary["session_duration_max_s"]),
        " / ".join(fmt(summary[f"ttft_p50_ms_turn{k}"]) for k in (1, 2, 3))]]
    assert len(header) == len(body[0])


def test_session_reports_show_the_per_turn_figures(pytester: pytest.Pytester,
                                                  uncached: OracleServer) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--llmperf", f"--llmperf-url={uncached.url}",
                                "--llmperf-json=r.json", "--llmperf-html=r.html",
                                "--llmperf-markdown=r.md")
    result.assert_outcomes(passed=2)
    data = json.loads((pytester.path / "r.json").read_text())
    summary = data["tests"][0]["runs"][0]["summary"]
    assert summary["sessions"] == 3 and summary["session_turns_mean"] == 3
    # The oracle's schedule: TTFT = ttft_ms + prefill per prompt token (no cache), so the
    # turns' p50s grow with the history: BOS + 10, then + 3 answer + 10 user tokens a turn.
    for k in (1, 2, 3):
        want = TTFT_MS + PREFILL_MS * (11 + (k - 1) * 13)
        assert want <= summary[f"ttft_p50_ms_turn{k}"] < want + 15 + ITL_MS
    check_page((pytester.path / "r.html").read_text(encoding="utf-8"), data)
    check_markdown((pytester.path / "r.md").read_text(encoding="utf-8"), data)

    # llmperf report rebuilds the same from the JSON file.
    assert cli_main(["report", "--html", str(pytester.path / "again.html"), "--markdown",
                     str(pytester.path / "again.md"), "--json", str(pytester.path / "r.json")]) == 0
    check_page((pytester.path / "again.html").read_text(encoding="utf-8"), data)
    check_markdown((pytester.path / "again.md").read_text(encoding="utf-8"), data)
