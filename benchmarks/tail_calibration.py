"""Tails: false alarms and detection of the paired p99 comparison on heavy-tailed requests.

Synthetic runs of N requests with heavy-tailed latencies (lognormal sigma 1; Pareto shape 2.5,
whose variance is finite but whose tail is a power law), a machine drift shared by the two
runs of a pair (sd 3%), 10 pairs, the plugin's paired decision (``paired.compare_paired_set``:
exact sign-flip test, alpha 0.01, tolerance 5%) on each run's p99 estimated two ways:

- ``sample``: the linear-interpolation percentile the summary reports;
- ``harrell-davis``: the Harrell-Davis estimator (a Beta-weighted mean of all order
  statistics), the candidate measured against it (not used: no better here).

A/A (no change) gives the false-alarm rate; every latency scaled by 1.2 or 1.5 gives the
detection rate of a 20% / 50% slower tail. N = 100 is below the rule of ``tails`` for p99
(n (1 - q) >= 5: 500 requests), so a gated p99 there is refused; its row shows why.

    python benchmarks/tail_calibration.py [--trials 300] [--seed 1]

About a minute on the 2-core machine; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import special

from pytest_llmperf.verdict import paired, tails

METRIC = "e2e_p99_ms"
Q = 0.99


def run(rng: np.random.Generator, tail: str, n: int, scale: float) -> np.ndarray:
    if tail == "pareto":
        return (rng.pareto(2.5, n) + 1.0) * 50.0 * scale
    return rng.lognormal(0.0, 1.0, n) * 50.0 * scale


def harrell_davis(x: np.ndarray, q: float) -> float:
    """sum_i w_i x_(i), w_i the Beta((n+1)q, (n+1)(1-q)) probability of ((i-1)/n, i/n]."""
    x = np.sort(x)
    n = x.size
    edges = special.betainc((n + 1) * q, (n + 1) * (1.0 - q), np.arange(n + 1) / n)
    return float(np.dot(np.diff(edges), x))


def estimate(x: np.ndarray, method: str) -> float:
    if method == "harrell-davis":
        return harrell_davis(x, Q)
    return float(np.percentile(x, Q * 100))


def rates(tail: str, n: int, method: str, slower: float, trials: int, seed: int,
          pairs: int = 10, drift_sd: float = 0.03) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        a, b = [], []
        for _ in range(pairs):
            drift = math.exp(rng.normal(0.0, drift_sd))
            a.append(estimate(run(rng, tail, n, drift), method))
            b.append(estimate(run(rng, tail, n, drift * slower), method))
        [v] = paired.compare_paired_set({METRIC: a}, {METRIC: b}, gated=[METRIC],
                                        alpha=0.01, tolerance_pct=5.0)
        hits += v.verdict == "regression"
    return hits / trials


def wilson(p: float, n: int) -> str:
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{max(0.0, centre - half) * 100:.1f}, {min(1.0, centre + half) * 100:.1f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print("| tail | requests per run | p99 estimate | A/A false alarms | 20% slower detected "
          "| 50% slower detected |")
    print("|---|---:|---|---:|---:|---:|")
    for tail in ("lognormal", "pareto"):
        for n in (100, 500, 2000):
            for method in ("sample", "harrell-davis"):
                cells = []
                for k, slower in enumerate((1.0, 1.2, 1.5)):
                    r = rates(tail, n, method, slower, args.trials, args.seed + k)
                    cells.append(f"{r * 100:.1f}% {wilson(r, args.trials)}")
                refused = " (refused: needs 500)" if tails.refusal(METRIC, n) else ""
                print(f"| {tail} | {n}{refused} | {method} | " + " | ".join(cells) + " |",
                      flush=True)


if __name__ == "__main__":
    main()
