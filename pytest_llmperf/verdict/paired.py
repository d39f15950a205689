"""The paired gate: runs A and B interleaved in one job, decided by an exact sign-flip
permutation test on the paired log-ratios, joint over the gated metrics.

The test uses the minimum p-value over the metrics (each metric resting on its own usable
pairs), so their correlation is used instead of a Bonferroni split. Under the null hypothesis
(A and B the same, so each pair's log-ratio is as likely to be positive as negative) the
chance that any gated metric is flagged is at most alpha whatever the shape of the noise:
heavy tails and outlier pairs cannot inflate it.
``ab.py`` runs it in two stages with alpha split across the looks. Verdicts are the same
``stats.MetricVerdict`` the stored gate gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..metric_table import higher_is_better
from . import power
from .stats import (
    DEFAULT_ALPHA,
    DEFAULT_TOLERANCE_PCT,
    MetricVerdict,
    _geo,
    _interval,
    _Measured,
    _PairedShared,
    _pct,
    _sign,
    _verdict,
)

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

    ``worse``: one array per metric, all over the same pairs; NaN where a pair has no value
    for that metric (it still counts for the others: flipping pair i flips every metric that
    has it). Returns (p_worse, p_better).
    ``p_worse`` is adjusted over the metrics by the minimum p-value (Westfall and Young's
    single-step min-P): each metric's p-value is compared with the smallest of all the
    metrics' p-values under every sign vector, so P(any p_worse <= alpha) <= alpha when no
    metric changed, and correlated metrics (TPOT and tokens/s) cost less than Bonferroni.
    On p-values rather than raw statistics so that a metric resting on few pairs (whose
    statistic reaches its maximum under many sign vectors) cannot swamp the others.
    ``p_better`` is per metric (it only labels improvements).

    The statistic is the mean over the root mean square, which orders sign vectors exactly as
    the t statistic does (the sum of squares does not change under sign flips). Exact: the
    smallest p-value of a metric with k values is 2**-k (``smallest_p``), so 5 pairs can never
    reach p < 1/32 and 10 pairs reach 1/1024.
    """
    if not worse:
        return [], []
    n = len(worse[0])
    signs = sign_vectors(n, seed=seed)
    rows = signs.shape[0]
    eps = 1e-9
    marginal, observed, p_better = [], [], []
    for raw in worse:
        have = np.isfinite(raw)
        w = np.where(have, raw, 0.0)
        k = int(have.sum())
        scale = float(np.sqrt(np.sum(w * w) / k)) if k else 0.0
        z = signs @ w / (k * scale) if scale > 0.0 else np.zeros(rows)
        # Under each sign vector, this metric's own p-value: the share of sign vectors whose
        # statistic is at least as large (row 0 is the observed data).
        p_rows = (rows - np.searchsorted(np.sort(z), z - eps, side="left")) / rows
        marginal.append(p_rows)
        observed.append(float(p_rows[0]))
        p_better.append(float(np.mean(z <= z[0] + eps)))
    smallest = np.vstack(marginal).min(axis=0)
    p_worse = [float(np.mean(smallest <= p + 1e-12)) for p in observed]
    return p_worse, p_better


def smallest_p(pairs: int) -> float:
    """The smallest p-value the sign-flip test can give on ``pairs`` pairs: 2**-pairs (exact),
    or one over the sampled sign vectors beyond ``MAX_EXACT_PAIRS``."""
    return 2.0**-pairs if pairs <= MAX_EXACT_PAIRS else 1.0 / SIGN_SAMPLES


def pairs_needed(alpha: float) -> int:
    """The fewest pairs on which the sign-flip test can reach p < alpha."""
    k = 1
    while smallest_p(k) >= alpha and k <= MAX_EXACT_PAIRS:
        k += 1
    return k


def usable(x: float | None) -> bool:
    """A run's value that a log-ratio can use: present, finite and positive. A value that is
    undefined in a run (TPOT when the whole answer came in one read) is None there; a stored
    0.0 from before that rule is unusable too, never a real measurement."""
    return x is not None and math.isfinite(x) and x > 0


