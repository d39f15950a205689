"""Plots as inline SVG, made in Python: no JavaScript, nothing fetched when the page opens.

Every function returns one ``<svg>`` element as a string, ready to embed in HTML. The
elements carry ``data-*`` attributes (plot kind, metric, per-point values) so that tests and
scripts can read the numbers back from the page.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ..formatting import num
from ..metric_table import higher_is_better
from ..run.metrics import (
    NS_PER_S,
    RequestRecord,
    itl_counted,
    latency_series,
    measured_window_ns,
)

WIDTH = 410
HEIGHT = 250
MARGIN_LEFT = 60
MARGIN_RIGHT = 16
MARGIN_TOP = 30
MARGIN_BOTTOM = 44
MAX_POINTS = 300  # per line: enough for the eye, keeps the page small

PALETTE: tuple[str, ...] = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2")
REGRESSION_COLOR = "#dc2626"
JUMP_COLOR = "#ea580c"
CURRENT_COLOR = "#111827"


def _a(value: Any) -> str:
    """An attribute value, escaped."""
    return escape(str(value), quote=True)



def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, target)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = [round(start, 12)]
    while (ticks[-1] < hi - step * 1e-9 or len(ticks) < 2) and len(ticks) < 50:
        ticks.append(round(start + len(ticks) * step, 12))
    return ticks


def tick_label(value: float) -> str:
    """A tick value without noise: 100 not 100.0, 0.25 not 0.250."""
    text = f"{value:.6g}"
    return "0" if text == "-0" else text


@dataclass
class _Axes:
    x0: float
    x1: float
    y0: float
    y1: float
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def left(self) -> float:
        return MARGIN_LEFT

    @property
    def right(self) -> float:
        return self.width - MARGIN_RIGHT

    @property
    def top(self) -> float:
        return MARGIN_TOP

    @property
    def bottom(self) -> float:
        return self.height - MARGIN_BOTTOM

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)


def _open(kind: str, title: str, extra: Mapping[str, Any] | None = None,
          width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    attrs = "".join(f' data-{k}="{_a(v)}"' for k, v in (extra or {}).items())
    return [
        f'<svg class="plot" data-plot="{_a(kind)}"{attrs} width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_a(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="bg" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text class="plot-title" x="{MARGIN_LEFT}" y="18" font-size="13" '
        f'font-weight="600" fill="#111827">{escape(title)}</text>',
    ]


def _empty(kind: str, title: str, reason: str, extra: Mapping[str, Any] | None = None) -> str:
    parts = _open(kind, title, {**(extra or {}), "empty": "true"})
    parts.append(
        f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" font-size="12" '
        f'fill="#6b7280">{escape(reason)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _axes_marks(ax: _Axes, xticks: Sequence[float], yticks: Sequence[float],
                xlabel: str, ylabel: str, xtick_labels: Sequence[str] | None = None) -> list[str]:
    out: list[str] = ['<g class="axes" font-size="10" fill="#374151">']
    for t in yticks:
        y = ax.y(t)
        out.append(f'<line x1="{ax.left:.1f}" y1="{y:.1f}" x2="{ax.right:.1f}" y2="{y:.1f}" '
                   'stroke="#e5e7eb" stroke-width="1"/>')
        label = tick_label(t)
        out.append(f'<text x="{ax.left - 6:.1f}" y="{y + 3:.1f}" text-anchor="end">'
                   f"{escape(label)}</text>")
    for i, t in enumerate(xticks):
        x = ax.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{ax.bottom:.1f}" x2="{x:.1f}" '
                   f'y2="{ax.bottom + 4:.1f}" stroke="#6b7280"/>')
        label = xtick_labels[i] if xtick_labels is not None else tick_label(t)
        out.append(f'<text x="{x:.1f}" y="{ax.bottom + 15:.1f}" text-anchor="middle">'
                   f"{escape(label)}</text>")
    out.append(f'<line x1="{ax.left:.1f}" y1="{ax.bottom:.1f}" x2="{ax.right:.1f}" '
               f'y2="{ax.bottom:.1f}" stroke="#6b7280"/>')
    out.append(f'<line x1="{ax.left:.1f}" y1="{ax.top:.1f}" x2="{ax.left:.1f}" '
               f'y2="{ax.bottom:.1f}" stroke="#6b7280"/>')
    out.append(f'<text x="{(ax.left + ax.right) / 2:.1f}" y="{ax.height - 8:.1f}" '
               f'text-anchor="middle" font-size="11">{escape(xlabel)}</text>')
    mid = (ax.top + ax.bottom) / 2
    out.append(f'<text x="14" y="{mid:.1f}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 14 {mid:.1f})">{escape(ylabel)}</text>')
    out.append("</g>")
    return out


def _legend(ax: _Axes, labels: Sequence[tuple[str, str]], corner: str) -> list[str]:
    """A legend inside the plot, in the corner ("bottom-right", "top-left" or "top-right")
    left empty."""
    if not labels:
        return []
    out = ['<g class="legend" font-size="10">']
    for i, (color, label) in enumerate(labels):
        if corner == "top-left":
            y = ax.top + 8 + i * 13
            out.append(f'<rect x="{ax.left + 8:.1f}" y="{y - 7:.1f}" width="9" height="9" '
                       f'fill="{color}"/>')
            out.append(f'<text x="{ax.left + 21:.1f}" y="{y + 1:.1f}" fill="#374151">'
                       f"{escape(label)}</text>")
        else:
            y = (ax.top + 8 + i * 13 if corner == "top-right"
                 else ax.bottom - 8 - (len(labels) - 1 - i) * 13)
            out.append(f'<rect x="{ax.right - 12:.1f}" y="{y - 7:.1f}" width="9" height="9" '
                       f'fill="{color}"/>')
            out.append(f'<text x="{ax.right - 16:.1f}" y="{y + 1:.1f}" text-anchor="end" '
                       f'fill="#374151">{escape(label)}</text>')
    out.append("</g>")
    return out


@dataclass(frozen=True)
class Counted:
    """Sorted values, each with how many times it occurs (a chunk of k tokens gives k equal
    inter-token latencies): the empirical CDF and percentiles of the list it stands for,
    without making that list (its length is a count read from a file, not data present)."""

    values: list[float]
    ends: list[int]  # the list's positions ends[j-1] .. ends[j]-1 hold values[j]

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, int]]) -> Counted:
        """From (value, count) pairs; values that are not finite, and counts below 1, are
        left out."""
        kept = [(v, k) for v, k in pairs if math.isfinite(v) and k >= 1]
        kept.sort(key=operator.itemgetter(0))
        return cls([v for v, _ in kept], list(itertools.accumulate(k for _, k in kept)))

    @classmethod
    def each(cls, values: Iterable[float]) -> Counted:
        """Every value once."""
        kept = sorted(v for v in values if math.isfinite(v))
        return cls(kept, list(range(1, len(kept) + 1)))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def at(self, i: int) -> float:
        """The value at position i of the sorted list."""
        return self.values[bisect.bisect_right(self.ends, i)]


def _downsample_sorted(values: Counted, n: int = MAX_POINTS) -> list[tuple[float, float]]:
    """(value, cumulative fraction) points of the empirical CDF, at most about n of them."""
    count = len(values)
    if count <= n:
        return [(values.at(i), (i + 1) / count) for i in range(count)]
    out: list[tuple[float, float]] = []
    for k in range(n):
        i = round(k * (count - 1) / (n - 1))
        out.append((values.at(i), (i + 1) / count))
    return out


def _percentile_sorted(values: Counted, q: float) -> float:
    pos = (len(values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values.at(lo) + (values.at(hi) - values.at(lo)) * (pos - lo)


def cdf_svg(series: Sequence[tuple[str, Sequence[float] | Counted]], title: str, xlabel: str,
            metric: str = "") -> str:
    """Empirical CDFs, one line per (label, values); p50 and p95 marked for one series.
    Values: a list, or a ``Counted`` (each value with how many times it occurs)."""
    data = [(label, values if isinstance(values, Counted) else Counted.each(values))
            for label, values in series]
    data = [(label, values) for label, values in data if len(values)]
    kind = "cdf"
    if not data:
        return _empty(kind, title, "no samples", {"metric": metric})
    lo = min(values.values[0] for _, values in data)
    hi = max(values.values[-1] for _, values in data)
    xticks = nice_ticks(lo, hi)
    ax = _Axes(xticks[0], xticks[-1], 0.0, 1.0)
    total = sum(len(values) for _, values in data)
    parts = _open(kind, title, {"metric": metric, "count": total})
    parts += _axes_marks(ax, xticks, [0, 0.25, 0.5, 0.75, 1.0], xlabel, "fraction ≤ x")
    legend: list[tuple[str, str]] = []
    for i, (label, values) in enumerate(data):
        color = PALETTE[i % len(PALETTE)]
        pts = _downsample_sorted(values)
        d = [f"M{ax.x(pts[0][0]):.1f},{ax.y(0):.1f}"]
        prev_y = 0.0
        for v, frac in pts:
            d.append(f"L{ax.x(v):.1f},{ax.y(prev_y):.1f}L{ax.x(v):.1f},{ax.y(frac):.1f}")
            prev_y = frac
        parts.append(
            f'<path class="series" data-label="{_a(label)}" data-n="{len(values)}" '
            f'data-p50="{_percentile_sorted(values, 50):.6g}" '
            f'data-p95="{_percentile_sorted(values, 95):.6g}" d="{"".join(d)}" fill="none" '
            f'stroke="{color}" stroke-width="1.8"/>'
        )
        legend.append((color, f"{label} (n={len(values)})"))
    if len(data) == 1:
        values = data[0][1]
        for q, dash in ((50, "4 3"), (95, "2 2")):
            v = _percentile_sorted(values, q)
            x = ax.x(v)
            parts.append(
                f'<line class="pmark" data-q="{q}" x1="{x:.1f}" y1="{ax.top:.1f}" x2="{x:.1f}" '
                f'y2="{ax.bottom:.1f}" stroke="#6b7280" stroke-dasharray="{dash}"/>'
            )
            right_half = x > (ax.left + ax.right) / 2
            parts.append(
                f'<text x="{x - 3 if right_half else x + 3:.1f}" '
                f'y="{ax.top + 10 + (12 if q == 95 else 0):.1f}" '
                f'text-anchor="{"end" if right_half else "start"}" '
                f'font-size="10" fill="#374151">p{q} {escape(num(v))}</text>'
            )
    parts += _legend(ax, legend if len(data) > 1 else [], "bottom-right")
    parts.append("</svg>")
    return "\n".join(parts)


def records(samples: Iterable[RequestRecord | Mapping[str, Any]]) -> list[RequestRecord]:
    """RequestRecords from records or their dicts (as stored in results JSON)."""
    return [s if isinstance(s, RequestRecord) else RequestRecord.from_dict(s) for s in samples]


def ttft_ms(samples: Sequence[RequestRecord]) -> list[float]:
    """The measured successful requests' TTFTs (ms), as the summary has them."""
    return latency_series(samples, ("ttft",))["ttft"]


