"""MDE predicted vs measured: does the ``mde_pct`` every verdict reports match the change its
decision actually detects 80% of the time?

Synthetic runs at a known noise go through the plugin's real decision functions: the stored
gate (``stats.compare_stored``: repeats on each side, or a history of earlier baselines) and
the paired gate (``paired.compare_paired_set``: the exact sign-flip test). For each setting the
script injects slowdowns on a grid, measures the detection rate at each (seeded trials),
interpolates the slowdown detected 80% of the time, and compares it with the MDE predicted
from the true noise by ``power.mde_pct`` (and with the mean ``mde_pct`` the verdicts
reported from the noise they estimated).

Then the measured calibrations in benchmarks/README.md (noise and detection rates of the
paired gate and ``llmperf compare``) are checked against the power the same formula predicts
for their noise and injected effect.

    python benchmarks/power_calibration.py [--trials 400] [--seed 1]

Runs in about a minute on the 2-core machine; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from pytest_llmperf.verdict import paired, power, stats

METRIC = "tpot_p50_ms"  # a latency: a slowdown is a rise


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "repeats", "history" or "paired"
    cv: float  # sd of the log of one run (repeats, history) or of a pair's log-ratio
    n: int  # repeats per side, or pairs
    alpha: float
    tolerance_pct: float
    job_cv: float = 0.0  # history: the job-to-job sd of a commit's mean (log)
    history: int = 5

    def se(self) -> tuple[float, float]:
        """The true standard error of the decision's log-difference and its df."""
        if self.kind == "paired":
            return self.cv / math.sqrt(self.n), self.n - 1.0
        if self.kind == "history":
            var = 2 * self.job_cv**2 + 2 * self.cv**2 / self.n
            return math.sqrt(var), self.history - 1.0
        return self.cv * math.sqrt(2.0 / self.n), 2.0 * (self.n - 1)

    def predicted(self) -> float:
        se, df = self.se()
        return power.mde_pct(METRIC, se, df, self.alpha)


def decide(s: Setting, rng: np.random.Generator, slow_pct: float) -> tuple[bool, float | None]:
    """One trial: (flagged, the mde_pct the verdict reported)."""
    shift = math.log1p(slow_pct / 100.0)
    if s.kind == "paired":
        a = np.exp(rng.normal(0.0, 0.05, s.n)) * 100.0
        b = a * np.exp(shift + rng.normal(0.0, s.cv, s.n))
        v = paired.compare_paired_set({METRIC: list(a)}, {METRIC: list(b)}, gated=[METRIC],
                                      alpha=s.alpha, tolerance_pct=s.tolerance_pct)[0]
        return v.verdict == "regression", v.mde_pct
    hist: list[list[float | None]] = []
    job = s.job_cv if s.kind == "history" else 0.0
    if s.kind == "history":
        for _ in range(s.history):
            hist.append(list(np.exp(rng.normal(0.0, job) + rng.normal(0.0, s.cv, s.n))))
    base = np.exp(rng.normal(0.0, job) + rng.normal(0.0, s.cv, s.n)) * 100.0
    cur = np.exp(shift + rng.normal(0.0, job) + rng.normal(0.0, s.cv, s.n)) * 100.0
    v = stats.compare_stored(METRIC, list(base), list(cur), hist, alpha=s.alpha,
                             tolerance_pct=s.tolerance_pct)
    return v.verdict == "regression", v.mde_pct


def rate(s: Setting, slow_pct: float, trials: int, seed: int) -> tuple[float, list[float]]:
    rng = np.random.default_rng(seed)
    hits, mdes = 0, []
    for _ in range(trials):
        flagged, mde = decide(s, rng, slow_pct)
        hits += flagged
        if mde is not None:
            mdes.append(mde)
    return hits / trials, mdes


def point80(s: Setting, trials: int, seed: int) -> tuple[float, float]:
    """(the slowdown detected 80% of the time, the mean reported mde_pct), by bisection on
    the detection rate (monotone in the slowdown) and a final linear interpolation."""
    guess = s.predicted()
    lo, hi = 0.0, 3.0 * guess
    reported: list[float] = []
    r_lo, r_hi = 0.0, rate(s, hi, trials, seed)[0]
    for step in range(9):
        mid = (lo + hi) / 2.0
        r, mdes = rate(s, mid, trials, seed + step + 1)
        reported += mdes
        if r >= 0.8:
            hi, r_hi = mid, r
        else:
            lo, r_lo = mid, r
    at = lo + (0.8 - r_lo) / max(r_hi - r_lo, 1e-9) * (hi - lo)
    return at, float(np.mean(reported)) if reported else math.nan


