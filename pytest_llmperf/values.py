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


def show(value: object, width: int = 40) -> str:
    """A value for a one-line message: its repr, an enormous one abbreviated
    (``1000000000...(401 digits)``), and an int too long for Python to print (more than 4300
    digits: ``repr`` raises ValueError) described by its size instead of failing."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        bits = value.bit_length() if isinstance(value, int) else 0
        return f"an integer of about {int(bits * math.log10(2)) + 1} digits"
    if len(text) <= width:
        return text
    unit = "digits" if isinstance(value, int) else "characters"
    return f"{text[:12]}...({len(text)} {unit})"
