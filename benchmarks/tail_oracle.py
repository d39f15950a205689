"""Tails on the oracle: false alarms and detection of a gated p99 through the real A/B path.

Two known-schedule oracle servers (``pytest_llmperf.testing.oracle``) with a heavy-tailed
TTFT (``OracleConfig.ttft_tail``: ``ttft_ms`` x a seeded lognormal draw of median 1, each
request's draw its own), one output token per request; the plugin's OpenAI engine against
each; the paired A/B gate that ``llmperf_bench.compare`` runs for a concurrent workload
(``verdict.ab.run_ab``: whole runs of A and B alternating A B, B A, ..., 5 pairs then 5 more
while unclear, exact sign-flip test, alpha 0.01, tolerance 5%) gating ``ttft_p99_ms`` only.

- A/A: both servers ``lognormal:SIGMA`` (different seeds): every "regression" is a false alarm;
- slower tail: B's sigma raised so its p99 is ``--slower`` (1.5) times A's, its median
  unchanged (``SIGMA + ln(1.5) / 2.326``): every "regression" is a detection.

At each requests-per-run setting (100: below the rule of ``verdict.tails`` for a p99, 500
requests per run, so refused as not decidable, shown on 10 trials; 500) ``--trials``
decisions of each case.
Prints a Markdown table: the rate of "regression", Wilson 95% intervals, the other verdicts,
the pairs used, the measured change and the MDE the verdict reported (with what a blind pass
needs), the wall time and the machine's load average.

    python benchmarks/tail_oracle.py [--trials 30] [--requests 100 500] [--concurrency 8]

About 9 minutes on the shared 2-core VM at the defaults (the oracle sleeps; the client
process uses about one core).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections import Counter

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing import heavy_tail
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer
from pytest_llmperf.verdict import ab, tails

METRIC = "ttft_p99_ms"
THRESHOLDS = {"gate": [METRIC]}  # the default tolerance (5%) and alpha (0.01)


def wilson(hits: int, n: int) -> str:
    z = 1.96
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{max(0.0, centre - half) * 100:.0f}, {min(1.0, centre + half) * 100:.0f}]"


def cell(sigma_b: float, args: argparse.Namespace, requests: int, seed: int,
         trials: int) -> str:
    a_cfg = OracleConfig(ttft_ms=args.ttft_ms, itl_ms=1.0,
                         ttft_tail=f"lognormal:{args.sigma}", ttft_tail_seed=seed)
    b_cfg = OracleConfig(ttft_ms=args.ttft_ms, itl_ms=1.0,
                         ttft_tail=f"lognormal:{sigma_b}", ttft_tail_seed=seed + 1)
    work = Workload(input_tokens=8, output_tokens=1, requests=requests, warmup=1,
                    concurrency=args.concurrency)
    verdicts: Counter[str] = Counter()
    pairs, changes, mdes, needs = [], [], [], []
    t0 = time.perf_counter()
    with OracleServer(a_cfg) as sa, OracleServer(b_cfg) as sb:
        ea = OpenAIEngine(sa.url, tokenizer=WordTokenizer())
        eb = OpenAIEngine(sb.url, tokenizer=WordTokenizer())
        try:
            for _ in range(trials):
                v = ab.run_ab(lambda: run_benchmark(ea, work), lambda: run_benchmark(eb, work),
                              THRESHOLDS)
                m = v.metric(METRIC)
                refused = "not decidable" in (m.note or "")
                verdicts["not decidable" if refused
                         else f"{m.verdict} (blind)" if m.blind else m.verdict] += 1
                pairs.append(v.pairs)
                if m.change_pct is not None:
                    changes.append(m.change_pct)
                if m.mde_pct is not None:
                    mdes.append(m.mde_pct)
                if m.blind and m.needs is not None:
                    needs.append(m.needs)
        finally:
            ea.close()
            eb.close()
    wall = time.perf_counter() - t0
    n = trials
    hits = verdicts["regression"]
    others = ", ".join(f"{k} {c}" for k, c in sorted(verdicts.items()) if k != "regression")
    change = f"{statistics.median(changes):+.0f}%" if changes else "-"
    mde = f"{statistics.median(mdes):.0f}%" if mdes else "-"
    if needs:
        mde += f" (blind: needs about {statistics.median(needs):.0f} pairs)"
    return (f"{hits / n * 100:.1f}% {wilson(hits, n)} | {others or '-'} | "
            f"{statistics.median(pairs):.0f} | {change} | {mde} | {wall:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--requests", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ttft-ms", type=float, default=2.0)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--slower", type=float, default=1.5, help="B's p99 / A's p99")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    z99 = math.log(heavy_tail.quantile("lognormal:1", 0.99))
    sigma_b = args.sigma + math.log(args.slower) / z99
    print(f"oracle: ttft_ms {args.ttft_ms:g} x lognormal (A sigma {args.sigma:g}, p99 x "
          f"{heavy_tail.quantile(f'lognormal:{args.sigma}', 0.99):.2f}; slower B sigma "
          f"{sigma_b:.3f}, p99 x {heavy_tail.quantile(f'lognormal:{sigma_b}', 0.99):.2f}), "
          f"1 output token, concurrency {args.concurrency}, {args.trials} trials per cell; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"| requests per run | case | trials | {METRIC} regression | other verdicts "
          "| median pairs | median measured change | median MDE | wall |")
    print("|---:|---|---:|---:|---|---:|---:|---|---:|")
    for k, requests in enumerate(args.requests):
        for case, sigma_b_case in (("A/A", args.sigma), (f"p99 x {args.slower:g}", sigma_b)):
            seed = args.seed * 1000 + k * 10 + (2 if sigma_b_case != args.sigma else 0)
            # Below the rule every decision is refused by its count: a few trials show it.
            refused = bool(tails.refusal(METRIC, requests))
            trials = min(args.trials, 10) if refused else args.trials
            row = cell(sigma_b_case, args, requests, seed, trials)
            print(f"| {requests} | {case} | {trials} | {row} |", flush=True)
    print(f"load average at end (1, 5, 15 min): "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
