"""Token lengths of a workload: a fixed number, or a distribution drawn per request.

``Workload.input_tokens`` and ``output_tokens`` take an int (every request that long) or a
dict naming a distribution (each request draws its own length, seeded):

- ``{"dist": "normal", "mean": m, "std": s}``: aiperf's ``--synthetic-input-tokens-mean`` /
  ``-stddev`` and guidellm's ``prompt_tokens`` / ``prompt_tokens_stdev`` (``"stddev"`` and
  ``"stdev"`` are accepted for ``"std"``).
- ``{"dist": "lognormal", "mean": m, "std": s}``: a log-normal whose *lengths* have that mean
  and standard deviation; or ``{"dist": "lognormal", "mu": mu, "sigma": sigma}``, the
  parameters of the underlying normal (numpy's and scipy's spelling, median = e**mu).
- ``{"dist": "uniform", "min": a, "max": b}``: every whole length from a to b equally likely.
- ``{"dist": "empirical", "values": [...]}`` or ``{"dist": "empirical", "file": path}``: draws
  (with replacement, equally likely) from observed lengths; the file holds one length per line
  or one JSON list.

Every distribution takes optional ``"min"`` / ``"max"``: a draw is rounded to a whole number
and clipped into [min, max] (default min 1). A normal or log-normal without ``"max"`` is
capped at its one-in-a-billion point (mean + 6 std, or e**(mu + 6 sigma)), so that a
workload's largest prompt is known before it runs (``Lengths.maximum``).

Pure: no pytest; the only I/O is reading an empirical file (``parse_lengths``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import limits
from ..reading import ReadLimitError, read_bytes
from ..values import show

DISTRIBUTIONS = ("normal", "lognormal", "uniform", "empirical")
#: The keys each distribution takes (besides "dist", "min" and "max").
_KEYS: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "std", "stddev", "stdev"),
    "lognormal": ("mean", "std", "stddev", "stdev", "mu", "sigma"),
    "uniform": (),
    "empirical": ("values", "file"),
}
_TAIL_SIGMAS = 6.0  # an unbounded distribution's cap: about one draw in a billion above it
MAX_VALUES = 10_000_000  # lengths of an empirical distribution (as many as requests)


class LengthError(ValueError):
    """A length or distribution that cannot be used (run.workload turns it into a
    WorkloadError)."""


@dataclass(frozen=True)
class Lengths:
    """A parsed length: ``dist`` "fixed" (``low == high``) or one of ``DISTRIBUTIONS``.

    low / high: the clipping bounds (every draw is within them). a / b: the distribution's
    parameters (normal: mean, std; lognormal: mu, sigma; unused otherwise). values: an
    empirical distribution's lengths."""

    dist: str
    low: int
    high: int
    a: float = 0.0
    b: float = 0.0
    values: tuple[int, ...] = ()

    @property
    def fixed(self) -> bool:
        return self.dist == "fixed"

    @property
    def minimum(self) -> int:
        """The shortest length a draw can give."""
        return self.low

    @property
    def maximum(self) -> int:
        """The longest length a draw can give."""
        return self.high

    def mean(self) -> float:
        """The expected length before clipping (the asked mean; the fixed value)."""
        if self.dist == "normal":
            return self.a
        if self.dist == "lognormal":
            return math.exp(self.a + self.b * self.b / 2)
        if self.dist == "empirical":
            return float(np.mean(self.values))
        return (self.low + self.high) / 2

    def draw(self, n: int, seed: int, *stream: int) -> list[int]:
        """``n`` lengths, deterministic for (seed, stream); the first k of n draws are the
        same for any n >= k (one generator, drawn in order)."""
        if self.fixed or n <= 0:
            return [self.low] * max(n, 0)
        rng = np.random.default_rng([seed, *stream])
        raw: np.ndarray[Any, Any]
        if self.dist == "normal":
            raw = rng.normal(self.a, self.b, size=n)
        elif self.dist == "lognormal":
            raw = rng.lognormal(self.a, self.b, size=n)
        elif self.dist == "uniform":
            raw = rng.integers(self.low, self.high, size=n, endpoint=True)
        else:
            raw = np.asarray(self.values, dtype=np.float64)[
                rng.integers(0, len(self.values), size=n)]
        return [int(x) for x in np.clip(np.rint(raw), self.low, self.high)]

    def describe(self) -> str:
        """Short words for reports: ``128``, ``normal(mean 128, std 32) in [1, 320]``."""
        if self.fixed:
            return str(self.low)
        bounds = f" in [{self.low}, {self.high}]"
        if self.dist == "normal":
            return f"normal(mean {self.a:g}, std {self.b:g}){bounds}"
        if self.dist == "lognormal":
            return f"lognormal(mu {self.a:.4g}, sigma {self.b:.4g}){bounds}"
        if self.dist == "uniform":
            return f"uniform{bounds}"
        return f"empirical({len(self.values)} values){bounds}"


