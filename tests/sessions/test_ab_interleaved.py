"""Paired A/B with request-level interleaving, against two test oracles whose schedules are
known: the runs are made together (A B B A ...), each engine's numbers are its own, and the
paired gate calls a known slowdown and passes a known non-change."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.bench import run_benchmark_interleaved
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer
from pytest_llmperf.verdict import ab

FAST = OracleConfig(ttft_ms=30, itl_ms=10)
SLOW = OracleConfig(ttft_ms=45, itl_ms=15)  # 50% slower on every token


@pytest.fixture
def servers() -> Iterator[tuple[OracleServer, OracleServer]]:
    with OracleServer(FAST) as a, OracleServer(SLOW) as b:
        yield a, b


@contextlib.contextmanager
def engines(a: OracleServer, b: OracleServer) -> Iterator[tuple[OpenAIEngine, OpenAIEngine]]:
    ea = OpenAIEngine(a.url, tokenizer=WordTokenizer())
    eb = OpenAIEngine(b.url, tokenizer=WordTokenizer())
    try:
        yield ea, eb
    finally:
        ea.close()
        eb.close()


def arrival_order(a: OracleServer, b: OracleServer, since: int = 0) -> str:
    """Which server each request reached, in arrival order."""
    arrivals = sorted([(log.recv_ns, "A") for log in a.logs] +
                      [(log.recv_ns, "B") for log in b.logs])
    return "".join(side for _, side in arrivals[since:])


def test_interleaved_runs_alternate_abba_and_keep_their_own_timelines(
    servers: tuple[OracleServer, OracleServer],
) -> None:
    sa, sb = servers
    w = Workload(input_tokens=8, output_tokens=11, requests=6, warmup=1)
    with engines(sa, sb) as (ea, eb):
        ra, rb = run_benchmark_interleaved(ea, eb, w)
    # The servers saw the warm-up A B, then A B B A A B B A A B B A
    assert arrival_order(sa, sb) == "AB" + "ABBAABBAABBA"
    # Each side's numbers are its own engine's schedule (10 gaps of itl_ms per request).
    assert ra.summary["tpot_p50_ms"] == pytest.approx(10, abs=3)
    assert rb.summary["tpot_p50_ms"] == pytest.approx(15, abs=3)
    assert ra.summary["ttft_p50_ms"] == pytest.approx(30, abs=12)
    assert rb.summary["ttft_p50_ms"] == pytest.approx(45, abs=12)
    # Throughput on the engine's own timeline: B's time is not charged to A. Alone, A needs
    # about 30 + 10 x 10 = 130 ms per request, so 11 tokens / 130 ms ~ 85 tokens/s; charged
    # with B's requests (about 195 ms each) as well it would show about 34.
    assert 60 < ra.summary["output_tps"] < 90
    assert rb.summary["output_tps"] < ra.summary["output_tps"]
    assert ra.summary["requests"] == rb.summary["requests"] == 6
    assert ra.client["interleaved"] and ra.client["other_engine_s"] > 0.2
    # B first: the order flips.
    n_before = len(sa.logs) + len(sb.logs)
    with engines(sa, sb) as (ea, eb):
        run_benchmark_interleaved(ea, eb, Workload(input_tokens=8, output_tokens=3,
                                                   requests=2, warmup=0), b_first=True)
    assert arrival_order(sa, sb, since=n_before) == "BAAB"


def test_paired_gate_on_interleaved_pairs_calls_a_known_slowdown(
    servers: tuple[OracleServer, OracleServer],
) -> None:
    w = Workload(input_tokens=8, output_tokens=6, requests=2, warmup=0)
    with engines(*servers) as (ea, eb):
        slow = ab.run_paired(lambda i: run_benchmark_interleaved(ea, eb, w, b_first=i % 2 == 1),
                             stage1=4, stage2=4, label_a="fast", label_b="slow")
        same = ab.run_paired(lambda i: run_benchmark_interleaved(ea, ea, w, b_first=i % 2 == 1),
                             {"max_regression_pct": 20}, stage1=4, stage2=4)
    assert slow.verdict == "regression" and slow.pairs == 8
    assert slow.metric("tpot_p50_ms").change_pct == pytest.approx(50, abs=15)
    assert "slow regressed against fast" in slow.failure_message()
    assert same.passed and same.verdict in ("ok", "improvement")
    assert abs(same.metric("tpot_p50_ms").change_pct) < 20


def test_concurrent_workloads_cannot_be_interleaved_by_request(
    servers: tuple[OracleServer, OracleServer],
) -> None:
    with engines(*servers) as (ea, eb), pytest.raises(ValueError, match="concurrency=1"):
        run_benchmark_interleaved(ea, eb, Workload(input_tokens=8, output_tokens=3,
                                                   requests=4, concurrency=2))
