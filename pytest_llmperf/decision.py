"""The regression decision's parameters, declared once: the false-alarm rate ``alpha`` (its
default and the one range every gate accepts) and the default tolerance
(``max_regression_pct``). The stored gate, ``llmperf_bench.compare``, the A/B flag,
``llmperf compare``, ``llmperf bisect`` and ``llmperf nightly`` all read them from here.
No imports: settings and the command line read it before anything heavy loads."""

from __future__ import annotations

import math

#: One-sided significance level of every regression decision.
DEFAULT_ALPHA = 0.01
#: ``alpha`` must lie strictly inside this range: above 0.5 a "significant" change would be
#: likelier noise than not.
ALPHA_RANGE = (0.0, 0.5)
#: The smallest change that counts as a regression, percent (``max_regression_pct``).
DEFAULT_TOLERANCE_PCT = 5.0


def alpha_problem(alpha: object) -> str | None:
    """Why ``alpha`` cannot be a significance level (None: it can), in words that follow the
    option's name: ``--alpha 0.7: must be between 0 and 0.5 (exclusive), e.g. 0.01``."""
    low, high = ALPHA_RANGE
    if (isinstance(alpha, bool) or not isinstance(alpha, int | float)
            or not math.isfinite(alpha) or not low < alpha < high):
        return f"must be between {low:g} and {high:g} (exclusive), e.g. {DEFAULT_ALPHA:g}"
    return None
