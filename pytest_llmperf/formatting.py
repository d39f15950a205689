"""Numbers as text: the formats that messages, tables and plot labels share, in one place.

Standard library only (marker thresholds use it while the plugin collects tests). Which
function to use:

- ``num(value)``: a measured value (reports, plots, the gate's terminal lines, ``llmperf
  baselines diff``): 4 significant digits below 1000 (63, 65.75, 0.5113, 1e-06: no
  trailing zeros), whole from 1000 on (12346). Two keywords give the variants messages use:

  - ``large=".1f"``: one decimal from 1000 on (1234.6), as a comparison line says it
    (``stats.MetricVerdict.describe``: "measured 1234.6, baseline 1100.2").
  - ``large=".1f", whole=True``: also a whole number as an integer (1500, not 1500.0), as a
    threshold says it ("min_tps 1500 < 2000") and the one-line failure headline.

  ``-`` for None, anything that is not a number, NaN and infinity.
- ``display(value)``: any summary value in an HTML or Markdown cell: ``-`` for None, yes/no
  for a bool, an int as it is, a float by ``num``, anything else by ``str``.
- ``compact(value)``: a terminal table cell, narrower: 3 significant digits below 10 (2.35),
  one decimal below 1000 (812.4), whole from 1000 on; ``-`` for None, anything that is not
  a float (an int, a string) as it is.
- ``pct(value)``: a signed change, ``+17.4%``; ``-`` for anything that is not a finite
  number.
- ``fixed(value, spec)``: ``format(value, spec)`` (e.g. ``".1f"``), ``-`` for None.
"""

from __future__ import annotations

import math
from typing import Any


def num(value: Any, *, large: str = ".0f", whole: bool = False) -> str:
    """A number: ``.4g`` below 1000, ``large`` (a format spec) from 1000 on; with ``whole``, a
    whole number (below 1e12) as an integer. ``-`` for None, non-numbers and non-finite."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    if whole and value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1000 else format(value, large)


def display(value: Any) -> str:
    """Any summary value for an HTML or Markdown cell (see the module docstring)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return num(value)
    return str(value)


def compact(value: Any) -> str:
    """A terminal table cell (see the module docstring)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def pct(value: Any) -> str:
    """A signed change in percent, one decimal: ``+17.4%``, ``-3.0%``."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:+.1f}%"


def fixed(value: Any, spec: str) -> str:
    """``format(value, spec)``, or ``-`` for None."""
    return "-" if value is None else format(value, spec)
