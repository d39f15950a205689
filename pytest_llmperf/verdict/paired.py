"""The paired gate: runs A and B interleaved in one job, decided by an exact sign-flip
permutation test on the paired log-ratios, joint over the gated metrics.

The test uses the maximum statistic over the metrics, so their correlation is used instead of
a Bonferroni split. Under the null hypothesis (A and B the same, so each pair's log-ratio is as
likely to be positive as negative) the chance that any gated metric is flagged is at most
alpha whatever the shape of the noise: heavy tails and outlier pairs cannot inflate it.
``ab.py`` runs it in two stages with alpha split across the looks. Verdicts are the same
``stats.MetricVerdict`` the stored gate gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..metric_table import higher_is_better
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