def itl_ms(samples: Sequence[RequestRecord]) -> Counted:
    """The measured successful requests' inter-token latencies (ms), per token (counted: a
    chunk's tokens are a number from the file, so they are not listed one by one)."""
    return Counted.of(itl_counted(samples))


def tokens_over_time_svg(runs: Sequence[tuple[str, Sequence[RequestRecord]]],
                         title: str = "Output tokens over time") -> str:
    """Cumulative output tokens against seconds since the first measured send, per run."""
    kind = "tokens"
    lines: list[tuple[str, list[tuple[float, float]], float]] = []
    for label, samples in runs:
        measured = [r for r in samples if not r.warmup and r.ok]
        if not measured:
            continue
        start = min(r.send_ns for r in measured)
        events = sorted((t, k) for r in measured
                        for t, k in zip(r.chunk_ns, r.chunk_tokens, strict=False))
        if not events:
            continue
        pts: list[tuple[float, float]] = [(0.0, 0.0)]
        total = 0
        for t, k in events:
            total += k
            pts.append(((t - start) / NS_PER_S, float(total)))
        if len(pts) > MAX_POINTS:
            step = len(pts) / MAX_POINTS
            pts = [pts[int(i * step)] for i in range(MAX_POINTS)] + [pts[-1]]
        window = measured_window_ns(measured)  # as the summary's output_tps has it
        span = (window[1] - window[0]) / NS_PER_S if window else pts[-1][0]
        rate = total / span if span > 0 else 0.0
        lines.append((label, pts, rate))
    if not lines:
        return _empty(kind, title, "no tokens were generated")
    xmax = max(p[-1][0] for _, p, _ in lines)
    ymax = max(p[-1][1] for _, p, _ in lines)
    xticks = nice_ticks(0.0, xmax or 1.0)
    yticks = nice_ticks(0.0, ymax or 1.0)
    ax = _Axes(xticks[0], xticks[-1], yticks[0], yticks[-1])
    parts = _open(kind, title, {"tokens": int(max(p[-1][1] for _, p, _ in lines))})
    parts += _axes_marks(ax, xticks, yticks, "seconds since the first measured request",
                         "output tokens")
    legend: list[tuple[str, str]] = []
    for i, (label, pts, rate) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        d = "".join(f"{'M' if j == 0 else 'L'}{ax.x(x):.1f},{ax.y(y):.1f}"
                    for j, (x, y) in enumerate(pts))
        parts.append(f'<path class="series" data-label="{_a(label)}" '
                     f'data-total="{int(pts[-1][1])}" data-rate="{rate:.6g}" d="{d}" '
                     f'fill="none" stroke="{color}" stroke-width="1.8"/>')
        legend.append((color, f"{label}: {num(rate)} tok/s" if label
                       else f"{num(rate)} tok/s"))
    parts += _legend(ax, legend, "top-left")
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass(frozen=True)
class TrendPoint:
    """One commit's value of a metric (median over its runs) and how to mark it."""

    label: str  # short commit, or "this run"
    value: float
    low: float | None = None  # range over the commit's runs
    high: float | None = None
    mark: str = ""  # "" | "regression" (the gate's verdict) | "jump" (step vs previous)
    note: str = ""  # tooltip text
    current: bool = False


