"""Change points over a per-commit history: E-divisive (energy statistic, permutation test)
with a minimum magnitude, for ``llmperf baselines changes`` and the nightly history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .stats import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT, _geo, _logs, _pct


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
