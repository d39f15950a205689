"""Multi-process load generation (``--llmperf-load-workers N``): the connections of a run
spread over N processes on the machine's one monotonic clock, their records merged into one
run. Measured against the known-schedule oracle server like the single-process client, with
the same tolerance (tests/test_openai_engine.py), and every request accounted for.

Split by tier from tests/test_load_workers.py: these are its sessions tests; the others are in
tests/unit/run/test_load_workers.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.loadgen import run_load
from pytest_llmperf.run.workload import Workload, build_prompts
from pytest_llmperf.testing.oracle import OracleServer

TOL_MS = 25.0  # as the single-process session test: a loaded 2-core machine


def test_session_with_two_load_workers_matches_the_schedule(
    pytester: pytest.Pytester, oracle: OracleServer
) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(ttft_p50_ms=60 + 25, itl_p50_ms=15 + 5)
        def test_served(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=24, output_tokens=12,
                                                        requests=12, concurrency=4, warmup=2))
            s = result.summary
            assert s["errors"] == 0 and s["requests"] == 12
            assert s["output_tokens"] == 12 * 12
            assert abs(s["ttft_p50_ms"] - 60) < 25, s["ttft_p50_ms"]
            assert abs(s["itl_p50_ms"] - 15) < 5, s["itl_p50_ms"]
            assert result.client["load_workers"] == 2
            assert result.client["worker_concurrency"] == [2, 2]
        """
    )
    out = pytester.path / "out.json"
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                "--llmperf-load-workers", "2", f"--llmperf-json={out}")
    result.assert_outcomes(passed=1)
    run = json.loads(out.read_text())["tests"][0]["runs"][0]
    samples = run["samples"]
    # Every request accounted for, once, in order, warm-up included: 14 records, 14 served.
    assert [s["index"] for s in samples] == list(range(14))
    assert sum(s["warmup"] for s in samples) == 2
    assert all(s["error"] is None and len(s["chunk_ns"]) == 12 for s in samples)
    assert len(oracle.logs) == 14
    # Each record's TTFT against what the server really did for that prompt.
    by_prompt = {log.body["prompt"]: log for log in oracle.logs}
    assert len(by_prompt) == 14


def test_merged_records_sit_on_the_parents_timeline(oracle: OracleServer) -> None:
    engine = OpenAIEngine(oracle.url)
    try:
        wl = Workload(input_tokens=16, output_tokens=6, requests=8, concurrency=4, warmup=0)
        prompts = build_prompts(engine.tokenizer, wl)
        load = asyncio.run(run_load(engine, prompts, wl, workers=2))
    finally:
        engine.close()
    t0 = load.client["t0_ns"]
    logs = {log.body["prompt"]: log for log in oracle.logs}
    for rec in load.records:
        assert rec.ok, rec.error
        log = logs[prompts[rec.index].text]
        # Both sides stamp with the same clock: the server read the request when the client
        # (another process) sent it, and the client read the first token when the server
        # sent it, give or take the loopback's and the loaded machine's delays (a record on
        # another timeline would be off by the seconds since the processes started).
        assert abs(log.recv_ns - (t0 + rec.send_ns)) < TOL_MS * 1e6
        assert abs((t0 + rec.chunk_ns[0]) - log.sent_ns[0]) < TOL_MS * 1e6
        assert abs((rec.chunk_ns[0] - rec.send_ns) / 1e6 - 60) < TOL_MS


def test_open_loop_over_workers_keeps_one_schedule(oracle: OracleServer) -> None:
    engine = OpenAIEngine(oracle.url)
    try:
        wl = Workload(input_tokens=16, output_tokens=4, requests=10, rate=20.0, warmup=0,
                      seed=3)
        prompts = build_prompts(engine.tokenizer, wl)
        load = asyncio.run(run_load(engine, prompts, wl, workers=2))
    finally:
        engine.close()
    assert all(r.ok for r in load.records) and len(load.records) == 10
    # The seeded schedule, whichever process sent each request: sent when due, not later
    # than the loaded machine's slack.
    for r in load.records:
        assert r.scheduled_ns is not None
        assert -1e6 <= r.send_ns - r.scheduled_ns < 30e6, (r.send_ns - r.scheduled_ns) / 1e6
    assert load.client["load_workers"] == 2
