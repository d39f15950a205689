"""The HTML report in a real browser: headless Chromium renders it, offline, without errors.

Skipped when no Chromium is installed (scripts/install_chromium.sh installs Debian's).
Set LLMPERF_SCREENSHOT_DIR to keep the screenshot (e.g. as a CI artifact).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import (
    WINDOW,
    parse_page,
    png_size,
    probe,
    results_doc,
    run_chromium,
    write_baselines,
)

from pytest_llmperf.report import plots
from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.view import build_report, load_history

# Injected into a copy of the page (the report itself has no scripts): a Content Security
# Policy that forbids every fetch, and a probe that records errors, policy violations,
# fetched resources and the rendered size of every plot into the DOM that --dump-dom prints.


@pytest.fixture
def report_html(tmp_path: Path) -> str:
    commits = write_baselines(tmp_path / "baselines", [50, 51, 52, 70, 52, 52])
    report = build_report(results_doc(baseline_commit=commits[-1]),
                          load_history(tmp_path / "baselines"))
    return render_html(report)


def test_page_renders_in_chromium_offline_without_errors(
    tmp_path: Path, report_html: str,
) -> None:
    expected = parse_page(report_html).find_all("svg", class_="plot")
    assert len(expected) == 2 * 3 + 3  # per test: 2 CDFs + tokens; trends for test_chat
    result = probe(tmp_path, report_html, "probed.html")
    assert result["errors"] == []
    assert result["resources"] == []  # nothing fetched
    assert result["title"] == "pytest-llmperf report"
    assert [p["plot"] for p in result["plots"]] == [s.attrs["data-plot"] for s in expected]
    for p in result["plots"]:
        assert (p["width"], p["height"]) == (plots.WIDTH, plots.HEIGHT)
        assert p["shapes"] > 5  # axes and data were drawn
        assert p["right"] <= WINDOW[0]  # inside the window, not cut off
    assert result["bodyWidth"] <= WINDOW[0]  # no horizontal scrolling


def test_probe_sees_fetches_and_errors(tmp_path: Path, report_html: str) -> None:
    """The check above is not blind: a page that fetches something fails it."""
    broken = report_html.replace("</body>",
                                 '<img src="http://192.0.2.1/logo.png"></body>', 1)
    result = probe(tmp_path, broken, "broken.html")
    assert any("192.0.2.1" in e for e in result["errors"])


def test_screenshot(tmp_path: Path, report_html: str) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    shot = tmp_path / "report.png"
    proc = run_chromium(tmp_path, page, f"--screenshot={shot}")
    assert shot.exists(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == WINDOW
    # A blank page of this size compresses to a few kB; text, tables and plots do not.
    assert len(data) > 60_000
    keep = os.environ.get("LLMPERF_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "llmperf-report.png")
        shutil.copy(page, Path(keep) / "llmperf-report.html")


def test_the_new_blocks_render_in_chromium(tmp_path: Path) -> None:
    """Issues 24 and 25: a regression's attribution block and the optional tables (open loop
    from the schedule, reasoning, trace replay, server metrics) render offline, without
    errors and inside the window."""
    from pytest_llmperf.verdict.attribution import attribution

    commits = write_baselines(tmp_path / "baselines", [50, 51, 52, 70, 52, 52])
    doc = results_doc(baseline_commit=commits[-1])
    chat = doc["tests"][0]
    summary = chat["runs"][0]["summary"]
    summary.update({"ttft_sched_p50_ms": 90.0, "e2e_sched_p50_ms": 400.0,
                    "schedule_lag_p50_ms": 30.0, "ttfa_p50_ms": 120.0,
                    "reasoning_tokens_mean": 6.0, "prefix_hit_rate": 0.6,
                    "trace_ideal_hit_rate": 0.64, "ttft_cached_p50_ms": 20.0,
                    "ttft_uncached_p50_ms": 60.0})
    base = {"summary": {**summary, "ttft_p50_ms": 40.0, "prefix_hit_rate": 0.9},
            "engine": {"kind": "llama_cpp", "settings": {"n_threads": 2}}}
    cur = {"summary": summary, "engine": {"kind": "llama_cpp", "settings": {"n_threads": 1}}}
    chat["comparison"]["attribution"] = attribution([base], [cur])
    report = build_report(doc, load_history(tmp_path / "baselines"))
    html = render_html(report)
    page = parse_page(html)
    block = page.find("div", class_="attribution")
    assert block is not None and "prefill (TTFT p50)" in block.text()
    assert "settings.n_threads: baseline 2, now 1" in block.text()
    for name in ("schedule-metrics", "reasoning-metrics", "trace-metrics", "server-metrics"):
        assert page.find("table", class_=name) is not None, name
    result = probe(tmp_path, html, "blocks.html")
    assert result["errors"] == [] and result["resources"] == []
    assert result["bodyWidth"] <= WINDOW[0]