def trend_svg(metric: str, points: Sequence[TrendPoint]) -> str:
    """A metric over commits, oldest first; regressions in red, the current run outlined."""
    better = "higher" if higher_is_better(metric) else "lower"
    title = f"{metric} over commits ({better} is better)"
    kind = "trend"
    pts = [p for p in points if math.isfinite(p.value)]
    if not pts:
        return _empty(kind, title, "no history for this metric", {"metric": metric})
    values = [p.value for p in pts]
    values += [v for p in pts for v in (p.low, p.high) if v is not None]
    yticks = nice_ticks(min(values), max(values))
    n = len(pts)
    ax = _Axes(-0.5, n - 0.5, yticks[0], yticks[-1])
    every = max(1, math.ceil(n / 7))  # a 7-character commit label needs about 60 px
    shown = [i for i in range(n) if (i % every == 0 and n - 1 - i >= every) or i == n - 1]
    parts = _open(kind, title, {"metric": metric, "points": n,
                                "regressions": sum(1 for p in pts if p.mark == "regression")})
    parts += _axes_marks(ax, shown, yticks, "commit (oldest → newest)", metric,
                         xtick_labels=[pts[i].label for i in shown])
    d = "".join(f"{'M' if i == 0 else 'L'}{ax.x(i):.1f},{ax.y(p.value):.1f}"
                for i, p in enumerate(pts))
    parts.append(f'<path class="series" d="{d}" fill="none" stroke="{PALETTE[0]}" '
                 'stroke-width="1.6"/>')
    for i, p in enumerate(pts):
        x, y = ax.x(i), ax.y(p.value)
        if p.low is not None and p.high is not None and p.high > p.low:
            parts.append(f'<line class="range" x1="{x:.1f}" y1="{ax.y(p.low):.1f}" '
                         f'x2="{x:.1f}" y2="{ax.y(p.high):.1f}" stroke="{PALETTE[0]}" '
                         'stroke-opacity="0.5" stroke-width="3"/>')
        classes = ["pt"] + ([p.mark] if p.mark else []) + (["current"] if p.current else [])
        color = {"regression": REGRESSION_COLOR, "jump": JUMP_COLOR}.get(p.mark, PALETTE[0])
        radius = 5.5 if p.mark else 3.5
        stroke = f' stroke="{CURRENT_COLOR}" stroke-width="2"' if p.current else ""
        tip = f"{p.label}: {num(p.value)}" + (f" — {p.note}" if p.note else "")
        parts.append(
            f'<circle class="{" ".join(classes)}" data-commit="{_a(p.label)}" '
            f'data-value="{p.value:.6g}" data-mark="{_a(p.mark)}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{radius}" fill="{color}"{stroke}><title>{escape(tip)}</title></circle>'
        )
        if p.mark == "regression":
            parts.append(f'<text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle" '
                         f'font-size="10" font-weight="700" fill="{REGRESSION_COLOR}">'
                         "regression</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def _xy_svg(kind: str, title: str, xlabel: str, ylabel: str,
            series: Sequence[tuple[str, Sequence[tuple[float, float, bool]]]],
            hline: tuple[float, str] | None = None, ymin: float | None = None,
            integer_x: bool = False) -> str:
    """Lines through (x, y, passed) points, one per (label, points); a point whose rate
    failed is drawn hollow. ``hline``: a dashed level (value, label), e.g. a target.
    ``integer_x``: x is a count (a turn): whole ticks, half a step of room at each end."""
    data = [(label, sorted(p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])))
            for label, pts in series]
    data = [(label, pts) for label, pts in data if pts]
    if not data:
        return _empty(kind, title, "no data")
    xs = [p[0] for _, pts in data for p in pts]
    ys = [p[1] for _, pts in data for p in pts] + ([hline[0]] if hline else [])
    yticks = nice_ticks(min(ys) if ymin is None else ymin, max(ys))
    if integer_x:
        lo, hi = math.floor(min(xs)), math.ceil(max(xs))
        step = max(1, math.ceil((hi - lo) / 10))
        xticks: list[float] = [float(v) for v in range(lo, hi + 1, step)]
        ax = _Axes(lo - 0.5, hi + 0.5, yticks[0], yticks[-1])
    else:
        xticks = nice_ticks(min(xs), max(xs))
        ax = _Axes(xticks[0], xticks[-1], yticks[0], yticks[-1])
    parts = _open(kind, title, {"count": len(xs)})
    parts += _axes_marks(ax, xticks, yticks, xlabel, ylabel)
    if hline is not None:
        y = ax.y(hline[0])
        parts.append(f'<line class="target" data-value="{hline[0]:.6g}" x1="{ax.left:.1f}" '
                     f'y1="{y:.1f}" x2="{ax.right:.1f}" y2="{y:.1f}" stroke="{REGRESSION_COLOR}" '
                     'stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{ax.right - 2:.1f}" y="{y - 3:.1f}" text-anchor="end" '
                     f'font-size="10" fill="{REGRESSION_COLOR}">{escape(hline[1])}</text>')
    legend: list[tuple[str, str]] = []
    for i, (label, pts) in enumerate(data):
        color = PALETTE[i % len(PALETTE)]
        d = "".join(f"{'M' if k == 0 else 'L'}{ax.x(x):.1f},{ax.y(y):.1f}"
                    for k, (x, y, _) in enumerate(pts))
        parts.append(f'<path class="series" data-label="{_a(label)}" d="{d}" fill="none" '
                     f'stroke="{color}" stroke-width="1.8"/>')
        for x, y, ok in pts:
            parts.append(f'<circle class="point" data-x="{x:.6g}" data-y="{y:.6g}" '
                         f'data-passed="{str(ok).lower()}" cx="{ax.x(x):.1f}" '
                         f'cy="{ax.y(y):.1f}" r="3.5" stroke="{color}" stroke-width="1.5" '
                         f'fill="{color if ok else "#ffffff"}"/>')
        legend.append((color, label))
    parts += _legend(ax, legend if len(data) > 1 else [], "top-left")
    parts.append("</svg>")
    return "\n".join(parts)


