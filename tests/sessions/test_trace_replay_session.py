"""Trace replay against the known-schedule oracle (metrics and a modelled prefix cache): the
hit rate the oracle's own metrics report equals the trace's offline ideal, the requests the
trace expects cached answer sooner by the modelled prefill, arrivals follow the trace's
timestamps, and a session reports the trace figures in JSON, JUnit and HTML and gates on
them."""

from __future__ import annotations

import json
import shutil
import statistics
import xml.etree.ElementTree as ET

import pytest
from helpers import ROOT, oracle_bench

from pytest_llmperf.run.trace_cache import ideal_hit_rate, is_cached
from pytest_llmperf.run.traces import read_trace
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

MOONCAKE = ROOT / "example_suites" / "traces" / "mooncake_sample.jsonl"
PREFILL_MS = 1.0  # per uncached prompt token


def test_oracle_hit_rate_and_ttft_follow_the_trace() -> None:
    config = OracleConfig(ttft_ms=5, itl_ms=1, metrics=True, prefix_cache=True,
                          prefill_ms_per_token=PREFILL_MS)
    wl = Workload(trace=str(MOONCAKE), requests=48, warmup=1, trace_block_size=32,
                  trace_speedup=4.0, concurrency=8)
    with OracleServer(config) as oracle:
        result = oracle_bench(oracle, wl)
        logs = list(oracle.logs)
    s = result.summary
    assert s["errors"] == 0 and s["requests"] == 48
    offline = ideal_hit_rate(read_trace(MOONCAKE), 32)
    assert offline == pytest.approx(0.6398, abs=1e-4)
    assert s["trace_ideal_hit_rate"] == pytest.approx(offline)
    # The oracle counts hits in blocks of 16 tokens, as the ideal does: within a few %.
    assert s["prefix_hit_rate"] == pytest.approx(offline, abs=0.03)
    # Per request, the oracle's uncached tokens (token-level, answers in its cache too) are
    # the trace's expectation to within a block of 16.
    measured = [r for r in result.samples if not r.warmup]
    assert len(logs) == 49
    records = sorted(measured, key=lambda r: r.index)
    for r, log in zip(records, logs[1:], strict=True):
        assert log.uncached_tokens + 1 >= r.prompt_tokens - (r.trace_cached_tokens or 0) - 16
        assert log.uncached_tokens <= r.prompt_tokens - (r.trace_cached_tokens or 0)
    # Cached requests answer sooner, by about the modelled prefill of the tokens they skip.
    cached = [log.prefill_ns / 1e6 for r, log in zip(records, logs[1:], strict=True)
              if is_cached(r)]
    uncached = [log.prefill_ns / 1e6 for r, log in zip(records, logs[1:], strict=True)
                if not is_cached(r)]
    modelled = statistics.median(uncached) - statistics.median(cached)
    assert s["trace_cached_requests"] == len(cached) == 36 and modelled > 50
    measured_gap = s["ttft_uncached_p50_ms"] - s["ttft_cached_p50_ms"]
    assert 0.5 * modelled < measured_gap < 1.5 * modelled + 10, (measured_gap, modelled)
    # Request by request, TTFT is the modelled prefill plus the oracle's 5 ms (and noise).
    rest = [(r.ttft_ns or 0) / 1e6 - log.prefill_ns / 1e6
            for r, log in zip(records, logs[1:], strict=True)]
    assert 4 < statistics.median(rest) < 30, rest
    # Arrivals on the trace's timestamps / 4, from the first replayed entry.
    entries = read_trace(MOONCAKE)
    due = [r.scheduled_ns for r in records]
    assert all(d is not None for d in due)
    want = [(e.timestamp_ms - entries[0].timestamp_ms) / 4 for e in entries]
    got = [(d or 0) / 1e6 - (due[0] or 0) / 1e6 for d in due]
    assert got == pytest.approx(want, abs=0.01)
    sends = [(r.send_ns - records[0].send_ns) / 1e6 for r in records]
    assert max(abs(a - b) for a, b in zip(sends, want, strict=True)) < 50
    assert result.client["arrival"] == "trace"


