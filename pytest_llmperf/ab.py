"""Paired A/B in one job: the strongest gate, for a config change or two engine builds.

Runs A and B are interleaved on the same machine (pair i runs A then B, pair i+1 runs B then
A, so a slow drift of the machine cancels instead of always hurting the same side). Each run is
one data point; the decision is a one-sample t-test on the paired log-ratios log(B_i / A_i).

Two stages, alpha split across the looks (Bonferroni: alpha/2 at each look, so the chance of
a false alarm over both looks stays below alpha), and at each look split again over the gated
metrics, so alpha bounds the test's false alarms, not each metric's. After the first
``stage1`` pairs the answer is clear when a gated metric has regressed (significant and
beyond the tolerance) or when every gated metric's interval lies within the tolerance;
otherwise ``stage2`` more pairs are run and the decision is made on all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import stats
from .gate import gated_metrics, tolerance_for
from .metrics import RunResult

Summary = Mapping[str, Any]
RunFn = Callable[[], RunResult | Summary]


@dataclass
class ABVerdict:
    """The answer of a paired comparison of B (candidate) against A (reference)."""

    verdict: str  # "regression", "improvement", "ok" or "inconclusive"
    metrics: list[stats.MetricVerdict]
    pairs: int
    stages: int
    alpha: float
    message: str = ""
    elapsed_s: float = 0.0
    runs_a: list[RunResult] = field(default_factory=list, repr=False)
    runs_b: list[RunResult] = field(default_factory=list, repr=False)
    label_a: str = "A"
    label_b: str = "B"

    @property
    def passed(self) -> bool:
        """False only for a regression of a gated metric."""
        return self.verdict != "regression"

    @property
    def regressions(self) -> list[stats.MetricVerdict]:
        return [m for m in self.metrics if m.gated and m.verdict == "regression"]

    def metric(self, name: str) -> stats.MetricVerdict:
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(name)

    def failure_message(self) -> str:
        if self.passed:
            return ""
        lines = [f"llmperf A/B: {self.label_b} regressed against {self.label_a} "
                 f"({self.pairs} interleaved pairs, alpha {self.alpha:g}):"]
        lines += ["  " + m.describe() for m in self.regressions]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "pairs": self.pairs,
            "stages": self.stages,
            "alpha": self.alpha,
            "message": self.message,
            "elapsed_s": self.elapsed_s,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "metrics": [m.to_dict() for m in self.metrics],
        }


def _summary(run: RunResult | Summary) -> Summary:
    return run.summary if isinstance(run, RunResult) else run


def decide(
    a: Sequence[Summary],
    b: Sequence[Summary],
    thresholds: Mapping[str, Any],
    alpha_look: float,
) -> list[stats.MetricVerdict]:
    """Paired verdicts for every gated and watched metric at one look (alpha split evenly
    over the gated metrics, as in the stored gate)."""
    gated, watched = gated_metrics(thresholds)
    alpha_look = stats.per_metric_alpha(alpha_look, len(gated))
    out = []
    for metric, is_gated in [(m, True) for m in gated] + [(m, False) for m in watched]:
        av = [_value(s, metric) for s in a]
        bv = [_value(s, metric) for s in b]
        if all(v is None for v in av + bv):
            continue
        out.append(stats.compare_paired(metric, av, bv, alpha=alpha_look,
                                        tolerance_pct=tolerance_for(thresholds, metric),
                                        gated=is_gated))
    return out


def _value(summary: Summary, metric: str) -> float | None:
    v = summary.get(metric)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def overall(metrics: Sequence[stats.MetricVerdict]) -> str:
    gated = [m for m in metrics if m.gated]
    if any(m.verdict == "regression" for m in gated):
        return "regression"
    if any(m.verdict == "inconclusive" for m in gated):
        return "inconclusive"
    if any(m.verdict == "improvement" for m in gated):
        return "improvement"
    return "ok"


def is_clear(metrics: Sequence[stats.MetricVerdict], alpha_look: float) -> bool:
    """Nothing more to learn: a gated regression, or every gated metric within tolerance."""
    gated = [m for m in metrics if m.gated]
    if any(m.verdict == "regression" for m in gated):
        return True
    return all(m.verdict == "improvement" or stats.clearly_within_tolerance(m, alpha_look)
               for m in gated)


def run_ab(
    run_a: RunFn,
    run_b: RunFn,
    thresholds: Mapping[str, Any] | None = None,
    *,
    alpha: float = stats.DEFAULT_ALPHA,
    stage1: int = 5,
    stage2: int = 5,
    label_a: str = "A",
    label_b: str = "B",
    on_pair: Callable[[int, int], None] | None = None,
) -> ABVerdict:
    """Interleave A and B, adding pairs only while the answer is unclear; return the verdict.

    run_a / run_b: one run each call (a RunResult, or a bare summary mapping).
    thresholds: the marker's keywords (``gate``, ``max_regression_pct``).
    """
    if stage1 < 2:
        raise ValueError("stage1 must be >= 2 pairs (one pair cannot show the noise)")
    if stage2 < 0:
        raise ValueError("stage2 must be >= 0")
    thresholds = thresholds or {}
    gated_metrics(thresholds)  # fail fast on unknown metric names
    looks = 2 if stage2 > 0 else 1
    alpha_look = alpha / looks
    t0 = time.perf_counter()
    runs_a: list[RunResult | Summary] = []
    runs_b: list[RunResult | Summary] = []
    total = stage1 + stage2

    def add_pairs(n: int) -> None:
        for _ in range(n):
            i = len(runs_a)
            if i % 2 == 0:
                ra = run_a()
                rb = run_b()
            else:
                rb = run_b()
                ra = run_a()
            runs_a.append(ra)
            runs_b.append(rb)
            if on_pair is not None:
                on_pair(i + 1, total)

    add_pairs(stage1)
    metrics = decide([_summary(r) for r in runs_a], [_summary(r) for r in runs_b],
                     thresholds, alpha_look)
    stages = 1
    if stage2 > 0 and not is_clear(metrics, alpha_look):
        add_pairs(stage2)
        stages = 2
        metrics = decide([_summary(r) for r in runs_a], [_summary(r) for r in runs_b],
                         thresholds, alpha_look)
    verdict = overall(metrics)
    n = len(runs_a)
    how = "clear after the first stage" if stages == 1 and looks == 2 else f"{stages} stage(s)"
    message = (f"{label_b} vs {label_a}: {verdict} after {n} interleaved pairs ({how}; "
               f"alpha {alpha:g} split over {looks} look(s))")
    return ABVerdict(
        verdict=verdict, metrics=metrics, pairs=n, stages=stages, alpha=alpha, message=message,
        elapsed_s=time.perf_counter() - t0,
        runs_a=[r for r in runs_a if isinstance(r, RunResult)],
        runs_b=[r for r in runs_b if isinstance(r, RunResult)],
        label_a=label_a, label_b=label_b,
    )
