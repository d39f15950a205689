"""Capacity under an SLO (run/capacity.py, llmperf_bench.capacity): the bracketing search on a
simulated M/M/1 queue whose SLO capacity is known in closed form, then against the oracle
server given a queueing capacity (``slots``), then the marker threshold in a pytest session.

Split by tier from tests/test_capacity.py: these are its sessions tests; the others are in
tests/unit/run/test_capacity.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.capacity import (
    RatePoint,
    point_from_records,
    search_capacity,
)
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer

MS = 1_000_000


# ------------------------------------------------------------------ against the oracle


@pytest.fixture
def slotted() -> Iterator[OracleServer]:
    # 2 slots, each answer 50 ms + 5 x 10 ms = 100 ms: the true capacity is 20 requests/s.
    with OracleServer(OracleConfig(ttft_ms=50, itl_ms=10, slots=2)) as server:
        yield server


def test_oracle_slots_queue_fifo(slotted: OracleServer) -> None:
    engine = OpenAIEngine(slotted.url, tokenizer=WordTokenizer())
    try:
        run_benchmark(engine, Workload(input_tokens=4, output_tokens=6, requests=6, warmup=0,
                                       concurrency=6))
    finally:
        engine.close()
    logs = sorted(slotted.logs, key=lambda g: g.served_ns or 0)
    assert len(logs) == 6
    served = [(g.served_ns - logs[0].served_ns) / MS for g in logs]  # type: ignore[operator]
    # two at once, then two when those finish (100 ms), then the last two (200 ms)
    assert served[:2] == pytest.approx([0, 0], abs=15)
    assert served[2:4] == pytest.approx([100, 100], abs=25)
    assert served[4:] == pytest.approx([200, 200], abs=35)
    for g in logs:  # each one's schedule starts when its slot took it
        assert (g.sent_ns[0] - g.served_ns) / MS == pytest.approx(50, abs=15)  # type: ignore[operator]


def test_capacity_against_the_oracle_contains_the_true_capacity(slotted: OracleServer) -> None:

    engine = OpenAIEngine(slotted.url, tokenizer=WordTokenizer())
    # Near-regular arrivals (gamma, shape 50): below 20/s nothing queues, above it the queue
    # grows without bound, so a loose SLO is decided by saturation alone.
    workload = Workload(input_tokens=4, output_tokens=6, requests=40, warmup=1, seed=3,
                        arrival="gamma", burstiness=50.0)
    slo = {"e2e_ms": 1000.0}

    def measure(rate: float) -> RatePoint:
        n = max(8, math.ceil(rate * 4.0))
        run = run_benchmark(engine, Workload(**{**workload.to_dict(), "rate": rate,
                                                "requests": n}))
        return point_from_records(rate, run.samples, slo, 0.9,
                                  scheduled_rps=run.client.get("scheduled_rate_rps"))

    try:
        result = search_capacity(measure, slo=slo, goodput=0.9, start_rps=8.0, rel_tol=0.1,
                                 max_runs=8)
    finally:
        engine.close()
    # The true capacity: 2 slots over the mean time a slot was held (nominally 100 ms; the
    # server's own scheduling lateness adds a little).
    held_s = [(g.sent_ns[-1] - g.served_ns) / 1e9 for g in slotted.logs
              if g.served_ns is not None and g.sent_ns]
    true_capacity = 2 / float(np.mean(held_s))
    assert true_capacity == pytest.approx(20, rel=0.05)
    low, hi = result.interval
    assert hi is not None, result.describe()
    assert low <= true_capacity <= hi, (true_capacity, result.describe())
    print(f"true {true_capacity:.2f}: {result.describe()}")
    failing = result.point(hi)
    assert failing is not None
    assert failing.saturated or failing.queue_growth, failing.why


def test_marker_min_capacity_rps_passes_and_fails(pytester: pytest.Pytester,
                                                  slotted: OracleServer) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        WL = Workload(input_tokens=4, output_tokens=6, requests=16, warmup=0, seed=1,
                      arrival="gamma", burstiness=50.0)

        @llmperf(min_capacity_rps=4)
        def test_enough(llmperf_bench, llm_engine):
            c = llmperf_bench.capacity(llm_engine, WL, slo={"e2e_ms": 1000}, goodput=0.9,
                                       start_rps=4.0, max_rps=8.0)
            assert c.capacity_rps == 8.0

        @llmperf(min_capacity_rps=100)
        def test_too_little(llmperf_bench, llm_engine):
            llmperf_bench.capacity(llm_engine, WL, slo={"ttft_p95_ms": 1000}, start_rps=8.0,
                                   max_rps=8.0)
        """
    )
    out = pytester.path / "r.json"
    html = pytester.path / "r.html"
    result = pytester.runpytest("--llmperf", f"--llmperf-url={slotted.url}",
                                f"--llmperf-json={out}", f"--llmperf-html={html}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*min_capacity_rps 8 < 100*",
                                 "*llmperf capacity*",
                                 "*test_enough: capacity 8 req/s in [[]7.*, not reached)*"])
    tests = {t["nodeid"].split("::")[-1]: t for t in json.loads(out.read_text())["tests"]}
    cap = tests["test_enough"]["capacity"][0]
    assert cap["capacity_rps"] == 8.0 and cap["stopped"] == "max_rps"
    assert 7.0 < cap["low_rps"] <= 8.0  # the completions/s achieved at 8 req/s
    assert [p["rate_rps"] for p in cap["points"]] == [4.0, 8.0]
    assert all(p["passed"] and p["total_tps"] > 0 for p in cap["points"])
    assert tests["test_enough"]["runs"][0]["summary"]["capacity_rps"] == 8.0
    assert tests["test_enough"]["runs"][0]["workload"]["rate"] == 8.0
    page = html.read_text()
    assert page.count('class="capacity-sweep"') == 2  # one search per test
    for kind in ("goodput", "latency", "pareto"):
        assert page.count(f'data-plot="capacity-{kind}"') == 2
    assert 'data-x="4" data-y="1" data-passed="true"' in page  # goodput 1 at 4 req/s
    assert "capacity 8 req/s in [7." in page