def capacity_svgs(capacity: Mapping[str, Any]) -> list[str]:
    """A capacity search's sweep (run/capacity.py ``CapacityResult.to_dict()``): goodput and
    latency against the offered rate, and tokens/s per user against total tokens/s (the
    Pareto view). Hollow points: rates that failed the SLO or saturated."""
    points = [p for p in capacity.get("points") or [] if isinstance(p, Mapping)]

    def xy(x: str, y: str, lat: bool = False) -> list[tuple[float, float, bool]]:
        out = []
        for p in points:
            xv = p.get(x)
            yv = (p.get("latency_ms") or {}).get(y) if lat else p.get(y)
            if isinstance(xv, int | float) and isinstance(yv, int | float):
                out.append((float(xv), float(yv), bool(p.get("passed"))))
        return out

    target = float(capacity.get("goodput_target") or 0.0)
    goodput = _xy_svg("capacity-goodput", "Goodput vs offered rate", "offered rate (req/s)",
                      "goodput", [("goodput", xy("rate_rps", "goodput"))],
                      hline=(target, f"target {target:g}"), ymin=0.0)
    latency = _xy_svg("capacity-latency", "Latency vs offered rate", "offered rate (req/s)",
                      "ms", [(key.replace("_ms", ""), xy("rate_rps", key, lat=True))
                             for key in ("ttft_p95_ms", "tpot_p95_ms", "e2e_p95_ms")],
                      ymin=0.0)
    pareto = _xy_svg("capacity-pareto", "Tokens/s per user vs total tokens/s",
                     "total output tokens/s", "tokens/s per user",
                     [("rates tried", xy("total_tps", "tps_per_user"))], ymin=0.0)
    return [goodput, latency, pareto]


