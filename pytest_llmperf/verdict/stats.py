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

The same vocabulary (``MetricVerdict``, the log-scale helpers) serves the paired gate
(``paired.py``) and change points over the history (``changepoints.py``).

Intervals are two-sided at 1 - 2 alpha (98% for alpha 0.01), so their lower (or upper) bound is
exactly the one-sided test's bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, TypedDict

import numpy as np
from scipy import special

from ..decision import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT
from ..formatting import num
from ..metric_table import higher_is_better
from . import power, tails

DEFAULT_MIN_HISTORY = 5
DEFAULT_MAX_HISTORY = 20

__all__ = ["DEFAULT_ALPHA", "DEFAULT_TOLERANCE_PCT"]  # re-exported for the deciders

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
    # Paired: the pairs made; the verdict rests on n_current (= n_baseline) of them, those
    # with a usable value on both sides. Stored gate: the runs given on each side, of which
    # n_baseline / n_current had a usable value. None when not recorded.
    pairs_run: int | None = None
    runs_baseline: int | None = None
    runs_current: int | None = None
    # Power (issue 25): the smallest change, percent in the metric's worse direction, this
    # comparison could have detected at its alpha with 80% power from the noise it measured
    # (``power.py``; None: the noise is unknown); a gated pass whose MDE is above the
    # tolerance is ``blind``, and ``needs`` repeats or pairs (``needs_unit``) would see it.
    mde_pct: float | None = None
    blind: bool = False
    needs: int | None = None
    needs_unit: str = ""
    # Tails (issue 25): how many samples per run the percentile rests on (the fewest over the
    # runs compared); None for a metric that is not a tail percentile.
    tail_samples: int | None = None

    @property
    def worse_pct(self) -> float | None:
        """How much worse (positive) or better (negative) the current value is, in percent."""
        if self.change_pct is None:
            return None
        return -self.change_pct if higher_is_better(self.metric) else self.change_pct

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pairs_text(self) -> str:
        """How many pairs a paired verdict rests on ("4 of 10 pairs", "10 pairs"); "" for
        other methods or when not recorded."""
        if self.method != "paired" or self.pairs_run is None:
            return ""
        if self.n_current == self.pairs_run:
            return f"{self.n_current} pairs"
        return f"{self.n_current} of {self.pairs_run} pairs"

    def describe(self) -> str:
        """One line: measured, baseline, change and interval (and, when paired, the pairs it
        rests on)."""
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
        if self.mde_pct is not None:
            text += f", MDE {self.mde_pct:.1f}%"
        if self.tail_samples is not None:
            text += f", {tail_words(self.metric, self.tail_samples)}"
        if self.pairs_text():
            text += f", {self.pairs_text()}"
        if self.blind:
            text += f"; {self.blind_text()}"
        return text

    def blind_text(self, named: bool = False) -> str:
        """``blind: could only see changes of 14.2% or more (tolerance 5%); needs about 9
        repeats`` (``named``: ``blind: ttft_p50_ms could only ...``; '' when not blind)."""
        if not self.blind:
            return ""
        seen = ("could not see any change" if self.mde_pct is None
                else f"could only see changes of {self.mde_pct:.1f}% or more")
        need = power.Power(self.mde_pct, True, self.needs, self.needs_unit or "repeats")
        name = f"{self.metric} " if named else ""
        return (f"blind: {name}{seen} at 80% power (tolerance {self.tolerance_pct:g}%); "
                f"{need.needs_text()}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricVerdict:
        """A verdict back from its ``to_dict`` (unknown keys ignored)."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def with_tails(v: MetricVerdict, samples: int | None) -> MetricVerdict:
    """A tail percentile's verdict with the samples per run it rests on (``tail_samples``);
    a gated one resting on too few (``tails.refusal``) is refused: "inconclusive", its note
    saying "not decidable" and the count it needs (``needs``, in requests or gaps per run).
    Other metrics, or an unknown count: unchanged."""
    if samples is None or not tails.is_tail(v.metric):
        return v
    why = tails.refusal(v.metric, samples) if v.gated else ""
    if not why:
        return replace(v, tail_samples=samples)
    q = tails.quantile_of(v.metric) or 0.99
    unit = ("gaps" if v.metric.startswith("itl_") else "requests") + " per run"
    return replace(v, verdict="inconclusive", note="; ".join(x for x in (why, v.note) if x),
                   tail_samples=samples, blind=False, needs=tails.needed(q), needs_unit=unit)


tail_words = tails.tail_words


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
    """Logs of the positive finite values (missing, zero or negative values are dropped: a
    value undefined in a run is None, a stored 0.0 from before that rule is no measurement;
    ``compare_stored`` counts what it dropped)."""
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
    # Power (issue 25): the parts of var_diff, for the repeats needed (``power``); split is
    # False when one run per commit leaves them unknown.
    var_run: float = 0.0
    var_job: float = 0.0
    split: bool = True


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
            # One run per commit: the spread cannot be split (``split`` False).
            var_diff = 2.0 * var_commit
            var_run, var_job = var_commit, 0.0
        return Noise(var_diff, float(len(hist) - 1), "history",
                     f"variance from {len(hist)} earlier baselines", var_run, var_job,
                     split=within is not None)
    if within is not None:
        var_run, df = within
        return Noise(var_run * (1.0 / m + 1.0 / n), float(df), "repeats",
                     f"variance from repeats ({df} degrees of freedom); "
                     f"fewer than {min_history} earlier baselines", var_run)
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
    runs_b, runs_c = len(baseline_values), len(current_values)
    # Runs without a usable value (undefined there, e.g. TPOT when every answer came in one
    # read) are left out of this metric only, and said so.
    lost = [f"{n - k} of {n} {side} runs without a value" for side, n, k in
            (("baseline", len(baseline_values), base.size),
             ("current", len(current_values), cur.size)) if 0 < k < n]
    unusable = "; ".join(lost)
    if base.size == 0 or cur.size == 0:
        missing = "baseline" if base.size == 0 else "current run"
        return MetricVerdict(
            baseline=_geo(base) if base.size else None,
            current=_geo(cur) if cur.size else None,
            change_pct=None, ci_low_pct=None, ci_high_pct=None, verdict="inconclusive",
            note="; ".join([f"no value in the {missing}", *lost]), runs_baseline=runs_b,
            runs_current=runs_c, **common,
        )
    d = float(cur.mean() - base.mean())
    hist = [_logs(h) for h in list(history)[:max_history]]
    noise = estimate_noise(base, cur, hist, min_history=min_history)
    if noise is None:
        change = _pct(d)
        return MetricVerdict(
            baseline=_geo(base), current=_geo(cur), change_pct=change, ci_low_pct=None,
            ci_high_pct=None, verdict="inconclusive",
            note="; ".join([
                f"one run on each side and fewer than {min_history} earlier baselines: the "
                "noise is unknown; use repeats>=2 or save more baselines", *lost]),
            runs_baseline=runs_b, runs_current=runs_c, **common,
        )
    verdict, p, lo, hi = _decide(metric, d, math.sqrt(noise.var_diff), noise.df, alpha=alpha,
                                 tolerance_pct=tolerance_pct, gated=gated)
    seen = stored_power(metric, noise, verdict, gated=gated, alpha=alpha,
                        tolerance_pct=tolerance_pct)
    return MetricVerdict(
        baseline=_geo(base), current=_geo(cur), change_pct=_pct(d), ci_low_pct=lo,
        ci_high_pct=hi, verdict=verdict, p_value=p, method=noise.method, df=noise.df,
        note="; ".join([noise.note, unusable]) if unusable else noise.note, alpha=alpha,
        runs_baseline=runs_b, runs_current=runs_c, mde_pct=seen.mde_pct, blind=seen.blind,
        needs=seen.needs, needs_unit=seen.unit, **common,
    )


def stored_power(metric: str, noise: Noise, verdict: str, *, gated: bool, alpha: float,
                 tolerance_pct: float) -> power.Power:
    """The stored gate's MDE from its noise estimate; when blind, the repeats per side that
    would bring it within the tolerance (with the history's job-to-job part, which repeats
    cannot shrink)."""
    mde = power.finite(power.mde_pct(metric, math.sqrt(noise.var_diff), noise.df, alpha))
    blind = power.is_blind(verdict, gated, mde, tolerance_pct)
    needs = None
    if blind and not noise.split:
        return power.Power(mde, blind, None, power.UNSPLIT)
    if blind:
        fixed = noise.df if noise.method == "history" else None
        needs = power.repeats_needed(metric, noise.var_run, tolerance_pct, alpha,
                                     var_job=noise.var_job, df_fixed=fixed)
    return power.Power(mde, blind, needs, "repeats")
