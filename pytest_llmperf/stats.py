"""The regression decision. Pure functions over numbers (numpy/scipy), no I/O.

One run is one data point: a run's per-request samples only estimate that run's statistics
(p50 TTFT, p50 TPOT, tokens/s); every test here is over runs. All comparisons work on the
log scale, so a change is a ratio and "5% slower" means the same for a 20 ms and a 2 s metric.

Stored-baseline gate (``compare_stored``): the head's runs against the baseline commit's runs.
The run-to-run variance comes from the history of earlier baselines of the same profile when
there are at least ``min_history`` of them (a prediction-interval style estimate that includes
job-to-job variance), else from the repeats of the two commits. A regression is flagged only
when it is significant (one-sided test, ``alpha``) **and** the estimated change is larger than
the tolerance (``max_regression_pct``).

Paired gate (``compare_paired``): runs A and B interleaved in one job; a one-sample t-test on the
paired log-ratios. ``ab.py`` runs it in two stages with alpha split across the looks.

Change points (``change_points``): E-divisive (energy statistic, permutation test) over a
per-commit series, with a minimum magnitude, for the nightly history.

Intervals are two-sided at 1 - 2 alpha (98% for alpha 0.01), so their lower (or upper) bound is
exactly the one-sided test's bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special

DEFAULT_ALPHA = 0.01
DEFAULT_TOLERANCE_PCT = 5.0
DEFAULT_MIN_HISTORY = 5
DEFAULT_MAX_HISTORY = 20

# Gated by default; every other compared metric warns.
DEFAULT_GATED: tuple[str, ...] = ("ttft_p50_ms", "tpot_p50_ms", "output_tps")
# Compared and reported (warn only) unless the marker gates them.
DEFAULT_WATCHED: tuple[str, ...] = (
    "ttft_p95_ms",
    "ttft_p99_ms",
    "tpot_p95_ms",
    "tpot_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "e2e_p50_ms",
    "e2e_p95_ms",
)
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"output_tps", "input_tps", "rps", "goodput", "accuracy"}
)
VERDICTS: tuple[str, ...] = ("ok", "regression", "improvement", "warn", "inconclusive")


def higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER


def per_metric_alpha(alpha: float, n_gated: int) -> float:
    """A test's alpha split evenly over its gated metrics (Bonferroni)."""
    return alpha / max(1, n_gated)


@dataclass(frozen=True)
class MetricVerdict:
    """The decision for one metric: estimate, interval and verdict."""

    metric: str
    baseline: float | None
    current: float | None
    change_pct: float | None  # current vs baseline, in the metric's own direction
    ci_low_pct: float | None
    ci_high_pct: float | None
    verdict: str  # one of VERDICTS
    gated: bool
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT
    p_value: float | None = None  # one-sided, for "worse"
    method: str = "none"  # "history", "repeats", "paired" or "none"
    n_baseline: int = 0
    n_current: int = 0
    df: float | None = None
    note: str = ""
    alpha: float | None = None  # the level this metric was tested at

    @property
    def worse_pct(self) -> float | None:
        """How much worse (positive) or better (negative) the current value is, in percent."""
        if self.change_pct is None:
            return None
        return -self.change_pct if higher_is_better(self.metric) else self.change_pct

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: measured, baseline, change and interval."""
        if self.change_pct is None or self.current is None or self.baseline is None:
            return f"{self.metric}: {self.verdict} ({self.note or 'not measured'})"
        text = (
            f"{self.metric}: measured {_fmt(self.current)}, baseline {_fmt(self.baseline)}, "
            f"change {self.change_pct:+.1f}%"
        )
        if self.ci_low_pct is not None and self.ci_high_pct is not None:
            text += f" (interval {self.ci_low_pct:+.1f}% .. {self.ci_high_pct:+.1f}%)"
        text += f", tolerance {self.tolerance_pct:g}%"
        return text


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def _logs(values: Sequence[float | None]) -> np.ndarray:
    """Logs of the positive finite values (missing, zero or negative values are dropped)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    return np.log(arr)


def _pct(log_ratio: float) -> float:
    return float(math.expm1(log_ratio) * 100.0)


def _geo(logs: np.ndarray) -> float:
    return float(np.exp(logs.mean()))


@dataclass(frozen=True)
class Noise:
    """Estimated variance of the difference of two commit means (log scale)."""

    var_diff: float
    df: float
    method: str
    note: str = ""


def pooled_within(groups: Sequence[np.ndarray]) -> tuple[float, int] | None:
    """Pooled within-group variance and its degrees of freedom; None when no group repeats."""
    ss = 0.0
    df = 0
    for g in groups:
        if g.size >= 2:
            ss += float(((g - g.mean()) ** 2).sum())
            df += g.size - 1
    if df == 0:
        return None
    return ss / df, df