_positive_finite = usable  # the older name


def compare_paired_set(
    a: Mapping[str, Sequence[float | None]],
    b: Mapping[str, Sequence[float | None]],
    *,
    gated: Sequence[str],
    watched: Sequence[str] = (),
    alpha: float = DEFAULT_ALPHA,
    tolerance_pct: Mapping[str, float] | float = DEFAULT_TOLERANCE_PCT,
    interval_alpha: float | None = None,
    clear_alpha: float | None = None,
) -> list[MetricVerdict]:
    """Paired decisions for B (candidate) against A (reference); pair i = (a[m][i], b[m][i]).

    Each metric rests on its own usable pairs: those where both runs have a positive finite
    value (``usable``); a pair that lacks one metric still counts for the others. Every
    verdict says how many pairs it rests on (``n_baseline`` = ``n_current``) of how many were
    made (``pairs_run``), in its note too when some were unusable.

    The gated metrics are tested jointly (``signflip_pvalues``) at ``alpha``; each watched
    metric alone, at ``alpha``, warning only. A metric is flagged when its p-value is below
    alpha **and** its estimated change (the geometric mean of the ratios) is beyond its
    tolerance. The interval shown is Student's t at 1 - 2 ``interval_alpha`` (default:
    ``alpha``) on the log-ratios.

    A metric is "ok" only when it could have failed: its usable pairs can reach p < alpha
    (``smallest_p``), or its interval at 1 - 2 ``clear_alpha`` (default: ``interval_alpha``)
    rules out a change beyond the tolerance. Otherwise it is "inconclusive (k of n pairs
    usable)": with too few pairs "ok" would be the only possible answer.
    """
    ia = alpha if interval_alpha is None else interval_alpha
    ca = ia if clear_alpha is None else clear_alpha

    def tol(metric: str) -> float:
        if isinstance(tolerance_pct, Mapping):
            return float(tolerance_pct.get(metric, DEFAULT_TOLERANCE_PCT))
        return float(tolerance_pct)

    metrics_all = [*gated, *watched]
    if any(len(a[m]) != len(b[m]) for m in metrics_all):
        raise ValueError("paired values need as many B values as A values")
    made = max((len(a[m]) for m in metrics_all), default=0)  # the pairs run

    def pairs_of(m: str) -> list[int]:
        return [i for i in range(len(a[m])) if usable(a[m][i]) and usable(b[m][i])]

    def family(metrics: Sequence[str], is_gated: bool) -> list[MetricVerdict]:
        out: list[MetricVerdict] = []
        idx = {m: pairs_of(m) for m in metrics}
        tested = [m for m in metrics if len(idx[m]) >= 2]  # the rows of the joint test
        logs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows: list[np.ndarray] = []
        for m in tested:
            # Every value at idx[m] is usable: the filters only narrow the type.
            la = np.log([float(x) for i in idx[m] if (x := a[m][i]) is not None])
            lb = np.log([float(x) for i in idx[m] if (x := b[m][i]) is not None])
            logs[m] = (la, lb)
            row = np.full(made, np.nan)
            row[idx[m]] = _sign(m) * (lb - la)
            rows.append(row)
        position = {m: k for k, m in enumerate(tested)}  # a metric's row in the joint test
        p_w, p_b = signflip_pvalues(rows) if rows else ([], [])
        joint = f", joint over {len(tested)} gated metrics" if is_gated and len(tested) > 1 \
            else ""
        for m in metrics:
            k = len(idx[m])
            of = f"{k} of {made}"
            common: _PairedShared = {
                "metric": m, "gated": is_gated, "tolerance_pct": tol(m), "method": "paired",
                "n_baseline": k, "n_current": k}
            if k == 0:
                out.append(MetricVerdict(
                    baseline=None, current=None, change_pct=None, ci_low_pct=None,
                    ci_high_pct=None, verdict="inconclusive", pairs_run=made,
                    note=f"inconclusive ({of} pairs usable): no pair has a value on both sides",
                    **common))
                continue
            if k == 1:
                i = idx[m][0]
                la1, lb1 = math.log(float(a[m][i] or 0.0)), math.log(float(b[m][i] or 0.0))
                out.append(MetricVerdict(
                    baseline=math.exp(la1), current=math.exp(lb1), change_pct=_pct(lb1 - la1),
                    ci_low_pct=None, ci_high_pct=None, verdict="inconclusive",
                    pairs_run=made,
                    note=f"inconclusive ({of} pairs usable): one pair cannot show the noise",
                    **common))
                continue
            la, lb = logs[m]
            r = lb - la
            d = float(r.mean())
            base: _Measured = {"baseline": _geo(la), "current": _geo(lb), "change_pct": _pct(d)}
            j = position[m]
            se = float(r.std(ddof=1) / math.sqrt(r.size))
            lo, hi = _interval(d, se, r.size - 1.0, ia)
            verdict = _verdict(m, d, p_w[j], p_b[j], alpha=alpha, tolerance_pct=tol(m),
                               gated=is_gated)
            pairs_text = (f"{k} interleaved pairs" if k == made
                          else f"{of} interleaved pairs usable")
            note = f"{pairs_text}; sign-flip test{joint}"
            if verdict == "ok" and smallest_p(k) >= alpha:
                clo, chi = _interval(d, se, r.size - 1.0, ca)
                if not _within(m, clo, chi, tol(m)):
                    verdict = "inconclusive"
                    note = (f"inconclusive ({of} pairs usable): {k} pairs cannot reach "
                            f"p < {alpha:g} (the smallest p-value is {smallest_p(k):.2g}; "
                            f"{pairs_needed(alpha)} needed) and the interval does not rule "
                            f"out a change beyond the tolerance; sign-flip test{joint}")
            seen = paired_power(m, float(r.std(ddof=1)), k, alpha, verdict,
                                gated=is_gated, tolerance_pct=tol(m))
            out.append(MetricVerdict(
                ci_low_pct=lo, ci_high_pct=hi, verdict=verdict, p_value=p_w[j],
                df=r.size - 1.0, alpha=alpha, pairs_run=made, note=note, mde_pct=seen.mde_pct,
                blind=seen.blind, needs=seen.needs, needs_unit=seen.unit, **base, **common))
        return out

    verdicts = family(list(gated), True) if gated else []
    for m in watched:
        verdicts += family([m], False)
    return verdicts