def turns_svg(runs: Sequence[tuple[str, Sequence[tuple[int, float | None, float | None]]]]
              ) -> str:
    """TTFT by turn of multi-turn runs: (run label, [(turn, p50 ms, p95 ms), ...]) each. One
    run: its p50 and p95 lines; several: each run's p50. A turn without a value is left out."""
    series: list[tuple[str, list[tuple[float, float, bool]]]] = []
    for label, rows in runs:
        stats = (("p50", 1),) if len(runs) > 1 else (("p50", 1), ("p95", 2))
        for stat, i in stats:
            pts = [(float(row[0]), float(v), True) for row in rows
                   if isinstance(v := row[i], int | float)]
            series.append((f"{label} {stat}".strip(), pts))
    return _xy_svg("turns", "TTFT by turn", "turn", "TTFT (ms)", series, ymin=0.0,
                   integer_x=True)


# Length distributions (issue 24): histograms of each request's realized lengths.
LENGTH_BINS = 24


def realized_lengths(samples: Sequence[RequestRecord], kind: str) -> list[int]:
    """The measured requests' realized lengths: "input" (prompt tokens, where known) or
    "output" (generated tokens, of the successful ones)."""
    if kind == "input":
        return [r.prompt_tokens for r in samples if not r.warmup and r.prompt_tokens > 0]
    return [r.n_output for r in samples if not r.warmup and r.ok]


