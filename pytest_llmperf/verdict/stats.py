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

Paired gate (``compare_paired_set``): runs A and B interleaved in one job; an exact sign-flip
permutation test on the paired log-ratios, joint over the gated metrics (the maximum statistic,
so the metrics' correlation is used instead of a Bonferroni split). Under the null hypothesis
(A and B the same, so each pair's log-ratio is as likely to be positive as negative) the chance
that any gated metric is flagged is at most alpha whatever the shape of the noise: heavy tails
and outlier pairs cannot inflate it. ``ab.py`` runs it in two stages with alpha split across the
looks.

Change points (``change_points``): E-divisive (energy statistic, permutation test) over a
per-commit series, with a minimum magnitude, for the nightly history.

Intervals are two-sided at 1 - 2 alpha (98% for alpha 0.01), so their lower (or upper) bound is
exactly the one-sided test's bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import numpy as np
from scipy import special

from ..formatting import num
from ..metric_table import higher_is_better

DEFAULT_ALPHA = 0.01
DEFAULT_TOLERANCE_PCT = 5.0
DEFAULT_MIN_HISTORY = 5
DEFAULT_MAX_HISTORY = 20

VERDICTS: tuple[str, ...] = ("ok", "regression", "improvement", "warn", "inconclusive")


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
            f"{self.metric}: measured {num(self.current, large='.1f')}, "
            f"baseline {num(self.baseline, large='.1f')}, "
            f"change {self.change_pct:+.1f}%"
        )
        if self.ci_low_pct is not None and self.ci_high_pct is not None:
            text += f" (interval {self.ci_low_pct:+.1f}% .. {self.ci_high_pct:+.1f}%)"
        text += f", tolerance {self.tolerance_pct:g}%"
        return text


class _Shared(TypedDict):
    """The MetricVerdict fields that every verdict of one metric's comparison shares."""

    metric: str
    gated: bool
    tolerance_pct: float
    n_baseline: int
    n_current: int


class _PairedShared(_Shared):
    method: str


class _Measured(TypedDict):
    baseline: float
    current: float
    change_pct: float


def _logs(values: Sequence[float | None]) -> np.ndarray:
    """Logs of the positive finite values (missing, zero or negative values are dropped)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    logs: np.ndarray = np.log(arr)  # numpy types a masked array's log as Any
    return logs


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


def _sign(metric: str) -> float:
    """+1 when a larger value is worse (latencies), -1 when it is better (throughput)."""
    return -1.0 if higher_is_better(metric) else 1.0


def _interval(d: float, se: float, df: float, alpha: float) -> tuple[float, float]:
    """The 1 - 2 alpha Student t interval of a log-difference, in percent."""
    q = float(special.stdtrit(df, 1.0 - alpha))
    se = max(se, 1e-12)
    return _pct(d - q * se), _pct(d + q * se)


def _verdict(metric: str, d: float, p_worse: float, p_better: float, *, alpha: float,
             tolerance_pct: float, gated: bool) -> str:
    """Significant (p below alpha) **and** beyond the tolerance, in either direction."""
    worse_pct = _sign(metric) * _pct(d)
    if p_worse < alpha and worse_pct > tolerance_pct:
        return "regression" if gated else "warn"
    if p_better < alpha and -worse_pct > tolerance_pct:
        return "improvement"
    return "ok"


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
    """(verdict, p_value_worse, ci_low_pct, ci_high_pct) for a log-difference d with error se,
    by Student's t."""
    t_worse = _sign(metric) * d / max(se, 1e-12)
    # Student t tail probabilities and quantile (scipy.special: fast, no distribution object).
    p_worse = float(special.stdtr(df, -t_worse))
    p_better = float(special.stdtr(df, t_worse))
    lo, hi = _interval(d, se, df, alpha)
    verdict = _verdict(metric, d, p_worse, p_better, alpha=alpha, tolerance_pct=tolerance_pct,
                       gated=gated)
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
    common: _Shared = {"metric": metric, "gated": gated, "tolerance_pct": tolerance_pct,
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


# ---------------------------------------------------------------------------------------------
# The paired gate: an exact sign-flip permutation test over interleaved pairs.

MAX_EXACT_PAIRS = 16  # up to 2**16 sign vectors are enumerated; beyond, they are sampled
SIGN_SAMPLES = 20_000


def sign_vectors(n: int, *, samples: int = SIGN_SAMPLES, seed: int = 0) -> np.ndarray:
    """Rows of +1/-1 to flip n pairs with: all 2**n of them for n <= ``MAX_EXACT_PAIRS`` (exact),
    else ``samples`` random rows. The first row is always all +1 (the observed data)."""
    if n <= MAX_EXACT_PAIRS:
        codes = np.arange(2**n, dtype=np.int64)[:, None]
        return 1.0 - 2.0 * ((codes >> np.arange(n)) & 1).astype(float)
    rows = np.random.default_rng(seed).choice([-1.0, 1.0], size=(samples, n))
    rows[0] = 1.0
    return rows


def signflip_pvalues(worse: Sequence[np.ndarray], *, seed: int = 0) -> tuple[list[float],
                                                                              list[float]]:
    """One-sided sign-flip p-values for paired differences oriented so that positive is worse.

    ``worse``: one array per metric, all over the same pairs. Returns (p_worse, p_better).
    ``p_worse`` is adjusted over the metrics by the maximum statistic (Westfall and Young's
    single-step max-T): each metric's statistic is compared with the largest of all the
    metrics' statistics under every sign vector, so P(any p_worse <= alpha) <= alpha when no
    metric changed, and correlated metrics (TPOT and tokens/s) cost less than Bonferroni.
    ``p_better`` is per metric (it only labels improvements).

    The statistic is the mean over the root mean square, which orders sign vectors exactly as
    the t statistic does (the sum of squares does not change under sign flips). Exact: the
    smallest p-value is 2**-n, so 5 pairs can never reach p < 1/32 and 10 pairs reach 1/1024.
    """
    if not worse:
        return [], []
    n = len(worse[0])
    signs = sign_vectors(n, seed=seed)
    stats_, observed = [], []
    for w in worse:
        scale = float(np.sqrt(np.mean(w * w)))
        if scale == 0.0:
            stats_.append(np.zeros(signs.shape[0]))
            observed.append(0.0)
            continue
        stats_.append(signs @ w / (n * scale))
        observed.append(float(w.mean() / scale))
    z = np.vstack(stats_)
    biggest = z.max(axis=0)
    eps = 1e-9
    p_worse = [float(np.mean(biggest >= o - eps)) for o in observed]
    p_better = [float(np.mean(zm <= o + eps)) for zm, o in zip(z, observed, strict=True)]
    return p_worse, p_better


def _positive_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def compare_paired_set(
    a: Mapping[str, Sequence[float | None]],
    b: Mapping[str, Sequence[float | None]],
    *,
    gated: Sequence[str],
    watched: Sequence[str] = (),
    alpha: float = DEFAULT_ALPHA,
    tolerance_pct: Mapping[str, float] | float = DEFAULT_TOLERANCE_PCT,
    interval_alpha: float | None = None,
) -> list[MetricVerdict]:
    """Paired decisions for B (candidate) against A (reference); pair i = (a[m][i], b[m][i]).

    The gated metrics are tested jointly (``signflip_pvalues``) at ``alpha`` over the pairs
    that have a value for every gated metric; each watched metric alone, at ``alpha``, warning
    only. A metric is flagged when its p-value is below alpha **and** its estimated change (the
    geometric mean of the ratios) is beyond its tolerance. The interval shown is Student's t at
    1 - 2 ``interval_alpha`` (default: ``alpha``) on the log-ratios.
    """
    ia = alpha if interval_alpha is None else interval_alpha

    def tol(metric: str) -> float:
        if isinstance(tolerance_pct, Mapping):
            return float(tolerance_pct.get(metric, DEFAULT_TOLERANCE_PCT))
        return float(tolerance_pct)

    def complete(metrics: Sequence[str]) -> list[int]:
        n = min(len(a[m]) for m in metrics)
        if any(len(a[m]) != len(b[m]) for m in metrics):
            raise ValueError("paired values need as many B values as A values")
        return [i for i in range(n)
                if all(_positive_finite(a[m][i]) and _positive_finite(b[m][i]) for m in metrics)]

    def family(metrics: Sequence[str], is_gated: bool) -> list[MetricVerdict]:
        out: list[MetricVerdict] = []
        have = [m for m in metrics if complete([m])]
        idx = complete(have) if have else []
        # Every value at idx is present (``complete``): the filters only narrow the type.
        logs = {m: (np.log([float(x) for i in idx if (x := a[m][i]) is not None]),
                    np.log([float(x) for i in idx if (x := b[m][i]) is not None]))
                for m in have}
        position = {m: k for k, m in enumerate(logs)}  # a metric's row in the joint test
        p_w: list[float] = []
        p_b: list[float] = []
        if len(idx) >= 2:
            p_w, p_b = signflip_pvalues([_sign(m) * (lb - la) for m, (la, lb) in logs.items()])
        for m in metrics:
            common: _PairedShared = {
                "metric": m, "gated": is_gated, "tolerance_pct": tol(m), "method": "paired",
                "n_baseline": len(idx), "n_current": len(idx)}
            if m not in logs or not idx:
                out.append(MetricVerdict(
                    baseline=None, current=None, change_pct=None, ci_low_pct=None,
                    ci_high_pct=None, verdict="inconclusive", note="no complete pair",
                    **common))
                continue
            la, lb = logs[m]
            r = lb - la
            d = float(r.mean())
            base: _Measured = {"baseline": _geo(la), "current": _geo(lb), "change_pct": _pct(d)}
            if r.size < 2:
                out.append(MetricVerdict(ci_low_pct=None, ci_high_pct=None,
                                         verdict="inconclusive",
                                         note="one pair cannot show the noise", **base,
                                         **common))
                continue
            k = position[m]
            lo, hi = _interval(d, float(r.std(ddof=1) / math.sqrt(r.size)), r.size - 1.0, ia)
            verdict = _verdict(m, d, p_w[k], p_b[k], alpha=alpha, tolerance_pct=tol(m),
                               gated=is_gated)
            joint = f", joint over {len(logs)} gated metrics" if is_gated and len(logs) > 1 else ""
            out.append(MetricVerdict(
                ci_low_pct=lo, ci_high_pct=hi, verdict=verdict, p_value=p_w[k],
                df=r.size - 1.0, alpha=alpha,
                note=f"{r.size} interleaved pairs; sign-flip test{joint}", **base, **common))
        return out

    verdicts = family(list(gated), True) if gated else []
    for m in watched:
        verdicts += family([m], False)
    return verdicts


def compare_paired(
    metric: str,
    a_values: Sequence[float | None],
    b_values: Sequence[float | None],
    *,
    alpha: float = DEFAULT_ALPHA,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    gated: bool = True,
) -> MetricVerdict:
    """One metric's paired decision: B (candidate) against A (reference); pairs with a missing
    value drop out. See ``compare_paired_set``."""
    if len(a_values) != len(b_values):
        raise ValueError("paired values need as many B values as A values")
    found = compare_paired_set(
        {metric: a_values}, {metric: b_values}, gated=[metric] if gated else [],
        watched=[] if gated else [metric], alpha=alpha, tolerance_pct=tolerance_pct)
    return found[0]


def clearly_within_tolerance(v: MetricVerdict) -> bool:
    """True when even the interval's worst end is within the tolerance (no more data needed)."""
    if v.ci_low_pct is None or v.ci_high_pct is None:
        return False
    # The interval is two-sided at 1 - 2 alpha: its worse end is the one-sided bound.
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