def paired_power(metric: str, sd_pairs: float, pairs: int, alpha: float, verdict: str, *,
                 gated: bool, tolerance_pct: float) -> power.Power:
    """The paired gate's MDE on ``pairs`` pairs whose log-ratios spread by ``sd_pairs``:
    (t_{1-alpha,n-1} + t_{0.8,n-1}) * sd / sqrt(n) (``power``); None (it could not see any
    change) when the sign-flip test cannot reach p < alpha on so few pairs. When blind, the
    pairs that would bring it within the tolerance."""
    mde = (None if smallest_p(pairs) >= alpha else
           power.finite(power.mde_pct(metric, sd_pairs / math.sqrt(pairs), pairs - 1.0, alpha)))
    blind = power.is_blind(verdict, gated, mde, tolerance_pct)
    needs = (power.pairs_needed(metric, sd_pairs, tolerance_pct, alpha,
                                least=pairs_needed(alpha)) if blind else None)
    return power.Power(mde, blind, needs, "pairs")


def _within(metric: str, lo: float, hi: float, tolerance_pct: float) -> bool:
    """The interval's worse end is within the tolerance."""
    worst = -lo if higher_is_better(metric) else hi
    return worst <= tolerance_pct


def compare_paired(
    metric: str,
    a_values: Sequence[float | None],
    b_values: Sequence[float | None],
    *,
    alpha: float = DEFAULT_ALPHA,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    gated: bool = True,
) -> MetricVerdict:
    """One metric's paired decision: B (candidate) against A (reference); pairs without a
    usable value on both sides do not count (the verdict says how many did). See
    ``compare_paired_set``."""
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
    return _within(v.metric, v.ci_low_pct, v.ci_high_pct, v.tolerance_pct)