def test_a_session_reports_and_gates_the_trace_figures(pytester: pytest.Pytester) -> None:
    shutil.copy(MOONCAKE, pytester.path / "trace.jsonl")
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(ttft_cached_p50_ms=1.0)
        def test_replay(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(
                trace="trace.jsonl", trace_block_size=32, requests=24, warmup=0,
                trace_speedup=8.0, concurrency=4))
            assert result.errors == 0
        """
    )
    out, junit, html, md = (pytester.path / n for n in ("out.json", "junit.xml",
                                                        "report.html", "pr.md"))
    config = OracleConfig(ttft_ms=5, itl_ms=1, metrics=True, prefix_cache=True,
                          prefill_ms_per_token=PREFILL_MS)
    with OracleServer(config) as oracle:
        result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                    f"--llmperf-json={out}", f"--junitxml={junit}",
                                    f"--llmperf-html={html}", f"--llmperf-markdown={md}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ttft_cached_p50_ms*> 1*"])
    test = json.loads(out.read_text())["tests"][0]
    run = test["runs"][0]
    s = run["summary"]
    offline = ideal_hit_rate(read_trace(MOONCAKE)[:24], 32)
    assert s["trace_ideal_hit_rate"] == pytest.approx(offline)
    assert s["prefix_hit_rate"] == pytest.approx(offline, abs=0.03)
    assert s["ttft_cached_p50_ms"] < s["ttft_uncached_p50_ms"]
    assert run["workload"]["trace"] == "trace.jsonl" and run["client"]["arrival"] == "trace"
    assert [x["trace_cached_tokens"] for x in run["samples"]][:3] == [0, 0, 0]
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert float(props["trace_ideal_hit_rate"] or "nan") == pytest.approx(offline)
    page = html.read_text()
    assert 'data-metric="trace_ideal_hit_rate"' in page and 'data-metric="prefix_hit_rate"' in page
    rows = [line for line in md.read_text().splitlines() if line.startswith("| `test_replay")]
    trace_row = [r for r in rows if r.count("|") == 7]
    assert len(trace_row) == 1, rows
    cells = [c.strip() for c in trace_row[0].strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(offline, abs=0.01)  # ideal, then the server's
    assert float(cells[2]) == pytest.approx(offline, abs=0.03)


def test_a_replay_spread_over_load_workers_keeps_the_trace() -> None:
    """--llmperf-load-workers 2: the arrivals are dealt to two processes on the one schedule;
    the records merge with their expected cached tokens, and the oracle's hit rate is still
    the ideal."""
    config = OracleConfig(ttft_ms=5, itl_ms=1, metrics=True, prefix_cache=True)
    wl = Workload(trace=str(MOONCAKE), requests=48, warmup=2, trace_block_size=32,
                  trace_speedup=4.0)
    with OracleServer(config) as oracle:
        result = oracle_bench(oracle, wl, load_workers=2)
    s = result.summary
    assert result.client["load_workers"] == 2 and s["errors"] == 0 and s["requests"] == 48
    assert s["trace_ideal_hit_rate"] == pytest.approx(ideal_hit_rate(read_trace(MOONCAKE), 32))
    assert s["prefix_hit_rate"] == pytest.approx(s["trace_ideal_hit_rate"], abs=0.03)
    assert s["trace_cached_requests"] == 36


def test_duration_s_cuts_the_replay() -> None:
    """Entries due at or after duration_s (on the sped-up clock) are not sent; the ideal hit
    rate covers the requests sent."""
    wl = Workload(trace=str(MOONCAKE), requests=48, warmup=0, trace_block_size=32,
                  trace_speedup=4.0, duration_s=0.5)
    entries = read_trace(MOONCAKE)
    due = [(e.timestamp_ms - entries[0].timestamp_ms) / 4e3 for e in entries]
    sent = sum(1 for d in due if d < 0.5)
    assert 3 < sent < 48
    with OracleServer(OracleConfig(ttft_ms=5, itl_ms=1)) as oracle:
        result = oracle_bench(oracle, wl)
    s = result.summary
    assert s["requests"] == sent and result.client["not_sent"] == 48 - sent
    assert s["trace_ideal_hit_rate"] == pytest.approx(ideal_hit_rate(entries[:sent], 32))
