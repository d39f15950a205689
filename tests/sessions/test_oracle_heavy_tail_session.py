"""The oracle's heavy-tailed TTFT (``OracleConfig.ttft_tail``, issue 25): each request's first
token comes ``ttft_ms`` x its seeded draw after it was read, the draws known in advance
(``heavy_tail.factor``), and a client measures that schedule."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import oracle_bench

from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing import heavy_tail
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

SPEC = "lognormal:1"


def test_each_request_gets_its_seeded_draw_and_the_client_measures_it() -> None:
    cfg = OracleConfig(ttft_ms=4.0, itl_ms=1.0, ttft_tail=SPEC, ttft_tail_seed=5)
    with OracleServer(cfg) as oracle:
        result = oracle_bench(oracle, Workload(input_tokens=8, output_tokens=2, requests=40,
                                               warmup=0))
        logs = list(oracle.logs)
    assert len(logs) == 40
    expected = [heavy_tail.factor(SPEC, 5, i) for i in range(40)]
    assert [log.ttft_factor for log in logs] == expected
    # The first token was due ttft_ms x factor after the request was read, and went then.
    for log, f in zip(logs, expected, strict=True):
        assert (log.scheduled_ns[0] - log.recv_ns) / 1e6 == pytest.approx(4.0 * f, abs=0.01)
        assert log.sent_ns[0] >= log.scheduled_ns[0]
    # The client's TTFTs follow the draws. Per request, never below the schedule (the client's
    # clock starts before the server reads the request and stops after the token went); above
    # it by the client's own time only, which on a loaded 2-core machine is a few ms (the
    # bounds below leave room for that, and still fail a client that missed the draws: the
    # schedule's p99 is ~10x its p50).
    ttfts = [4.0 * f for f in expected]
    measured = [r.ttft_ns / 1e6 for r in sorted(result.samples, key=lambda r: r.index)]
    for got, due in zip(measured, ttfts, strict=True):
        assert got >= due
    p50, p99 = np.percentile(ttfts, 50), np.percentile(ttfts, 99)
    assert p50 <= result.summary["ttft_p50_ms"] < p50 + 15.0
    assert result.summary["ttft_p99_ms"] == pytest.approx(p99, abs=max(6.0, 0.2 * p99))
    assert p99 > p50 + 15.0  # the tail lies beyond the p50's upper bound
    assert max(expected) > 4 * min(expected)  # heavy-tailed indeed


def test_the_same_seed_gives_the_same_schedule_and_a_bad_spec_fails_at_start() -> None:
    cfg = OracleConfig(ttft_ms=1.0, itl_ms=1.0, ttft_tail="pareto:2.5", ttft_tail_seed=9)
    factors = []
    for _ in range(2):
        with OracleServer(cfg) as oracle:
            oracle_bench(oracle, Workload(input_tokens=4, output_tokens=1, requests=5, warmup=1))
            factors.append([log.ttft_factor for log in oracle.logs])
    assert factors[0] == factors[1] == [heavy_tail.factor("pareto:2.5", 9, i)
                                        for i in range(6)]
    with pytest.raises(ValueError, match=r"^ttft_tail 'lognormal:-1': SIGMA must be a positive"):
        OracleServer(OracleConfig(ttft_tail="lognormal:-1"))
    # Without ttft_tail every TTFT is the schedule's.
    with OracleServer(OracleConfig(ttft_ms=1.0, itl_ms=1.0)) as plain:
        oracle_bench(plain, Workload(input_tokens=4, output_tokens=1, requests=3, warmup=0))
        assert [log.ttft_factor for log in plain.logs] == [1.0, 1.0, 1.0]