def lengths_svg(runs: Sequence[tuple[str, Sequence[int]]], kind: str) -> str:
    """A histogram of token lengths (``kind``: "input" or "output"), one bar series per
    (run label, lengths); whole-number bins of equal width. Each bar carries its bin and
    count (data-lo, data-hi: lo <= length < hi) so that the page can be read back."""
    title = f"{kind.capitalize()} lengths (tokens per request)"
    data = [(label, sorted(values)) for label, values in runs if values]
    extra = {"kind": kind}
    if not data:
        return _empty("lengths", title, "no lengths recorded", extra)
    lo = min(v[0] for _, v in data)
    hi = max(v[-1] for _, v in data)
    width = max(1, math.ceil((hi - lo + 1) / LENGTH_BINS))
    edges = list(range(lo, hi + width + 1, width))
    if edges[-1] <= hi:
        edges.append(edges[-1] + width)
    counts = [[bisect.bisect_left(v, edges[i + 1]) - bisect.bisect_left(v, edges[i])
               for i in range(len(edges) - 1)] for _, v in data]
    xticks = nice_ticks(float(edges[0]), float(edges[-1]))
    yticks = nice_ticks(0.0, float(max(max(c) for c in counts)) or 1.0)
    ax = _Axes(xticks[0], xticks[-1], yticks[0], yticks[-1])
    total = sum(len(v) for _, v in data)
    parts = _open("lengths", title, {**extra, "count": total})
    parts += _axes_marks(ax, xticks, yticks, f"{kind} tokens", "requests")
    legend: list[tuple[str, str]] = []
    for i, ((label, values), row) in enumerate(zip(data, counts, strict=True)):
        color = PALETTE[i % len(PALETTE)]
        mean = sum(values) / len(values)
        parts.append(f'<g class="series" data-label="{_a(label)}" data-n="{len(values)}" '
                     f'data-mean="{mean:.6g}" data-min="{values[0]}" data-max="{values[-1]}" '
                     f'fill="{color}" fill-opacity="{0.85 if len(data) == 1 else 0.45}">')
        for j, n in enumerate(row):
            if not n:
                continue
            x0, x1 = ax.x(edges[j]), ax.x(edges[j + 1])
            y = ax.y(n)
            parts.append(f'<rect class="bar" data-lo="{edges[j]}" data-hi="{edges[j + 1]}" '
                         f'data-n="{n}" x="{x0:.1f}" y="{y:.1f}" '
                         f'width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                         f'height="{ax.bottom - y:.1f}"/>')
        parts.append("</g>")
        legend.append((color, f"{label + ': ' if label else ''}mean {num(mean)} "
                              f"(n={len(values)})"))
    # The legend in the top corner away from the tallest bar (lengths are mostly skewed right).
    tallest = max(range(len(edges) - 1), key=lambda j: max(row[j] for row in counts))
    parts += _legend(ax, legend, "top-right" if tallest < (len(edges) - 1) / 2 else "top-left")
    parts.append("</svg>")
    return "\n".join(parts)
