"""The oracle's heavy-tailed TTFT (issue 25, tails): a seeded draw of median 1 per request.

``OracleConfig.ttft_tail`` names the distribution, ``"lognormal:SIGMA"`` (exp(SIGMA z), z
standard normal) or ``"pareto:ALPHA"`` (a Pareto of shape ALPHA scaled so its median is 1:
(2 (1 - u)) ** (-1 / ALPHA)), and each generation's TTFT is ``ttft_ms`` times the draw for its
index (the n-th generation the server took, from 0) and ``ttft_tail_seed``: the same seed and
index always give the same factor, so a schedule is known and repeatable, and two servers with
different seeds draw independently. The q-th quantile of the factor is ``quantile(spec, q)``
(lognormal p99: exp(2.326 SIGMA)). Pure functions, standard library only.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist

KINDS = ("lognormal", "pareto")
_NORMAL = NormalDist()


def parse(spec: str) -> tuple[str, float]:
    """``"lognormal:1.0"`` -> ("lognormal", 1.0); ValueError, one line, for anything else."""
    kind, sep, raw = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise ValueError(f"ttft_tail {spec!r}: use 'lognormal:SIGMA' or 'pareto:ALPHA'")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"ttft_tail {spec!r}: {raw.strip()!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        name = "SIGMA" if kind == "lognormal" else "ALPHA"
        raise ValueError(f"ttft_tail {spec!r}: {name} must be a positive number")
    return kind, value


def quantile(spec: str, q: float) -> float:
    """The q-th quantile (0 < q < 1) of the factor ``spec`` draws (0.5: 1)."""
    kind, value = parse(spec)
    if kind == "lognormal":
        return math.exp(value * _NORMAL.inv_cdf(q))
    return (2.0 * (1.0 - q)) ** (-1.0 / value)


def uniform(seed: int, index: int) -> float:
    """The index-th uniform of the seed's stream, in (0, 1): the same for the same pair."""
    u = random.Random(f"llmperf-oracle-tail:{seed}:{index}").random()
    return min(max(u, 1e-12), 1.0 - 1e-12)


def factor(spec: str, seed: int, index: int) -> float:
    """The TTFT factor of the index-th generation (median 1 over indices)."""
    return quantile(spec, uniform(seed, index))
