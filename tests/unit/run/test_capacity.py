"""Capacity under an SLO (run/capacity.py, llmperf_bench.capacity): the bracketing search on a
simulated M/M/1 queue whose SLO capacity is known in closed form, then against the oracle
server given a queueing capacity (``slots``), then the marker threshold in a pytest session.

Split by tier from tests/test_capacity.py: these are its unit tests; the others are in
tests/sessions/test_capacity_session.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from pytest_llmperf.run.capacity import (
    CapacityError,
    CapacityResult,
    RatePoint,
    check_slo,
    point_from_records,
    search_capacity,
    wilson_interval,
)
from pytest_llmperf.run.metrics import RequestRecord

MS = 1_000_000


def mm1_records(rate: float, mu: float, n: int, seed: int, tokens: int = 8,
                prefill_ms: float = 1.0) -> list[RequestRecord]:
    """An M/M/1 queue: Poisson arrivals at ``rate``, exponential service at ``mu`` per
    second, FIFO. The first token comes ``prefill_ms`` after service starts, the rest evenly
    over the service time."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n))
    services = rng.exponential(1 / mu, n)
    free = 0.0
    out = []
    for i, (a, s) in enumerate(zip(arrivals, services, strict=True)):
        start = max(a, free)
        free = start + s + prefill_ms / 1e3
        first = int((start + prefill_ms / 1e3) * 1e9)
        done = int(free * 1e9)
        chunks = [first + (done - first) * k // (tokens - 1) for k in range(tokens)]
        out.append(RequestRecord(index=i, prompt_tokens=4, warmup=False, send_ns=int(a * 1e9),
                                 scheduled_ns=int(a * 1e9), chunk_ns=chunks,
                                 chunk_tokens=[1] * tokens, done_ns=done,
                                 output_tokens=tokens, output_tokens_source="usage"))
    return out


def mm1_measure(mu: float, slo: dict[str, float], target: float, n: int = 20000
                ) -> Callable[[float], RatePoint]:
    def measure(rate: float) -> RatePoint:
        seed = int(rate * 1000)  # deterministic per rate
        return point_from_records(rate, mm1_records(rate, mu, n, seed), slo, target)

    return measure


# M/M/1: the time in system is exponential with rate mu - lambda, so
# P(T <= s) >= g  <=>  lambda <= mu + ln(1 - g) / s.
MU, SLO_S, GOODPUT = 10.0, 0.5, 0.9
TRUE_CAPACITY = MU + math.log(1 - GOODPUT) / SLO_S  # 5.395 requests/s


def test_search_on_mm1_brackets_the_known_capacity() -> None:
    slo = {"e2e_ms": SLO_S * 1e3}
    result = search_capacity(mm1_measure(MU, slo, GOODPUT), slo=slo, goodput=GOODPUT,
                             start_rps=1.0, rel_tol=0.05)
    low, hi = result.interval
    lo = result.capacity_rps
    assert hi is not None
    assert low <= TRUE_CAPACITY <= hi, (low, TRUE_CAPACITY, hi, result.describe())
    assert hi / lo <= 1.05 and result.stopped == "bracketed"
    lo_point = result.point(lo)
    assert lo_point is not None and low == min(lo, lo_point.achieved_rps or lo)
    rates = [p.rate_rps for p in result.points]
    assert rates[:4] == [1.0, 2.0, 4.0, 8.0]  # geometric growth until the first failure
    assert len(rates) <= 12
    # The passing side's goodput interval is above the target, the failing side's below.
    lo_p, hi_p = result.point(lo), result.point(hi)
    assert lo_p is not None and hi_p is not None
    assert lo_p.passed and not hi_p.passed and "goodput" in hi_p.why
    assert lo_p.goodput_low <= lo_p.goodput <= lo_p.goodput_high
    # The analytic goodput at the passing rate lies in the stated interval (M/M/1 formula).
    expected = 1 - math.exp(-(MU - lo) * SLO_S)
    assert lo_p.goodput_low - 0.01 <= expected <= lo_p.goodput_high + 0.01
    # Far below the capacity nothing saturates; latency grows with the rate.
    first = result.points[0]
    assert not first.saturated and not first.queue_growth
    assert first.latency_ms["e2e_p50_ms"] < lo_p.latency_ms["e2e_p50_ms"]  # type: ignore[operator]
    # Deterministic: the same rate gives the same point.
    assert mm1_measure(MU, slo, GOODPUT)(lo).to_dict() == lo_p.to_dict()
    # The JSON form round-trips and says what was tried.
    data = json.loads(json.dumps(result.to_dict()))
    assert CapacityResult.from_dict(data).to_dict() == data
    assert data["version"] == 1 and len(data["points"]) == len(rates)
    assert [p["rate_rps"] for p in data["points"]] == sorted(rates)
    assert data["describe"].startswith(f"capacity {lo:.3g} req/s in [{low:.3g}, {hi:.3g})")


def test_overload_is_saturation_and_queue_growth() -> None:
    slo = {"e2e_ms": 60_000.0}  # an SLO no request misses: only saturation can fail a rate
    p = point_from_records(12.0, mm1_records(12.0, MU, 4000, 1), slo, 0.5)
    assert p.saturated and p.queue_growth and not p.passed
    assert p.achieved_rps is not None and p.achieved_rps == pytest.approx(MU, rel=0.1)
    assert "saturated" in p.why and "queue grew" in p.why
    ok = point_from_records(5.0, mm1_records(5.0, MU, 4000, 1), slo, 0.5)
    assert ok.passed and not ok.saturated and not ok.queue_growth and ok.why == ""
    # The saturation search finds mu, the queue's throughput limit.
    result = search_capacity(
        lambda r: point_from_records(r, mm1_records(r, MU, 6000, 2), slo, 0.5),
        slo=slo, goodput=0.5, start_rps=2.0, rel_tol=0.1)
    assert result.high_rps is not None
    assert result.capacity_rps <= MU * 1.05 and result.high_rps >= MU * 0.9


def test_percentile_bounds_and_the_pareto_figures() -> None:
    recs = mm1_records(4.0, MU, 3000, 3, tokens=10)
    p = point_from_records(4.0, recs, {"e2e_p95_ms": 1.0}, 0.9)  # 1 ms: impossible
    assert not p.passed and "e2e_p95_ms" in p.why and p.goodput == 1.0
    assert p.latency_ms["e2e_p95_ms"] == pytest.approx(
        np.percentile([(r.done_ns - r.scheduled_ns) / MS for r in recs], 95))  # type: ignore[operator]
    # tokens/s per user: 10 tokens over each request's time in system (median)
    per_user = np.median([10 / ((r.done_ns - r.scheduled_ns) / 1e9) for r in recs])  # type: ignore[operator]
    assert p.tps_per_user == pytest.approx(per_user)
    assert p.total_tps == pytest.approx(4.0 * 10, rel=0.1)


def test_edges_of_the_search() -> None:
    slo = {"e2e_ms": 500.0}
    fails = search_capacity(mm1_measure(1.0, slo, 0.9, n=500), slo=slo, goodput=0.9,
                            start_rps=0.5, min_rps=0.1)
    assert fails.capacity_rps == 0.0 and fails.stopped == "min_rps"
    assert [p.rate_rps for p in fails.points] == [0.5, 0.25, 0.125, 0.1]
    easy = search_capacity(mm1_measure(1000.0, slo, 0.9, n=500), slo=slo, goodput=0.9,
                           start_rps=1.0, max_rps=6.0)
    assert easy.capacity_rps == 6.0 and easy.high_rps is None and easy.stopped == "max_rps"
    capped = search_capacity(mm1_measure(MU, slo, 0.9, n=2000), slo=slo, goodput=0.9,
                             start_rps=1.0, rel_tol=0.001, max_runs=6)
    assert capped.stopped == "max_runs" and len(capped.points) == 6
    for bad, match in ((dict(goodput=1.5), "fraction"), (dict(growth=1.0), "above 1"),
                       (dict(start_rps=0.0), "start_rps"), (dict(max_runs=1), "max_runs"),
                       (dict(start_rps=5.0, max_rps=2.0), "must lie in")):
        with pytest.raises(CapacityError, match=match):
            search_capacity(mm1_measure(MU, slo, 0.9), slo=slo, **bad)
    with pytest.raises(CapacityError, match="unknown"):
        check_slo({"ttft": 5})
    with pytest.raises(CapacityError, match="positive"):
        check_slo({"ttft_ms": -1})
    assert check_slo({"ttft_p95_ms": 500, "tpot_ms": 50}) == {"ttft_p95_ms": 500.0,
                                                              "tpot_ms": 50.0}
    low, high = wilson_interval(90, 100)
    assert 0.82 < low < 0.83 and 0.94 < high < 0.95  # Wilson 95%: [0.826, 0.945]


def test_failed_requests_end_the_search_with_an_error() -> None:
    """Issue 23, class 1: a server that dies at 8 req/s (its later requests fail) is no
    capacity of 4 req/s: the failed requests end the search, naming how many at which rate,
    unless ``max_errors`` allows them (then they count as goodput below the target)."""
    slo = {"e2e_ms": 500.0}

    def dying(rate: float) -> RatePoint:
        records = mm1_records(rate, 1000.0, 100, seed=1)
        if rate >= 8.0:
            for r in records[40:]:
                r.error, r.error_kind = "connection refused", "connect"
        return point_from_records(rate, records, slo, 0.9)

    with pytest.raises(CapacityError, match=r"^60 of 100 request\(s\) failed at 8 req/s; "
                                            r"first error: connection refused; the search "
                                            r"stopped"):
        search_capacity(dying, slo=slo, goodput=0.9, start_rps=4.0, max_rps=16.0)
    allowed = search_capacity(dying, slo=slo, goodput=0.9, start_rps=4.0, max_rps=16.0,
                              max_errors=60)
    assert 4.0 <= allowed.capacity_rps < 8.0 and allowed.high_rps == 8.0
    assert allowed.point(8.0).errors == 60  # type: ignore[union-attr]
    with pytest.raises(CapacityError, match="max_errors"):
        search_capacity(dying, slo=slo, max_errors=-1)
