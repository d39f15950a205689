"""Paired A/B in one job: the strongest gate, for a config change or two engine builds.

Runs A and B are interleaved on the same machine (pair i runs A then B, pair i+1 runs B then
A, so a slow drift of the machine cancels instead of always hurting the same side). Each run is
one data point; the decision is an exact sign-flip permutation test on the paired log-ratios
log(B_i / A_i), joint over the gated metrics (``paired.compare_paired_set``), so the false-alarm
rate holds whatever the shape of the run-to-run noise.

Two looks. After the first ``stage1`` pairs the answer is clear when a gated metric has
regressed (significant and beyond the tolerance) or when every gated metric's interval lies
within the tolerance; otherwise ``stage2`` more pairs are run and the decision is made on all
of them. Alpha is spent across the looks (``LOOK1_SHARE`` of it at the first, the rest at the
second: the chance of a false alarm over both looks stays below alpha). Stopping early because
everything is within tolerance (judged on one-sided 90% bounds, ``FUTILITY_ALPHA``) spends
nothing. The permutation test's smallest p-value is
2**-pairs, so a first look of 5 pairs can only clear a change, never flag one: a regression
is called on the full 10 pairs, which is what keeps this gate from crying wolf on 5 noisy runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..limits import PAIRS
from ..run.metrics import RunResult
from . import paired, stats
from .attribution import attribution, attribution_lines
from .failure import Failure
from .gate import embeddings_gated, gated_metrics
from .outputs import compare as compare_outputs
from .thresholds import Thresholds

Summary = Mapping[str, Any]
LOOK1_SHARE = 0.1  # of alpha, spent at the first look (Haybittle-Peto style: the last look
# keeps nearly all of it)
FUTILITY_ALPHA = 0.1  # stop after the first stage when every gated metric's one-sided 90%
# bound is within its tolerance. Stopping to pass spends no alpha: it can only lower the
# false-alarm rate; it costs a little power on changes just above the tolerance.
RunFn = Callable[[], RunResult | Summary]
PairFn = Callable[[int], tuple[RunResult | Summary, RunResult | Summary]]


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
    interleave: str = "requests"  # how a pair's runs were made: "requests" or "runs"
    # Why, in words ("2 core(s) cannot run A's 2 and B's 2 threads side by side"); "" unknown.
    interleave_reason: str = ""
    # Which of the test's runs is A's last run, when it was kept as one (--llmperf-ab): the
    # reports then take A's samples from there instead of a second copy here.
    a_run: int | None = None

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

    @property
    def outputs(self) -> dict[str, Any] | None:
        """B's answers against A's, request by request (issue 25, verdict/outputs.py); None
        when neither side kept its runs."""
        if not self.runs_a or not self.runs_b:
            return None
        return compare_outputs(
            [{"samples": [s.to_dict() for s in self.runs_a[0].samples]}],
            [{"samples": [s.to_dict() for s in r.samples]} for r in self.runs_b]).to_dict()

    def _head(self) -> str:
        return (f"llmperf A/B: {self.label_b} regressed against {self.label_a} "
                f"({self.pairs} interleaved pairs, alpha {self.alpha:g})")

    def failure_message(self) -> str:
        if self.passed:
            return ""
        lines = [self._head() + ":"]
        lines += ["  " + m.describe() for m in self.regressions]
        lines += attribution_lines(self.attribution())
        return "\n".join(lines)

    def attribution(self) -> dict[str, Any] | None:
        """What moved with B's regression or warning (verdict/attribution.py: the phases, the
        server's signals, the engine settings that differ between A and B); None when
        nothing regressed or there are no runs."""
        if not self.runs_a or not self.runs_b or not any(
                m.verdict in ("regression", "warn") for m in self.metrics):
            return None
        return attribution([r.to_dict(with_samples=False) for r in self.runs_a],
                           [r.to_dict(with_samples=False) for r in self.runs_b])

    def failure(self) -> Failure | None:
        """The test's failure when B regressed (None otherwise); the headline clause is the
        message's first line."""
        if self.passed:
            return None
        return Failure("ab", self._head(), self.failure_message())

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
            "interleave": self.interleave,
            "interleave_reason": self.interleave_reason,
            # What each metric's verdict rests on: its pairs with a usable value on both sides.
            "pairs_per_metric": {m.metric: m.n_current for m in self.metrics},
            "metrics": [m.to_dict() for m in self.metrics],
            **({"attribution": block} if (block := self.attribution()) else {}),
            "outputs": self.outputs,  # issue 25
            **self._last_pair(),
        }

    def _last_pair(self) -> dict[str, Any]:
        """The last pair's per-request samples, for the reports to plot B beside A:
        ``samples_b``, and ``samples_a`` unless A's run is the test's run ``a_run``. One run
        per side, not all of them: the document grows by about one run's samples."""
        out: dict[str, Any] = {}
        if self.a_run is not None:
            out["a_run"] = self.a_run
        elif self.runs_a:
            out["samples_a"] = [r.to_dict() for r in self.runs_a[-1].samples]
        if self.runs_b:
            out["samples_b"] = [r.to_dict() for r in self.runs_b[-1].samples]
        return out