def describe(value: Any) -> str:
    """A stored workload's length (an int or a distribution dict) in short words; a value
    that does not parse (an older or edited file) is shown as it is."""
    try:
        lengths = parse_lengths("length", value, read_files=False)
    except LengthError:
        if isinstance(value, Mapping) and isinstance(value.get("dist"), str):
            return str(value["dist"])
        return str(value)
    if isinstance(value, Mapping) and "file" in value:  # not read here: named
        bounds = "".join(f" {k} {value[k]}" for k in ("min", "max") if k in value)
        return f"empirical({Path(str(value['file'])).name}){bounds}"
    return lengths.describe()


def parse_lengths(name: str, value: Any, *, read_files: bool = True) -> Lengths:
    """``value`` (an int or a distribution dict) checked; LengthError is one line naming
    ``name`` and the bad key. ``read_files=False``: an empirical ``file`` is not read (its
    bounds are then those given, else 1 .. the token limit)."""
    if isinstance(value, bool) or not isinstance(value, int | Mapping):
        raise LengthError(f"{name}={show(value)} must be a whole number >= 1 or a "
                          "distribution such as {'dist': 'normal', 'mean': 128, 'std': 32}")
    if isinstance(value, int):
        _bounded(name, value)
        return Lengths("fixed", value, value)
    dist = value.get("dist")
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        raise LengthError(f"{name}['dist']={show(dist)} must be one of: "
                          f"{', '.join(DISTRIBUTIONS)}")
    allowed = ("dist", "min", "max", *_KEYS[dist])
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise LengthError(f"{name} ({dist}) has unknown key(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(allowed)}")
    low = _whole(name, value, "min", 1) if "min" in value else None
    high = _whole(name, value, "max", 1) if "max" in value else None
    if low is not None and high is not None and low > high:
        raise LengthError(f"{name}: min={low} must be <= max={high}")
    if dist == "uniform":
        if low is None or high is None:
            raise LengthError(f"{name} (uniform) needs 'min' and 'max'")
        return Lengths(dist, low, high)
    if dist == "empirical":
        return _empirical(name, value, low, high, read_files)
    return _parametric(name, dist, value, low, high)


def _parametric(name: str, dist: str, value: Mapping[str, Any], low: int | None,
                high: int | None) -> Lengths:
    """A normal or a log-normal, its cap known (``high``, else the one-in-a-billion point)."""
    stds = [k for k in ("std", "stddev", "stdev") if k in value]
    if len(stds) > 1:
        raise LengthError(f"{name}: give one of {', '.join(stds)}")
    if dist == "lognormal" and ("mu" in value or "sigma" in value):
        if "mean" in value or stds:
            raise LengthError(f"{name} (lognormal): give either mean and std (of the "
                              "lengths) or mu and sigma (of their logarithm), not both")
        a = _real(name, value, "mu", None)
        b = _real(name, value, "sigma", 0.0)
    else:
        if "mean" not in value or not stds:
            raise LengthError(f"{name} ({dist}) needs 'mean' and 'std'"
                              + (" (or 'mu' and 'sigma')" if dist == "lognormal" else ""))
        mean = _real(name, value, "mean", 0.0, strict=True)
        std = _real(name, value, stds[0], 0.0)
        a, b = mean, std
        if dist == "lognormal":  # the normal under the log whose exp has this mean and std
            b = math.sqrt(math.log1p((std / mean) ** 2))
            a = math.log(mean) - b * b / 2
    lo = low if low is not None else 1
    if high is None:
        tail = a + _TAIL_SIGMAS * b
        if dist == "lognormal":
            tail = math.exp(tail) if tail < 700 else math.inf
        if not tail <= limits.TOKENS.maximum:
            raise LengthError(
                f"{name}: without 'max', lengths up to {tail:,.0f} (the one-in-a-billion "
                f"point) could be drawn, above the limit: {limits.TOKENS.words()}; give 'max'")
        high = max(lo, math.ceil(tail))
    return Lengths(dist, lo, high, a, b)


