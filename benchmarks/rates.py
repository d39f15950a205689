"""Rates with 95% Wilson intervals, as the calibration benchmarks print them."""

from __future__ import annotations

import math


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int, padded: bool = False) -> str:
    """``12.5% [8.1, 18.7]``; ``padded`` aligns the figures in columns."""
    lo, hi = wilson(k, n)
    if padded:
        return f"{100 * k / n:5.1f}% [{100 * lo:4.1f}, {100 * hi:5.1f}]"
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