def _summary(run: RunResult | Summary) -> Summary:
    return run.summary if isinstance(run, RunResult) else run


def decide(
    a: Sequence[Summary],
    b: Sequence[Summary],
    thresholds: Thresholds | Mapping[str, Any],
    alpha_look: float,
    interval_alpha: float | None = None,
    clear_alpha: float | None = None,
) -> list[stats.MetricVerdict]:
    """Paired verdicts for every gated and watched metric at one look: the gated metrics
    jointly at ``alpha_look``, each watched metric alone (warn only). Each metric rests on
    the pairs where both runs have it (a run where it is undefined, such as TPOT when every
    answer came in one read, leaves that pair out for that metric only); too few of them is
    "inconclusive", never "ok" (``paired.compare_paired_set``, which ``clear_alpha`` goes
    to)."""
    parsed = Thresholds.of(thresholds)
    gated, watched = embeddings_gated(parsed, *gated_metrics(parsed), [*a, *b])
    present = [m for m in gated + watched
               if any(_value(s, m) is not None for s in [*a, *b])]
    va = {m: [_value(s, m) for s in a] for m in present}
    vb = {m: [_value(s, m) for s in b] for m in present}
    return paired.compare_paired_set(
        va, vb, gated=[m for m in gated if m in present],
        watched=[m for m in watched if m in present], alpha=alpha_look,
        tolerance_pct={m: parsed.tolerance_for(m) for m in present},
        interval_alpha=interval_alpha, clear_alpha=clear_alpha)


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


def is_clear(metrics: Sequence[stats.MetricVerdict]) -> bool:
    """Nothing more to learn: a gated regression, or every gated metric within tolerance on
    every pair made (a metric missing in some pairs, undefined in some runs, waits for more)."""
    gated = [m for m in metrics if m.gated]
    if any(m.verdict == "regression" for m in gated):
        return True
    return all(m.verdict != "inconclusive"
               and (m.pairs_run is None or m.n_current == m.pairs_run)
               and (m.verdict == "improvement" or paired.clearly_within_tolerance(m))
               for m in gated)


def pairs_line(metrics: Sequence[stats.MetricVerdict], pairs: int) -> str:
    """How many pairs each gated metric rests on: "pairs per metric: ttft_p50_ms 10,
    tpot_p50_ms 4 of 10, output_tps 10" ("" without gated metrics)."""
    parts = [f"{m.metric} {m.n_current}" + ("" if m.n_current == pairs else f" of {pairs}")
             for m in metrics if m.gated]
    return f"pairs per metric: {', '.join(parts)}" if parts else ""


def verdict_words(verdict: str, metrics: Sequence[stats.MetricVerdict], pairs: int) -> str:
    """The verdict, and for "inconclusive" why: how many pairs the gated metrics that could
    not be decided had ("inconclusive (4 of 10 pairs usable for tpot_p50_ms)")."""
    if verdict != "inconclusive":
        return verdict
    short = [m for m in metrics if m.gated and m.verdict == "inconclusive"]
    if not short:
        return verdict
    usable = "; ".join(f"{m.n_current} of {pairs} pairs usable for {m.metric}" for m in short)
    return f"inconclusive ({usable})"


def run_ab(
    run_a: RunFn,
    run_b: RunFn,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    *,
    alpha: float = stats.DEFAULT_ALPHA,
    stage1: int = 5,
    stage2: int = 5,
    label_a: str = "A",
    label_b: str = "B",
    on_pair: Callable[[int, int], None] | None = None,
    interleave_reason: str = "",
) -> ABVerdict:
    """Interleave whole runs of A and B (A B, B A, ...), adding pairs only while the answer is
    unclear; return the verdict.

    run_a / run_b: one run each call (a RunResult, or a bare summary mapping).
    thresholds: the marker's keywords (``gate``, ``max_regression_pct``).
    interleave_reason: why by runs, for the message (``run_paired``).
    """

    def pair(i: int) -> tuple[RunResult | Summary, RunResult | Summary]:
        if i % 2 == 0:
            ra = run_a()
            return ra, run_b()
        rb = run_b()
        return run_a(), rb

    return run_paired(pair, thresholds, alpha=alpha, stage1=stage1, stage2=stage2,
                      label_a=label_a, label_b=label_b, on_pair=on_pair, interleave="runs",
                      interleave_reason=interleave_reason)


