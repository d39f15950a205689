"""The one check every number read from a user, a file or a server passes: a real int or float
(not a bool) that is finite as a float (an int too large for one is not). Stdlib only."""

from __future__ import annotations

import math


def is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