def _empirical(name: str, value: Mapping[str, Any], low: int | None, high: int | None,
               read_files: bool) -> Lengths:
    if ("values" in value) == ("file" in value):
        raise LengthError(f"{name} (empirical) needs one of 'values' (a list of lengths) or "
                          "'file' (a path)")
    if "file" in value:
        path = value["file"]
        if not isinstance(path, str) or not path:
            raise LengthError(f"{name}['file']={show(path)} must be a path")
        if not read_files:
            return Lengths("empirical", low or 1, high or limits.TOKENS.maximum, values=(1,))
        try:
            values = read_lengths(path)
        except LengthError as exc:
            raise LengthError(f"{name}['file']: {exc}") from None
    else:
        raw = value["values"]
        if not isinstance(raw, list | tuple) or not raw:
            raise LengthError(f"{name}['values'] must be a non-empty list of lengths")
        if len(raw) > MAX_VALUES:
            raise LengthError(f"{name}['values'] has {len(raw):,} lengths: at most "
                              f"{MAX_VALUES:,}")
        values = []
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LengthError(f"{name}['values'][{i}]={show(v)} must be a whole number "
                                  ">= 1")
            values.append(v)
    lo = low if low is not None else 1
    hi = high if high is not None else max(lo, max(values))
    _bounded(f"{name}: the largest length", hi)
    return Lengths("empirical", lo, hi, values=tuple(values))


def read_lengths(path: str | Path) -> list[int]:
    """An empirical file's lengths: one JSON list, or one whole number per line (blank lines
    and lines starting with # skipped). LengthError names the file and line of a bad one."""
    try:
        data = read_bytes(path)
    except ReadLimitError as exc:
        raise LengthError(str(exc)) from None
    except OSError as exc:
        raise LengthError(f"{path}: cannot read the lengths file ({exc.strerror or exc})"
                          ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = data.count(b"\n", 0, exc.start) + 1
        raise LengthError(f"{path}:{at}: not UTF-8 text") from None
    values: list[int] = []
    if text.lstrip().startswith("["):
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise LengthError(f"{path}{where}: not a valid JSON list of lengths") from None
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LengthError(f"{path}: item {i}={show(v)} must be a whole number >= 1")
            values.append(v)
    else:
        for lineno, line in enumerate(text.split("\n"), 1):
            word = line.strip()
            if not word or word.startswith("#"):
                continue
            try:
                length = int(word)
            except ValueError:
                length = 0
            if length < 1:
                raise LengthError(f"{path}:{lineno}: {show(word)} is not a whole number >= 1")
            values.append(length)
    if not values:
        raise LengthError(f"{path}: no lengths in file")
    if len(values) > MAX_VALUES:
        raise LengthError(f"{path}: {len(values):,} lengths: at most {MAX_VALUES:,}")
    return values


def _whole(name: str, value: Mapping[str, Any], key: str, minimum: int) -> int:
    v = value[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise LengthError(f"{name}[{key!r}]={show(v)} must be a whole number >= {minimum}")
    _bounded(f"{name}[{key!r}]", v)
    return v


def _real(name: str, value: Mapping[str, Any], key: str, at_least: float | None,
          strict: bool = False) -> float:
    v = value[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise LengthError(f"{name}[{key!r}]={show(v)} must be a finite number")
    if at_least is not None and (v <= at_least if strict else v < at_least):
        raise LengthError(f"{name}[{key!r}]={show(v)} must be {'>' if strict else '>='} "
                          f"{at_least:g}")
    if abs(v) > limits.TOKENS.maximum:
        raise LengthError(f"{name}[{key!r}]={show(v)} is above the limit: "
                          f"{limits.TOKENS.words()}")
    return float(v)


def _bounded(name: str, value: int) -> None:
    problem = limits.TOKENS.problem(name, value)
    if problem:
        raise LengthError(problem)
    if value < 1:
        raise LengthError(f"{name}={show(value)} must be a whole number >= 1")
