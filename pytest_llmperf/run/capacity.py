"""Capacity under an SLO: the highest request rate at which enough requests meet the SLO.

Pure search logic, no pytest: ``search_capacity(measure, ...)`` calls ``measure(rate)`` (one
open-loop run at ``rate`` requests/s, returning a ``RatePoint``) at a growing series of rates
(geometric, x``growth``) until one fails, then bisects the bracket [last passing rate, first
failing rate] until it is narrower than ``rel_tol``. ``point_from_records`` makes a
``RatePoint`` from the load generator's request records (``fixtures/bench.py`` runs the real
load generator; the tests run a simulated queue).

A rate *passes* when
- the goodput (the fraction of measured requests that succeeded and met every per-request
  bound of the SLO: ``ttft_ms``, ``tpot_ms``, ``e2e_ms``) is at least the target;
- every percentile bound of the SLO (summary keys such as ``ttft_p95_ms``) holds;
- the service is not saturated: requests completed at no less than ``min_achieved_ratio`` of
  the rate they were scheduled at, and the queue did not grow (the median TTFT of the last
  third of the requests is under the middle third's 90th percentile, or within 10 ms of its
  median, or not larger by a one-sided Mann-Whitney test at 1%; checked from 30 successful
  requests on).

Latencies here are counted from each request's *scheduled* arrival (open loop), so time a
request waited in the client for a free slot counts against the SLO as it would for a user
(``metrics.request_latency(..., from_due=True)``: the formulas are metrics.py's).

The answer is the bracket: ``capacity_rps`` is the highest passing rate, ``high_rps`` the
lowest failing one above it, and the stated interval is [``low_rps``, ``high_rps``) with
``low_rps`` the lower of ``capacity_rps`` and the completion rate that run achieved: a rate
just above the true capacity can pass a short run (its queue has not grown enough to show),
but its completions cannot outpace the service. The true capacity lies in the interval when
the decisions were right, and at both ends the goodput's 95% Wilson interval says how sure
each decision was (``decided``: both intervals lie on their side of the target).

A failed request (``RequestRecord.error``: refused, cut, an error status) is not a slow one: a
rate whose run had more failed requests than allowed (``max_errors``, 0 unless the marker's
``max_errors`` says) ends the search with a ``CapacityError`` naming how many failed at which
rate, instead of counting them as goodput below the target (a server that died mid-search
would otherwise bracket a capacity just under the rate it died at).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..limits import CAPACITY_RUNS, DURATION_S, RATE
from ..metric_table import LATENCY_METRICS, SLO_KEYS, STATS
from ..values import is_finite_number, show
from .metrics import RequestRecord, latency_series, meets_slo, percentile, request_latency

DEFAULT_SLO: dict[str, float] = {"ttft_ms": 500.0, "tpot_ms": 50.0}
CAPACITY_VERSION = 1


# The percentile bounds an SLO may set: those of the per-request series (ttft, tpot, itl, e2e),
# not the other latency rows (from the schedule, reasoning phases) the search does not compute
# (its ``key.split("_")`` reads exactly name_stat_ms).
SLO_PERCENTILE_KEYS = frozenset(f"{m}_{s}_ms" for m in LATENCY_METRICS for s in STATS)


class CapacityError(ValueError):
    """Bad capacity-search arguments, or a search ended by failed requests (one line)."""


def check_slo(slo: Mapping[str, Any]) -> dict[str, float]:
    """The SLO as floats: per-request keys (ttft_ms, tpot_ms, e2e_ms) and percentile keys
    (ttft_p95_ms ...); anything else is a CapacityError."""
    if not isinstance(slo, Mapping) or not slo:
        raise CapacityError(f"slo={slo!r} must be a non-empty dict such as "
                            "{'ttft_ms': 500, 'tpot_ms': 50}")
    out: dict[str, float] = {}
    for key, value in slo.items():
        if key not in SLO_KEYS and key not in SLO_PERCENTILE_KEYS:
            raise CapacityError(f"slo key {key!r} is unknown; use per-request bounds "
                                f"{', '.join(SLO_KEYS)} or percentiles such as ttft_p95_ms")
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value > 0):
            raise CapacityError(f"slo[{key!r}]={value!r} must be a positive number (ms)")
        out[str(key)] = float(value)
    return out


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion k/n (scipy's binomtest)."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


@dataclass
class RatePoint:
    """One run of the search at one offered rate."""

    rate_rps: float  # offered (asked) rate
    requests: int  # measured requests
    ok: int  # requests that succeeded
    good: int  # requests that met every per-request SLO bound
    goodput: float
    goodput_low: float  # 95% Wilson interval of the goodput
    goodput_high: float
    achieved_rps: float | None  # completions per second over the completions' span
    scheduled_rps: float | None  # the seeded schedule's own rate (a sample of the asked one)
    saturated: bool  # completions fell behind the schedule
    queue_growth: bool  # latency grew from the middle third of the run to the last
    passed: bool
    why: str = ""  # why it failed ("" when it passed)
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # ttft/tpot/e2e p50/p95
    tps_per_user: float | None = None  # median per request: output tokens / its e2e seconds
    total_tps: float | None = None  # output tokens / measured window
    errors: int = 0  # measured requests that failed (RequestRecord.error)
    first_error: str = ""  # the first failed request's error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RatePoint:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class CapacityResult:
    """The search's answer and every rate it tried."""

    capacity_rps: float  # highest passing rate (0.0: even the lowest rate tried failed)
    low_rps: float  # the interval's low end: min(capacity_rps, completions/s achieved there)
    high_rps: float | None  # lowest failing rate above it (None: none failed up to max_rps)
    slo: dict[str, float]
    goodput_target: float
    stopped: str  # "bracketed", "max_rps", "min_rps", "max_runs"
    points: list[RatePoint]
    decided: bool  # the goodput intervals at both ends lie on their side of the target

    @property
    def interval(self) -> tuple[float, float | None]:
        return (self.low_rps, self.high_rps)

    def point(self, rate: float | None) -> RatePoint | None:
        return next((p for p in self.points if rate is not None and p.rate_rps == rate), None)

    def describe(self) -> str:
        """One line: ``capacity 18.4 req/s in [18.4, 20.1) ...``."""
        hi = f"{self.high_rps:.3g}" if self.high_rps is not None else "not reached"
        lo_p, hi_p = self.point(self.capacity_rps), self.point(self.high_rps)
        parts = [f"capacity {self.capacity_rps:.3g} req/s in [{self.low_rps:.3g}, {hi}) "
                 f"at goodput >= {self.goodput_target:g}"]
        if lo_p is not None:
            parts.append(f"goodput {lo_p.goodput:.3f} [{lo_p.goodput_low:.3f}, "
                         f"{lo_p.goodput_high:.3f}] at {lo_p.rate_rps:.3g}")
        if hi_p is not None:
            parts.append(f"{hi_p.goodput:.3f} at {hi_p.rate_rps:.3g} ({hi_p.why})")
        parts.append(f"{len(self.points)} rates, {self.stopped}"
                     + ("" if self.decided else ", undecided at the boundary"))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CAPACITY_VERSION,
            "capacity_rps": self.capacity_rps,
            "low_rps": self.low_rps,
            "high_rps": self.high_rps,
            "slo": dict(sorted(self.slo.items())),
            "goodput_target": self.goodput_target,
            "stopped": self.stopped,
            "decided": self.decided,
            "describe": self.describe(),
            "points": [p.to_dict() for p in sorted(self.points, key=lambda p: p.rate_rps)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CapacityResult:
        return cls(capacity_rps=float(data["capacity_rps"]),
                   low_rps=float(data.get("low_rps", data["capacity_rps"])),
                   high_rps=data.get("high_rps"),
                   slo=dict(data.get("slo") or {}),
                   goodput_target=float(data["goodput_target"]),
                   stopped=str(data.get("stopped", "")),
                   points=[RatePoint.from_dict(p) for p in data.get("points") or []],
                   decided=bool(data.get("decided")))


def point_from_records(
    rate: float,
    records: Sequence[RequestRecord],
    slo: Mapping[str, float],
    goodput_target: float,
    *,
    scheduled_rps: float | None = None,
    min_achieved_ratio: float = 0.9,
) -> RatePoint:
    """A ``RatePoint`` from one run's request records (times in ns on one timeline; a
    record's ``scheduled_ns`` is its due time, else its ``send_ns``)."""
    measured = sorted((r for r in records if not r.warmup), key=lambda r: r.due_ns)
    # The successful requests, in order of arrival, with their latencies from their due time.
    done = [(r, x) for r in measured
            if r.ok and (x := request_latency(r, from_due=True)) is not None]
    ok = [r for r, _ in done]
    per_request = {k: v for k, v in slo.items() if k in SLO_KEYS}
    aggregate = {k: v for k, v in slo.items() if k not in SLO_KEYS}
    good = sum(1 for r in ok if meets_slo(r, per_request, from_due=True))
    n = len(measured)
    low, high = wilson_interval(good, n)
    series = latency_series(ok, from_due=True)
    latency: dict[str, float | None] = {}
    for name in ("ttft", "tpot", "e2e"):
        for q in (50, 95):
            latency[f"{name}_p{q}_ms"] = percentile(series[name], q)
    for key in aggregate:  # any percentile the SLO bounds, e.g. itl_p99_ms
        metric, stat, _ = key.split("_")
        if stat.startswith("p"):
            latency[key] = percentile(series[metric], float(stat[1:]))
        elif stat == "mean":
            latency[key] = float(np.mean(series[metric])) if series[metric] else None
        else:
            latency[key] = float(np.max(series[metric])) if series[metric] else None

    dones = sorted(r.done_ns for r in ok if r.done_ns is not None)
    span = (dones[-1] - dones[0]) / 1e9 if len(dones) > 1 else 0.0
    achieved = (len(dones) - 1) / span if span > 0 else None
    if scheduled_rps is None:
        dues = [r.due_ns for r in measured]
        due_span = (max(dues) - min(dues)) / 1e9 if len(dues) > 1 else 0.0
        scheduled_rps = (len(dues) - 1) / due_span if due_span > 0 else None
    target = scheduled_rps or rate
    saturated = achieved is not None and achieved < min_achieved_ratio * target
    third = len(ok) // 3
    queue_growth = False
    if third >= 10:  # fewer: a burst of a random arrival process looks the same
        # The middle third against the last: a run starts with an empty queue, so the first
        # third is faster than the steady state even when nothing grows.
        first = [x.ttft_ms for _, x in done[third:2 * third]]
        last = [x.ttft_ms for _, x in done[-third:]]
        early, early_p90 = float(np.median(first)), float(np.percentile(first, 90))
        late = float(np.median(last))
        if late > early_p90 and late > early + 10.0:
            from scipy.stats import mannwhitneyu

            queue_growth = bool(mannwhitneyu(last, first, alternative="greater").pvalue < 0.01)
    goodput = good / n if n else 0.0
    failed = [r for r in measured if r.error is not None]
    reasons = []
    if goodput < goodput_target:
        reasons.append(f"goodput {goodput:.3f} < {goodput_target:g}")
    for key, limit in sorted(aggregate.items()):
        value = latency.get(key)
        if value is None or value > limit:
            shown = "not measured" if value is None else f"{value:.4g}"
            reasons.append(f"{key} {shown} > {limit:g}")
    if saturated:
        reasons.append(f"saturated: completed {achieved:.3g}/s of {target:.3g}/s scheduled")
    if queue_growth:
        reasons.append("queue grew: median TTFT of the last third above the middle "
                       "third's p90")
    tps_user = [r.n_output / (x.e2e_ms / 1e3) for r, x in done if x.e2e_ms > 0]
    window = (max(dones) - min(r.send_ns for r in ok)) / 1e9 if ok else 0.0
    total_tps = sum(r.n_output for r in ok) / window if window > 0 else None
    return RatePoint(
        rate_rps=float(rate), requests=n, ok=len(ok), good=good, goodput=goodput,
        goodput_low=low, goodput_high=high, achieved_rps=achieved, scheduled_rps=scheduled_rps,
        saturated=saturated, queue_growth=queue_growth, passed=not reasons,
        why="; ".join(reasons), latency_ms=latency,
        tps_per_user=float(np.median(tps_user)) if tps_user else None, total_tps=total_tps,
        errors=len(failed), first_error=str(failed[0].error) if failed else "")


def _check_args(goodput: float, start_rps: float, growth: float, rel_tol: float,
                min_rps: float, max_rps: float, max_runs: int, max_errors: int) -> None:
    def positive(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value > 0):
            raise CapacityError(f"{name}={value!r} must be a positive number")

    positive("goodput", goodput)
    if goodput > 1:
        raise CapacityError(f"goodput={goodput!r} is a fraction and must be at most 1")
    for name, value in (("start_rps", start_rps), ("rel_tol", rel_tol), ("min_rps", min_rps),
                        ("max_rps", max_rps)):
        positive(name, value)
    positive("growth", growth)
    if growth <= 1:
        raise CapacityError(f"growth={growth!r} must be above 1")
    if not min_rps <= start_rps <= max_rps:
        raise CapacityError(f"start_rps={start_rps:g} must lie in [min_rps={min_rps:g}, "
                            f"max_rps={max_rps:g}]")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 2:
        raise CapacityError(f"max_runs={show(max_runs)} must be a whole number >= 2")
    for name, value, limit in (("max_rps", max_rps, RATE), ("max_runs", max_runs,
                                                            CAPACITY_RUNS)):
        problem = limit.problem(name, value)
        if problem:
            raise CapacityError(problem)
    if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 0:
        raise CapacityError(f"max_errors={max_errors!r} must be a whole number >= 0")


def check_duration_per_rate(value: Any) -> float | None:
    """``duration_per_rate_s`` (seconds of load at each rate, sizing its run), checked: None
    or a positive number within ``limits.DURATION_S``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            is_finite_number(value) and value > 0):
        raise CapacityError(f"duration_per_rate_s={show(value)} must be a positive number "
                            "of seconds")
    problem = DURATION_S.problem("duration_per_rate_s", value)
    if problem:
        raise CapacityError(problem)
    return float(value)


def search_capacity(
    measure: Callable[[float], RatePoint],
    *,
    slo: Mapping[str, float],
    goodput: float = 0.9,
    start_rps: float = 1.0,
    growth: float = 2.0,
    rel_tol: float = 0.1,
    min_rps: float = 0.05,
    max_rps: float = 1e4,
    max_runs: int = 12,
    max_errors: int = 0,
) -> CapacityResult:
    """Bracket, then bisect: the highest rate whose ``measure(rate).passed``.

    From ``start_rps`` the rate grows x``growth`` while it passes (at most ``max_rps``) or
    shrinks /``growth`` while it fails (at least ``min_rps``); once a passing rate lies under
    a failing one, the bracket is halved (geometric midpoint) until ``high/low <= 1 + rel_tol``
    or ``max_runs`` runs were made. A run with more than ``max_errors`` failed requests ends
    the search with a ``CapacityError``: a failure is not a slow answer."""
    _check_args(goodput, start_rps, growth, rel_tol, min_rps, max_rps, max_runs, max_errors)
    points: list[RatePoint] = []

    def run(rate: float) -> bool:
        p = measure(rate)
        points.append(p)
        if p.errors > max_errors:
            first = f"; first error: {p.first_error}" if p.first_error else ""
            allowed = f" (more than max_errors={max_errors})" if max_errors else ""
            raise CapacityError(
                f"{p.errors} of {p.requests} request(s) failed at {rate:.3g} req/s{allowed}"
                f"{first}; the search stopped: failed requests are errors, not goodput below "
                "the target")
        return p.passed

    lo: float | None = None
    hi: float | None = None
    stopped = "bracketed"
    rate = start_rps
    if run(rate):
        lo = rate
        while hi is None:
            if rate >= max_rps:
                stopped = "max_rps"
                break
            if len(points) >= max_runs:
                stopped = "max_runs"
                break
            rate = min(rate * growth, max_rps)
            if run(rate):
                lo = rate
            else:
                hi = rate
    else:
        hi = rate
        while lo is None:
            if rate <= min_rps:
                stopped = "min_rps"
                break
            if len(points) >= max_runs:
                stopped = "max_runs"
                break
            rate = max(rate / growth, min_rps)
            if run(rate):
                lo = rate
            else:
                hi = rate
    if lo is not None and hi is not None:
        while hi / lo > 1 + rel_tol:
            if len(points) >= max_runs:
                stopped = "max_runs"
                break
            mid = math.sqrt(lo * hi)
            if run(mid):
                lo = mid
            else:
                hi = mid
    by_rate = {p.rate_rps: p for p in points}
    lo_p = by_rate.get(lo) if lo is not None else None
    hi_p = by_rate.get(hi) if hi is not None else None
    decided = ((lo_p is None or lo_p.goodput_low >= goodput)
               and (hi_p is None or hi_p.goodput_high < goodput
                    or hi_p.saturated or hi_p.queue_growth))
    achieved = lo_p.achieved_rps if lo_p is not None else None
    low = float(min(lo, achieved) if lo is not None and achieved is not None else (lo or 0.0))
    return CapacityResult(capacity_rps=float(lo or 0.0), low_rps=low, high_rps=hi,
                          slo=dict(slo),
                          goodput_target=float(goodput), stopped=stopped, points=points,
                          decided=decided)