def run_paired(
    pair: PairFn,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    *,
    alpha: float = stats.DEFAULT_ALPHA,
    stage1: int = 5,
    stage2: int = 5,
    label_a: str = "A",
    label_b: str = "B",
    on_pair: Callable[[int, int], None] | None = None,
    interleave: str = "requests",
    interleave_reason: str = "",
) -> ABVerdict:
    """The two-stage paired gate over pairs made by ``pair(i)`` -> (A's run, B's run).

    ``pair`` decides how a pair is made: two whole runs in alternating order (``run_ab``) or
    one run of each engine interleaved request by request (``bench.run_benchmark_interleaved``);
    i counts from 0 so it can alternate which side goes first. ``interleave`` names which,
    and ``interleave_reason`` why (for the message and the reports: "pairs interleaved by
    runs: 2 core(s) cannot run A's 2 and B's 2 threads side by side").
    """
    if stage1 < 2:
        raise ValueError("stage1 must be >= 2 pairs (one pair cannot show the noise)")
    if stage2 < 0:
        raise ValueError("stage2 must be >= 0")
    problem = PAIRS.problem("stage1 + stage2", stage1 + stage2)
    if problem:
        raise ValueError(problem)
    thresholds = thresholds or {}
    gated_metrics(thresholds)  # fail fast on unknown metric names
    looks = 2 if stage2 > 0 else 1
    alpha1 = alpha * LOOK1_SHARE if looks == 2 else alpha
    alpha2 = alpha - alpha1
    t0 = time.perf_counter()
    runs_a: list[RunResult | Summary] = []
    runs_b: list[RunResult | Summary] = []
    total = stage1 + stage2

    def add_pairs(n: int) -> None:
        for _ in range(n):
            i = len(runs_a)
            ra, rb = pair(i)
            runs_a.append(ra)
            runs_b.append(rb)
            if on_pair is not None:
                on_pair(i + 1, total)

    def look(level: float, interval_alpha: float = alpha,
             clear_alpha: float | None = None) -> list[stats.MetricVerdict]:
        # Reported intervals are at the test's alpha whatever share of it a look spends;
        # flagging uses the look's share.
        return decide([_summary(r) for r in runs_a], [_summary(r) for r in runs_b],
                      thresholds, level, interval_alpha=interval_alpha,
                      clear_alpha=clear_alpha)

    add_pairs(stage1)
    # The first of two looks cannot flag on few pairs by design: what it clears, it clears
    # on the futility bounds (as ``is_clear`` below), else more pairs are run.
    metrics = look(alpha1, clear_alpha=FUTILITY_ALPHA if looks == 2 else None)
    stages = 1
    # The same verdicts (same level), with the futility bounds for "clearly within tolerance".
    if stage2 > 0 and not is_clear(look(alpha1, FUTILITY_ALPHA)):
        add_pairs(stage2)
        stages = 2
        metrics = look(alpha2)
    verdict = overall(metrics)
    n = len(runs_a)
    how = "clear after the first stage" if stages == 1 and looks == 2 else f"{stages} stage(s)"
    per_metric = pairs_line(metrics, n)
    message = (f"{label_b} vs {label_a}: {verdict_words(verdict, metrics, n)} after {n} "
               f"interleaved pairs ({how}; alpha {alpha:g} spent over {looks} look(s); pairs "
               f"interleaved by {interleave}"
               + (f": {interleave_reason}" if interleave_reason else "") + ")"
               + (f"; {per_metric}" if per_metric else ""))
    return ABVerdict(
        verdict=verdict, metrics=metrics, pairs=n, stages=stages, alpha=alpha, message=message,
        elapsed_s=time.perf_counter() - t0,
        runs_a=[r for r in runs_a if isinstance(r, RunResult)],
        runs_b=[r for r in runs_b if isinstance(r, RunResult)],
        label_a=label_a, label_b=label_b, interleave=interleave,
        interleave_reason=interleave_reason,
    )
