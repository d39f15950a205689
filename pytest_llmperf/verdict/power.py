"""Power: the smallest change a comparison could have detected, and what would make it see.

Pure functions (scipy's Student t quantiles), no I/O. Every decision in ``stats`` and
``paired`` is a one-sided test on a mean log-ratio ``d`` with standard error ``se`` and
``df`` degrees of freedom. The minimum detectable effect (MDE) at level ``alpha`` with
power ``POWER`` (80%) is, on the log scale,

    MDE_log = delta * se

where delta is the noncentrality at which a noncentral t(df) exceeds t_{1-alpha, df} with
probability POWER (exact for a t-test; close to the textbook t_{1-alpha, df} + t_{POWER, df},
which promises 1% too much at 10 pairs and 17% at df 2),

with ``se = s * sqrt(1/n_a + 1/n_b)`` for the stored gate's repeats (``s``: the run-to-run
standard deviation of the log metric) and ``se = s_pairs / sqrt(n)`` for the paired gate
(``s_pairs``: the standard deviation of the pairs' log-ratios). It is reported in percent in
the metric's worse direction: ``expm1(MDE_log)`` for a latency (a rise),
``-expm1(-MDE_log)`` for a throughput (a drop).

A pass whose MDE is above the tolerance is *blind*: a change beyond the tolerance would
have been missed more often than one time in five. ``repeats_needed`` / ``pairs_needed``
solve the formula for n (the smallest n whose MDE is within the tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy import special

from ..metric_table import higher_is_better

POWER = 0.8
# The needs unit of a stored gate whose history has one run per commit: how much of the
# spread between baselines repeats would remove is unknown.
UNSPLIT = "repeats (noise not split)"
MAX_N = 1000  # beyond this many repeats or pairs, "needs more than 1000"


def t_quantile(df: float, q: float) -> float:
    """Student's t quantile (df may be fractional; large df tends to the normal)."""
    return float(special.stdtrit(max(df, 1e-9), q))


def mde_log(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The minimum detectable log-ratio: the shift d at which the one-sided t-test at
    ``alpha`` flags with probability ``power``, i.e. d / se is the noncentrality of the
    noncentral t(df) whose ``1 - power`` quantile is t_{1-alpha,df}. The textbook
    approximation (t_{1-alpha,df} + t_{power,df}) * se (``mde_log_approx``) is 1% below it at
    10 pairs and 17% below it at df 2, where it would promise too much."""
    t_alpha = t_quantile(df, 1.0 - alpha)
    nc = float(special.nctdtrinc(max(df, 1e-9), 1.0 - power, t_alpha))
    if not math.isfinite(nc):
        return mde_log_approx(se, df, alpha, power)
    return nc * max(se, 0.0)


def mde_log_approx(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """(t_{1-alpha,df} + t_{power,df}) * se: the usual closed form of ``mde_log``."""
    return (t_quantile(df, 1.0 - alpha) + t_quantile(df, power)) * max(se, 0.0)


def to_pct(metric: str, log_ratio: float) -> float:
    """A log-ratio as a percent change in the metric's worse direction (positive)."""
    if not math.isfinite(log_ratio):
        return math.inf
    if higher_is_better(metric):
        return -math.expm1(-log_ratio) * 100.0
    return math.expm1(min(log_ratio, 700.0)) * 100.0


def tolerance_log(metric: str, tolerance_pct: float) -> float:
    """The tolerance (percent, worse direction) as a log-ratio: ``to_pct``'s inverse."""
    if higher_is_better(metric):
        return -math.log1p(-min(tolerance_pct, 99.999) / 100.0)
    return math.log1p(tolerance_pct / 100.0)


def mde_pct(metric: str, se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The MDE in percent, in the metric's worse direction."""
    return to_pct(metric, mde_log(se, df, alpha, power))


def _smallest(fits: Callable[[int], bool], start: int) -> int | None:
    """The smallest n in [start, MAX_N] with fits(n) (monotone), else None."""
    if fits(start):
        return start
    lo, hi = start, start
    while not fits(hi):
        if hi >= MAX_N:
            return None
        lo, hi = hi, min(MAX_N, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def repeats_needed(metric: str, var_run: float, tolerance_pct: float, alpha: float, *,
                   var_job: float = 0.0, df_fixed: float | None = None) -> int | None:
    """Repeats per side (baseline and head alike) for the stored gate's MDE to be within the
    tolerance: se^2 = 2 var_job + 2 var_run / n, df = 2 (n - 1) (or ``df_fixed`` when the
    noise comes from the history). None: no number of repeats is enough (the job-to-job
    variance alone is beyond it, or more than ``MAX_N``)."""
    tol = tolerance_log(metric, tolerance_pct)

    def fits(n: int) -> bool:
        se = math.sqrt(2.0 * var_job + 2.0 * var_run / n)
        df = df_fixed if df_fixed is not None else 2.0 * (n - 1)
        return mde_log(se, df, alpha) <= tol

    return _smallest(fits, 2)


def pairs_needed(metric: str, sd_pairs: float, tolerance_pct: float, alpha: float, *,
                 least: int = 2) -> int | None:
    """Pairs for the paired gate's MDE to be within the tolerance: se = sd / sqrt(n),
    df = n - 1, and at least ``least`` pairs (the sign-flip test's floor, ``paired``)."""
    tol = tolerance_log(metric, tolerance_pct)

    def fits(n: int) -> bool:
        return mde_log(sd_pairs / math.sqrt(n), n - 1.0, alpha) <= tol

    return _smallest(fits, max(2, least))


@dataclass(frozen=True)
class Power:
    """What one metric's comparison could see: its MDE, whether it is blind, and what it
    needs (``needs`` of ``unit``: "repeats" or "pairs"; None: no number is enough)."""

    mde_pct: float | None
    blind: bool
    needs: int | None
    unit: str

    def needs_text(self) -> str:
        """``needs about 8 repeats`` / ``needs more than 1000 pairs``."""
        if self.unit == UNSPLIT:
            return ("with one run per commit the spread between baselines cannot be split "
                    "into run-to-run and job-to-job noise: use repeats>=2 to learn how many "
                    "would help, or llmperf compare")
        if self.needs is None:
            if self.unit == "repeats":
                return ("no number of repeats is enough (the job-to-job noise alone is "
                        "beyond the tolerance): use llmperf compare or llmperf_bench.compare")
            return f"needs more than {MAX_N} {self.unit}"
        return f"needs about {self.needs} {self.unit}"


def is_blind(verdict: str, gated: bool, mde: float | None, tolerance_pct: float) -> bool:
    """A gated pass ("ok") whose MDE is above its tolerance (or unknown: infinite)."""
    if not gated or verdict != "ok":
        return False
    return mde is None or mde > tolerance_pct


def finite(x: float) -> float | None:
    """JSON-safe: None for an infinite or NaN MDE."""
    return x if math.isfinite(x) else None
