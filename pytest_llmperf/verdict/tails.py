"""Tails: how many samples a percentile rests on, and when that is too few to decide. Pure
functions, no I/O, no heavy imports (the thresholds read this module at collection).

The rule (documented in docs/guides/baselines-and-gates.md): a run's p-th percentile is
decidable when at least ``BEYOND`` (5) of its samples lie beyond it, n * (1 - q) >= 5: p90
needs 50 samples per run, p95 needs 100 and p99 needs 500. With fewer, the sample
percentile is one of the last few order statistics (p99 of 40 requests is an interpolation
between the two largest), whose run-to-run spread is that of the maximum; a gated tail with
fewer is refused as "not decidable" naming the count it needs, instead of compared.

The paired tail comparison (``llmperf_bench.compare``, the A/B flag, ``llmperf compare``) is a
quantile test over the requests within each pair, combined over the pairs: each run's
percentile of its own requests, the pair's log-ratio of the two, and the exact sign-flip
test over the pairs (``paired``), which holds its level whatever the shape of the tail (under
no change, each pair's ratio is as likely above one as below). The Harrell-Davis estimator
(a Beta-weighted mean of all order statistics) was measured in its place and rejected: at p99
on lognormal and Pareto requests it detected no more, and at 100 requests per run less
(benchmarks/README.md, "Tails").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

BEYOND = 5  # samples beyond the percentile for it to be decidable
TAIL_FROM = 0.9  # percentiles from p90 up are tails
_PCT = re.compile(r"^(?P<series>[a-z0-9_]+)_p(?P<p>\d{2})_ms$")


def quantile_of(metric: str) -> float | None:
    """The quantile a percentile metric names (``ttft_p99_ms`` -> 0.99), else None."""
    found = _PCT.match(metric)
    return int(found.group("p")) / 100.0 if found else None


def is_tail(metric: str) -> bool:
    q = quantile_of(metric)
    return q is not None and q >= TAIL_FROM


def needed(q: float) -> int:
    """Samples per run for the q-th quantile to be decidable: n * (1 - q) >= BEYOND."""
    return math.ceil(BEYOND / (1.0 - q) - 1e-9)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def samples_in(summary: Mapping[str, Any], metric: str) -> int | None:
    """How many samples a run's percentile of ``metric`` rests on, from its summary: the
    successful requests (TTFT, E2E and the schedule's latencies), less those without a TPOT
    (TPOT), or the inter-token gaps (ITL: output tokens less one per request). None when
    the summary does not say."""
    requests = _int(summary.get("requests"))
    if requests is None:
        return None
    ok = requests - (_int(summary.get("errors")) or 0)
    if metric.startswith("tpot_"):
        return max(0, ok - (_int(summary.get("tpot_undefined")) or 0))
    if metric.startswith("itl_"):
        tokens = _int(summary.get("output_tokens"))
        return None if tokens is None else max(0, tokens - ok)
    return max(0, ok)


def fewest(summaries: Sequence[Mapping[str, Any]], metric: str) -> int | None:
    """The fewest samples any of the runs' percentile rests on (None: unknown)."""
    counts = [c for s in summaries if (c := samples_in(s, metric)) is not None]
    return min(counts) if counts else None


def refusal(metric: str, samples: int | None) -> str:
    """Why a gated tail cannot be decided on ``samples`` per run ('' when it can, or when
    the count is unknown): ``not decidable: p99 of 40 requests per run; needs at least 500
    (5 beyond the percentile)``."""
    q = quantile_of(metric)
    if q is None or q < TAIL_FROM or samples is None:
        return ""
    need = needed(q)
    if samples >= need:
        return ""
    what = "gaps" if metric.startswith("itl_") else "requests"
    return (f"not decidable: p{round(q * 100)} of {samples} {what} per run; needs at least "
            f"{need} {what} per run ({BEYOND} beyond the percentile)")


def tail_words(metric: str, samples: int) -> str:
    """``p99 of 40 requests`` (``itl``: of 40 gaps)."""
    q = quantile_of(metric)
    what = "gaps" if metric.startswith("itl_") else "requests"
    return f"p{round((q or 0) * 100)} of {samples} {what}"