def estimate_noise(
    base: np.ndarray,
    cur: np.ndarray,
    history: Sequence[np.ndarray],
    *,
    min_history: int = DEFAULT_MIN_HISTORY,
) -> Noise | None:
    """The variance of mean(log current) - mean(log baseline), or None when unknowable.

    With ``min_history`` or more earlier commits: the spread of their commit means gives the
    commit-to-commit (job-to-job) variance; the pooled spread of repeats within commits, when
    any commit repeated, splits off the run-to-run part so more repeats now narrow the
    interval. Otherwise the repeats of the two commits alone (which cannot see job-to-job
    variance; the tolerance guards against that).
    """
    hist = [h for h in history if h.size > 0]
    within = pooled_within([*hist, base, cur])
    m, n = base.size, cur.size
    if len(hist) >= min_history:
        means = np.asarray([h.mean() for h in hist])
        var_commit = float(means.var(ddof=1))
        if within is not None:
            var_run = within[0]
            mean_inv_n = float(np.mean([1.0 / h.size for h in hist]))
            var_job = max(0.0, var_commit - var_run * mean_inv_n)
            var_diff = 2.0 * var_job + var_run * (1.0 / m + 1.0 / n)
        else:
            var_diff = 2.0 * var_commit
        return Noise(var_diff, float(len(hist) - 1), "history",
                     f"variance from {len(hist)} earlier baselines")
    if within is not None:
        var_run, df = within
        return Noise(var_run * (1.0 / m + 1.0 / n), float(df), "repeats",
                     f"variance from repeats ({df} degrees of freedom); "
                     f"fewer than {min_history} earlier baselines")
    return None


def _decide(
    metric: str,
    d: float,
    se: float,
    df: float,
    *,
    alpha: float,
    tolerance_pct: float,
    gated: bool,
) -> tuple[str, float, float, float]:
    """(verdict, p_value_worse, ci_low_pct, ci_high_pct) for a log-difference d with error se."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    worse = sign * d
    se = max(se, 1e-12)
    t_worse = worse / se
    # Student t tail probabilities and quantile (scipy.special: fast, no distribution object).
    p_worse = float(special.stdtr(df, -t_worse))
    p_better = float(special.stdtr(df, t_worse))
    q = float(special.stdtrit(df, 1.0 - alpha))
    lo, hi = _pct(d - q * se), _pct(d + q * se)
    change = _pct(d)
    worse_pct = sign * change
    if p_worse < alpha and worse_pct > tolerance_pct:
        verdict = "regression" if gated else "warn"
    elif p_better < alpha and -worse_pct > tolerance_pct:
        verdict = "improvement"
    else:
        verdict = "ok"
    return verdict, p_worse, lo, hi


def compare_stored(
    metric: str,
    baseline_values: Sequence[float | None],
    current_values: Sequence[float | None],
    history: Sequence[Sequence[float | None]] = (),
    *,
    alpha: float = DEFAULT_ALPHA,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    gated: bool = True,
    min_history: int = DEFAULT_MIN_HISTORY,
    max_history: int = DEFAULT_MAX_HISTORY,
) -> MetricVerdict:
    """The stored-baseline decision for one metric.

    baseline_values / current_values: the metric from each run of the baseline commit and of
    the head. history: the metric's run values per earlier baseline commit of the same profile,
    newest first (the baseline commit itself may be among them); the newest ``max_history`` are
    used.
    """
    base, cur = _logs(baseline_values), _logs(current_values)
    common = {"metric": metric, "gated": gated, "tolerance_pct": tolerance_pct,
              "n_baseline": int(base.size), "n_current": int(cur.size)}
    if base.size == 0 or cur.size == 0:
        missing = "baseline" if base.size == 0 else "current run"
        return MetricVerdict(
            baseline=_geo(base) if base.size else None,
            current=_geo(cur) if cur.size else None,
            change_pct=None, ci_low_pct=None, ci_high_pct=None, verdict="inconclusive",
            note=f"no value in the {missing}", **common,
        )
    d = float(cur.mean() - base.mean())
    hist = [_logs(h) for h in list(history)[:max_history]]
    noise = estimate_noise(base, cur, hist, min_history=min_history)
    if noise is None:
        change = _pct(d)
        return MetricVerdict(
            baseline=_geo(base), current=_geo(cur), change_pct=change, ci_low_pct=None,
            ci_high_pct=None, verdict="inconclusive",
            note=(f"one run on each side and fewer than {min_history} earlier baselines: the "
                  "noise is unknown; use repeats>=2 or save more baselines"),
            **common,
        )
    verdict, p, lo, hi = _decide(metric, d, math.sqrt(noise.var_diff), noise.df, alpha=alpha,
                                 tolerance_pct=tolerance_pct, gated=gated)
    return MetricVerdict(
        baseline=_geo(base), current=_geo(cur), change_pct=_pct(d), ci_low_pct=lo,
        ci_high_pct=hi, verdict=verdict, p_value=p, method=noise.method, df=noise.df,
        note=noise.note, alpha=alpha, **common,
    )


def compare_paired(
    metric: str,
    a_values: Sequence[float | None],
    b_values: Sequence[float | None],
    *,
    alpha: float = DEFAULT_ALPHA,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    gated: bool = True,
) -> MetricVerdict:
    """Paired decision: B (candidate) against A (reference), pair i = (a_i, b_i) run together.

    A one-sample t-test on the log-ratios log(b_i / a_i); pairs with a missing value drop out.
    """
    pairs = [
        (a, b) for a, b in zip(a_values, b_values, strict=True)
        if a is not None and b is not None and a > 0 and b > 0
        and math.isfinite(a) and math.isfinite(b)
    ]
    common = {"metric": metric, "gated": gated, "tolerance_pct": tolerance_pct,
              "n_baseline": len(pairs), "n_current": len(pairs), "method": "paired"}
    if not pairs:
        return MetricVerdict(baseline=None, current=None, change_pct=None, ci_low_pct=None,
                             ci_high_pct=None, verdict="inconclusive", note="no complete pair",
                             **common)
    la = np.log([a for a, _ in pairs])
    lb = np.log([b for _, b in pairs])
    r = lb - la
    d = float(r.mean())
    if r.size < 2:
        return MetricVerdict(baseline=_geo(la), current=_geo(lb), change_pct=_pct(d),
                             ci_low_pct=None, ci_high_pct=None, verdict="inconclusive",
                             note="one pair cannot show the noise", **common)
    se = float(r.std(ddof=1) / math.sqrt(r.size))
    df = float(r.size - 1)
    verdict, p, lo, hi = _decide(metric, d, se, df, alpha=alpha, tolerance_pct=tolerance_pct,
                                 gated=gated)
    return MetricVerdict(baseline=_geo(la), current=_geo(lb), change_pct=_pct(d), ci_low_pct=lo,
                         ci_high_pct=hi, verdict=verdict, p_value=p, df=df,
                         note=f"{r.size} interleaved pairs", alpha=alpha, **common)


def clearly_within_tolerance(v: MetricVerdict, alpha: float) -> bool:
    """True when even the interval's worst end is within the tolerance (no more data needed)."""
    if v.ci_low_pct is None or v.ci_high_pct is None:
        return False
    # The interval was made at 1 - 2 alpha_look; its worse end is the one-sided bound.
    worst = -v.ci_low_pct if higher_is_better(v.metric) else v.ci_high_pct
    return worst <= v.tolerance_pct


