"""Change points over a per-commit history, for the nightly report and ``llmperf baselines
changes``.

``detect`` (the one to use) takes every run of every commit, oldest first, and finds the
commits where the level shifted and stayed shifted:

- Each commit is summarised by the mean of its runs' logs, after the runs of the segment being
  searched are winsorised (Huber's clipping): every run's log is clipped to the segment's median
  plus or minus ``HUBER_K`` (1.5) robust standard deviations (1.4826 times the median absolute
  deviation of the runs). A run made while the machine was loaded (recorded runs have tails of
  up to 2.7x) then weighs no more than an ordinary high run, so it neither hides a real step by
  widening the noise nor carries a split by itself. A new level held by fewer than half the
  runs is clipped too (to about 1.5 robust standard deviations above or below the old one,
  still a clear step to the scan); the sizes, intervals and the minimum change below use the
  unclipped runs. The commits, not the runs, are the unit of the test, because runs of one
  commit share the machine's state (their noise is not independent), and a nightly rarely has
  more than one or two runs per commit.
- A candidate split is the commit that maximises the Student t statistic of the difference
  between the mean of those commit values before it and after it (variance pooled within the
  two sides), over every split that leaves at least ``min_size`` (3) commits on each side: a new
  level must hold for 3 commits before it can be a change point, and a single outlying commit
  widens the pooled variance rather than carrying a split. The maximum over the splits is also
  the maximum-likelihood placement of one level change in those values.
- Its p-value is a permutation test of the whole scan: the commits are shuffled (each keeping
  all its runs), the maximum statistic is recomputed, and p is the share of shuffles at least as
  extreme. So it is exact under "nothing changed" whatever the noise's shape (the clipping
  depends only on the set of runs, which a shuffle does not change), and it already pays for
  having looked at every split.
- Found splits are searched again on each side (binary segmentation), then the segmentation is
  merged back: the change point with the smallest change that is not larger than
  ``min_change_pct`` is dropped, its neighbours recomputed, until every one left is larger.
  "Larger" holds twice: for the runs' geometric means of the two neighbouring segments, and
  for the median of the differences between their commits (Hodges-Lehmann), which one
  outlying commit cannot move: a level must persist, not just be pulled by one spike.
- Each change point reports the geometric means of the runs of its whole neighbouring segments,
  the change between them and its two-sided 1 - 2 alpha Student t interval, with the spread of
  the commit means within those two segments as the noise (commit-to-commit variance included).
  The interval is computed after the split was chosen, so it is a description, not a test.

A series too short for any split to reach ``alpha`` says so (status "too short") rather than
reporting nothing: with alpha 0.01 that is fewer than 10 commits, and a change among the newest
3 commits of the series needs at least 12.

``change_points`` is the earlier detector (E-divisive over one value per commit), kept for
comparison in ``benchmarks/changepoint_calibration.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .stats import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT, _geo, _interval, _logs, _pct

DEFAULT_MIN_SIZE = 3
DEFAULT_PERMUTATIONS = 1999
HUBER_K = 1.5  # clipping of the runs, in robust standard deviations (as MASS::huber's default)


@dataclass(frozen=True)
class ChangePoint:
    index: int  # index (into the series) of the first commit of the new level
    before: float  # geometric mean of the runs before (whole previous segment)
    after: float  # geometric mean of the runs after (whole next segment)
    change_pct: float  # (after / before - 1) * 100
    ci_low_pct: float  # interval of change_pct (two-sided 1 - 2 * alpha)
    ci_high_pct: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    change_points: list[ChangePoint]
    status: str  # "ok" (decided) or "too short" (not enough commits to decide)
    note: str  # one line for the report


def min_commits(alpha: float = DEFAULT_ALPHA, min_size: int = DEFAULT_MIN_SIZE) -> int:
    """The fewest commits with which a split can reach ``alpha`` at all.

    The most extreme arrangement (every commit after the middle above every commit before it,
    or below) has a permutation p-value of 2 / C(n, n // 2); fewer commits than this can never
    show a change, whatever happened.
    """
    n = 2 * min_size
    while 2.0 / math.comb(n, n // 2) > alpha:
        n += 1
    return n


def _min_split_p(n: int, after: int) -> float:
    return 2.0 / math.comb(n, after)


def _commit_values(logs: Sequence[np.ndarray]) -> np.ndarray:
    """One value per commit of a segment: the mean of its runs' logs after every run of the
    segment is clipped to the segment's median +- HUBER_K robust standard deviations.

    The scale is 1.4826 x the runs' median absolute deviation from their median (the standard
    deviation, were the noise normal); when more than half the runs are equal it is 0, and the
    standard deviation of the runs is used instead. Computed from the set of runs only, so it
    is the same for every shuffle of the commits.
    """
    runs = np.concatenate(logs)
    centre = float(np.median(runs))
    scale = 1.4826 * float(np.median(np.abs(runs - centre)))
    if scale <= 0:
        scale = float(runs.std())
    clipped = np.clip(runs, centre - HUBER_K * scale, centre + HUBER_K * scale)
    sizes = np.asarray([x.size for x in logs])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    out: np.ndarray = np.add.reduceat(clipped, starts) / sizes
    return out


def _scan(x: np.ndarray, min_size: int) -> np.ndarray:
    """|Student t| of the difference of the means of the two sides of every split k
    (min_size <= k <= n - min_size, k the first index after), per row of ``x`` (rows, n).

    The variance is pooled within the two sides, so a commit far off its own side (a spike)
    widens it rather than carrying the split.
    """
    n = x.shape[-1]
    k = np.arange(min_size, n - min_size + 1)
    m = (n - k).astype(float)
    c1 = np.cumsum(x, axis=-1)
    c2 = np.cumsum(x * x, axis=-1)
    s1a, s2a = c1[..., k - 1], c2[..., k - 1]
    s1b, s2b = c1[..., -1:] - s1a, c2[..., -1:] - s2a
    ss = (s2a - s1a * s1a / k) + (s2b - s1b * s1b / m)
    var = np.maximum(ss, 0.0) / max(n - 2, 1) * (1.0 / k + 1.0 / m)
    d = np.abs(s1b / m - s1a / k)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d > 1e-12, d / np.sqrt(var), 0.0)
    out: np.ndarray = t
    return out


def _best_split(values: np.ndarray, min_size: int, permutations: int,
                rng: np.random.Generator) -> tuple[int, float]:
    """The split (first index of the after side) of one segment's commit values, and its
    permutation p-value.

    The p-value is the share of orderings of the commits (each keeping its runs) whose best
    split is at least as extreme as the observed best: the scan over every split is paid for.
    """
    n = values.size
    x = values - values.mean()
    t = _scan(x[None, :], min_size)[0]
    best = int(np.argmax(t))
    shuffled = rng.permuted(np.broadcast_to(x, (permutations, n)), axis=1)
    tmax = _scan(shuffled, min_size).max(axis=1)
    exceed = int(np.count_nonzero(tmax >= t[best] * (1 - 1e-9)))
    return min_size + best, (exceed + 1) / (permutations + 1)


def _describe(logs: Sequence[np.ndarray], means: np.ndarray, lo: int, k: int, hi: int,
              p: float, alpha: float) -> ChangePoint:
    """The change point at ``k`` between segments [lo, k) and [k, hi)."""
    a, b = logs[lo:k], logs[k:hi]
    ra, rb = np.concatenate(a), np.concatenate(b)
    d = float(rb.mean() - ra.mean())
    ma, mb = means[lo:k], means[k:hi]
    ss = float(((ma - ma.mean()) ** 2).sum() + ((mb - mb.mean()) ** 2).sum())
    df = max(ma.size + mb.size - 2, 1)
    var_commit = ss / df
    # The runs' mean of a segment weighs each commit by its runs; each commit mean counts as
    # one draw of the commit-to-commit noise.
    wa = np.asarray([x.size for x in a], dtype=float) / ra.size
    wb = np.asarray([x.size for x in b], dtype=float) / rb.size
    se = math.sqrt(var_commit * float((wa ** 2).sum() + (wb ** 2).sum()))
    lo_pct, hi_pct = _interval(d, se, float(df), alpha)
    return ChangePoint(k, _geo(ra), _geo(rb), _pct(d), lo_pct, hi_pct, p)


def _segment(logs: Sequence[np.ndarray], means: np.ndarray, splits: dict[int, float],
             alpha: float, min_change_pct: float) -> list[ChangePoint]:
    """Merge the found splits until every change point left is larger than the minimum."""
    keep = sorted(splits)
    n = means.size
    while True:
        edges = [0, *keep, n]
        cps = [_describe(logs, means, edges[i], edges[i + 1], edges[i + 2],
                         splits[edges[i + 1]], alpha) for i in range(len(keep))]
        size = {c.index: min(abs(c.change_pct),
                             abs(_shift_pct(means, edges[i], edges[i + 1], edges[i + 2])))
                for i, c in enumerate(cps)}
        small = [k for k, v in size.items() if v <= min_change_pct]
        if not small:
            return cps
        keep.remove(min(small, key=lambda k: size[k]))


def _shift_pct(means: np.ndarray, lo: int, k: int, hi: int) -> float:
    """The typical shift between the commits of two segments: the median of the differences of
    every commit after and every commit before (Hodges-Lehmann), in percent. A level that
    holds moves it; one outlying commit does not."""
    return _pct(float(np.median(means[k:hi][:, None] - means[lo:k][None, :])))


def detect(series: Sequence[Sequence[float]], *, alpha: float = DEFAULT_ALPHA,
           min_change_pct: float = DEFAULT_TOLERANCE_PCT, min_size: int = DEFAULT_MIN_SIZE,
           permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> Detection:
    """Change points of a history: one list of run values per commit, oldest first.

    A change point is kept when its permutation p-value is below ``alpha`` and the runs'
    geometric means of its two neighbouring segments differ by more than ``min_change_pct``
    percent; the new level must hold for ``min_size`` commits. Direction-free: it reports
    shifts both ways, and the caller decides which direction is a regression. Deterministic
    for a given ``seed``.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, not {min_size}")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, not {permutations}")
    logs: list[np.ndarray] = []
    for i, runs in enumerate(series):
        x = _logs(list(runs))
        if x.size == 0 or x.size != len(runs):
            raise ValueError(f"commit {i} of the series: run values must be positive finite "
                             f"numbers, and at least one, got {list(runs)!r}")
        logs.append(x)
    n = len(logs)
    need = min_commits(alpha, min_size)
    if n < need:
        return Detection([], "too short", f"{n} commit{'s' if n != 1 else ''}; needs {need} "
                         f"to decide at alpha {alpha:g}")
    means = np.asarray([x.mean() for x in logs])
    rng = np.random.default_rng(seed)
    splits: dict[int, float] = {}

    def split(lo: int, hi: int) -> None:
        size = hi - lo
        if size < 2 * min_size or _min_split_p(size, size // 2) > alpha:
            return
        k, p = _best_split(_commit_values(logs[lo:hi]), min_size, permutations, rng)
        if p >= alpha:
            return
        splits[lo + k] = p
        split(lo, lo + k)
        split(lo + k, hi)

    split(0, n)
    cps = _segment(logs, means, splits, alpha, min_change_pct)
    n_runs = sum(x.size for x in logs)
    note = f"{n} commits, {n_runs} runs"
    tail = min_size
    while tail < n - min_size and _min_split_p(n, tail) > alpha:
        tail += 1
    if tail > min_size:
        note += f"; a change in the newest {tail - 1} commits cannot show yet"
    return Detection(cps, "ok", note)


# ------------------------------------------------------------------------ earlier detector


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
    """The earlier detector: recursive E-divisive splitting of one value per commit.

    A split is kept when its permutation p-value is below ``alpha`` and the geometric means of
    the two sides differ by more than ``min_change_pct``. Kept for comparison: ``detect`` takes
    every run, ignores single spikes and says when a series is too short.
    """
    x = _logs(values)
    if x.size != len(values):
        raise ValueError("change_points needs positive finite values")
    rng = np.random.default_rng(seed)
    found: list[ChangePoint] = []
    logs = [x[i:i + 1] for i in range(x.size)]

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
        found.append(_describe(logs, x, lo, lo + k, hi, p, alpha))
        split(lo, lo + k)
        split(lo + k, hi)

    split(0, x.size)
    return sorted(found, key=lambda c: c.index)