SETTINGS = [
    # The stored gate, one gated metric of three (alpha 0.01 split by Bonferroni).
    Setting("stored, repeats=2, CV 5%", "repeats", 0.05, 2, 0.01 / 3, 0.0),
    Setting("stored, repeats=3, CV 10%", "repeats", 0.10, 3, 0.01 / 3, 0.0),
    Setting("stored, repeats=5, CV 10%", "repeats", 0.10, 5, 0.01 / 3, 0.0),
    Setting("stored, repeats=10, CV 10%", "repeats", 0.10, 10, 0.01 / 3, 0.0),
    Setting("stored, repeats=3, CV 10%, tolerance 5% (blind)", "repeats", 0.10, 3, 0.01 / 3,
            5.0),
    Setting("stored, history of 5, repeats=2, CV 5%, job CV 5%", "history", 0.05, 2,
            0.01 / 3, 0.0, job_cv=0.05),
    # The paired gate (llmperf compare, bisect, llmperf_bench.compare's last look).
    Setting("paired, 10 pairs, pair sd 5%", "paired", 0.05, 10, 0.01, 0.0),
    Setting("paired, 10 pairs, pair sd 21% (compare's measured)", "paired", 0.21, 10, 0.01,
            0.0),
    Setting("paired, 20 pairs, pair sd 10%", "paired", 0.10, 20, 0.01, 0.0),
    Setting("paired, 10 pairs, pair sd 10%, tolerance 5% (blind)", "paired", 0.10, 10, 0.01,
            5.0),
]


def simulated(trials: int, seed: int) -> None:
    print("| setting | predicted MDE | measured 80% point | measured / predicted "
          "| mean reported mde_pct |")
    print("|---|---:|---:|---:|---:|")
    for i, s in enumerate(SETTINGS):
        at, reported = point80(s, trials, seed + 100 * i)
        pred = s.predicted()
        print(f"| {s.name} | {pred:.1f}% | {at:.1f}% | {at / pred:.2f} | {reported:.1f}% |")


def predicted_power(effect_pct: float, sd: float, n: int, alpha: float) -> float:
    """P(flag) of a one-sided t-test on n paired log-ratios of sd ``sd`` at a true effect:
    the noncentral t that ``power.mde_log`` inverts."""
    se = sd / math.sqrt(n)
    t_a = power.t_quantile(n - 1.0, 1.0 - alpha)
    return 1.0 - float(special.nctdtr(n - 1.0, math.log1p(effect_pct / 100.0) / se, t_a))


# The README's measured calibrations: (section, setting, pair sd of the log-ratio, pairs,
# alpha, measured effect %, measured detection %). The effect is the gated metric's
# measured shift for the injected slowdown; the paired gate flags on any of three metrics
# jointly, so the metric shown is the best-placed one (largest effect / sd).
README = [
    ("llmperf compare", "10 pairs, alpha 0.01 (default)", 0.212, 10, 0.01, 12.7, 23.9),
    ("llmperf compare", "7 pairs, alpha 0.01", 0.212, 7, 0.01, 12.7, 14.5),
    ("llmperf compare", "10 pairs, alpha 0.05", 0.212, 10, 0.05, 12.7, 57.4),
    ("llmperf compare", "20 pairs, alpha 0.01", 0.212, 20, 0.01, 12.7, 61.8),
    ("gate calibration", "paired by request, 10 pairs, tpot_p50_ms", 0.051, 10, 0.009, 12.4,
     100.0),
    ("gate calibration", "paired by request, 10 pairs, 5% injected, tpot_p50_ms", 0.051, 10,
     0.009, 6.4, 94.2),
    ("gate calibration", "paired by runs, 10 pairs, 10% injected, tpot_p50_ms", 0.084, 10,
     0.009, 12.1, 60.1),
]


def implied_mde(effect_pct: float, detected: float, n: int, alpha: float) -> float | None:
    """The 80% point a measured detection rate implies: the effect scaled by the ratio of
    the noncentralities that give 80% and the measured rate (None at 0% or 100%, which say
    nothing)."""
    if not 0.0 < detected < 1.0:
        return None
    df = n - 1.0
    t_a = power.t_quantile(df, 1.0 - alpha)
    nc80 = float(special.nctdtrinc(df, 1.0 - power.POWER, t_a))
    nc = float(special.nctdtrinc(df, 1.0 - detected, t_a))
    if not nc > 0:
        return None
    return math.expm1(math.log1p(effect_pct / 100.0) * nc80 / nc) * 100.0


def from_readme() -> None:
    print("| calibration | setting | pair sd | measured effect | predicted detection "
          "| measured detection | predicted MDE | MDE implied by the measured rate "
          "| implied / predicted |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for section, name, sd, n, alpha, effect, measured in README:
        mde = power.mde_pct(METRIC, sd / math.sqrt(n), n - 1.0, alpha)
        pred = predicted_power(effect, sd, n, alpha) * 100.0
        implied = implied_mde(effect, measured / 100.0, n, alpha)
        shown = "-" if implied is None else f"{implied:.1f}%"
        ratio = "-" if implied is None else f"{implied / mde:.2f}"
        print(f"| {section} | {name} | {sd * 100:.1f}% | +{effect:.1f}% | {pred:.0f}% "
              f"| {measured:.1f}% | {mde:.1f}% | {shown} | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    simulated(args.trials, args.seed)
    print()
    from_readme()


if __name__ == "__main__":
    main()