# ---------------------------------------------------------------------------------------------
# Change points over a per-commit history (E-divisive: energy statistic + permutation test).


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first element of the new segment
    before: float  # geometric mean of the segment before
    after: float  # geometric mean of the segment after
    change_pct: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _energy_split(x: np.ndarray, min_size: int) -> tuple[int, float]:
    """The split index maximising the energy divergence between the two sides, and its value."""
    n = x.size
    if n < 2 * min_size:
        return -1, -math.inf
    dist = np.abs(x[:, None] - x[None, :])
    c = np.zeros((n + 1, n + 1))
    c[1:, 1:] = dist.cumsum(0).cumsum(1)  # c[i, j] = dist[:i, :j].sum()
    k = np.arange(min_size, n - min_size + 1)
    m1, m2 = k.astype(float), (n - k).astype(float)
    within_a = c[k, k] / (m1 * m1)
    within_b = (c[n, n] - c[k, n] - c[n, k] + c[k, k]) / (m2 * m2)
    between = (c[k, n] - c[k, k]) / (m1 * m2)
    q = (2.0 * between - within_a - within_b) * m1 * m2 / n
    best = int(np.argmax(q))
    return int(k[best]), float(q[best])


def change_points(
    values: Sequence[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_change_pct: float = DEFAULT_TOLERANCE_PCT,
    min_size: int = 3,
    permutations: int = 999,
    seed: int = 0,
) -> list[ChangePoint]:
    """Change points in a per-commit series (oldest first), by recursive E-divisive splitting.

    A split is kept when its permutation p-value is below ``alpha`` and the geometric means of
    the two sides differ by more than ``min_change_pct``. With ``permutations`` = 999 the
    smallest reachable p-value is 0.001.
    """
    x = _logs(values)
    if x.size != len(values):
        raise ValueError("change_points needs positive finite values")
    rng = np.random.default_rng(seed)
    found: list[ChangePoint] = []

    def split(lo: int, hi: int) -> None:
        seg = x[lo:hi]
        if seg.size < 2 * min_size:
            return
        k, q = _energy_split(seg, min_size)
        if k < 0:
            return
        exceed = 0
        for _ in range(permutations):
            _, qp = _energy_split(rng.permutation(seg), min_size)
            if qp >= q:
                exceed += 1
        p = (exceed + 1) / (permutations + 1)
        before, after = seg[:k], seg[k:]
        change = _pct(float(after.mean() - before.mean()))
        if p >= alpha or abs(change) <= min_change_pct:
            return
        found.append(ChangePoint(lo + k, _geo(before), _geo(after), change, p))
        split(lo, lo + k)
        split(lo + k, hi)

    split(0, x.size)
    return sorted(found, key=lambda c: c.index)
