"""Calibrate the regression gate on the real embedded engine: false alarms and detection.

Usage::

    .venv/bin/python benchmarks/gate_calibration.py            # record (about 10 min) + analyse
    .venv/bin/python benchmarks/gate_calibration.py --analyse-only   # reuse the recorded pool

What it does, exactly:

1. Records a pool of real runs of Gemma 3 270M on llama.cpp (the embedded default engine,
   ``create_engine(Settings())``), in ``--cycles`` cycles. Each cycle runs four conditions in
   a shuffled order: ``A`` and ``A2`` (the same engine, nothing changed), ``S5`` and ``S10``
   (the same engine behind ``SlowEngine``, which holds every token back by 5% or 10% of the
   time it took, so TTFT and TPOT grow by that fraction and tokens/s falls by 1/(1+f)). The
   slowdown exists only in this file. Each run: ``--requests`` requests of ``--input`` prompt
   tokens and ``--output`` output tokens, one warm-up request.
2. Runs a few real end-to-end paired comparisons (``ab.run_ab`` on the live engine) to time
   them and to show the real path.
3. Estimates the rates by resampling the recorded real runs (the CPU is shared, so thousands
   of live trials are out of reach). What is simulated:
   - paired gate: a trial draws distinct cycles; pair i is (A, A2) for A/A or
     (A, S5|S10) from the same cycle, so each pair is two runs made back to back as in a live
     comparison. Stage 1 has 5 pairs, stage 2 five more only when stage 1 is unclear; alpha
     0.01 split over the two looks; tolerance 5%.
   - stored-baseline gate: consecutive cycles are grouped into blocks of ``--repeats``
     cycles; a block plays one commit's job. A trial draws distinct blocks: the baseline
     commit (its A runs), up to 5 earlier baselines (their A runs: the history), and the
     head (A2 runs of another block for A/A, S5/S10 runs for a slowdown). Reported for the
     history-based variance (>= 5 earlier baselines) and the repeats-only fallback.
   Rates come with 95% Wilson intervals over the trials. Trials reuse the same runs, so the
   intervals describe the resampling, not fresh machines; the real-run pool size is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_llmperf import ab, stats  # noqa: E402
from pytest_llmperf.bench import run_benchmark  # noqa: E402
from pytest_llmperf.config import Settings  # noqa: E402
from pytest_llmperf.engines import create_engine  # noqa: E402
from pytest_llmperf.engines.base import Engine, Generation, GenerationParams, OnChunk  # noqa: E402
from pytest_llmperf.gate import compare_runs  # noqa: E402
from pytest_llmperf.workload import Prompt, Tokenizer, Workload  # noqa: E402

METRICS = ("ttft_p50_ms", "tpot_p50_ms", "output_tps")
CONDITIONS = ("A", "A2", "S5", "S10")
SLOWDOWN = {"A": 0.0, "A2": 0.0, "S5": 0.05, "S10": 0.10}


class SlowEngine(Engine):
    """The wrapped engine, every token held back by ``fraction`` of the time it took."""

    def __init__(self, inner: Engine, fraction: float) -> None:
        self.inner = inner
        self.fraction = fraction
        self.kind = inner.kind
        self.max_concurrency = inner.max_concurrency

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.inner.tokenizer

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    async def generate(self, prompt: Prompt, params: GenerationParams,
                       on_chunk: OnChunk) -> Generation:
        last = time.perf_counter_ns()
        frac = self.fraction

        def slowed(t_ns: int, n: int) -> None:
            nonlocal last
            # Runs on the engine's thread: holding it back delays the next token too.
            target = t_ns + int((t_ns - last) * frac)
            while True:
                now = time.perf_counter_ns()
                if now >= target:
                    break
                if target - now > 2_000_000:
                    time.sleep((target - now - 1_000_000) / 1e9)
            now = time.perf_counter_ns()
            last = now
            on_chunk(now, n)

        return await self.inner.generate(prompt, params, slowed if frac > 0 else on_chunk)

    def close(self) -> None:
        self.inner.close()


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / n:5.1f}% [{100 * lo:4.1f}, {100 * hi:5.1f}]"


# ------------------------------------------------------------------------------ recording


def record(args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(Settings(threads=args.threads))
    engines = {c: (engine if SLOWDOWN[c] == 0 else SlowEngine(engine, SLOWDOWN[c]))
               for c in CONDITIONS}
    workload = Workload(input_tokens=args.input, output_tokens=args.output,
                        requests=args.requests, warmup=1)
    rng = random.Random(args.seed)
    cycles: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for c in range(args.cycles):
        order = list(CONDITIONS)
        rng.shuffle(order)
        cycle: dict[str, Any] = {"order": order}
        for cond in order:
            t0 = time.perf_counter()
            res = run_benchmark(engines[cond], workload)
            cycle[cond] = {"summary": dict(res.summary), "wall_s": time.perf_counter() - t0}
        cycle["loadavg_1m"] = os.getloadavg()[0]
        cycles.append(cycle)
        el = time.perf_counter() - t_start
        print(f"cycle {c + 1}/{args.cycles} ({el:.0f} s): " + ", ".join(
            f"{k} tpot {cycle[k]['summary']['tpot_p50_ms']:.1f}" for k in CONDITIONS),
            flush=True)
    live = live_trials(engines, workload, args) if args.live_trials else []
    info = engine.info()
    engine.close()
    return {"workload": workload.to_dict(), "engine": info,
            "cycles": cycles, "live": live, "record_s": time.perf_counter() - t_start}


def live_trials(engines: Mapping[str, Engine], workload: Workload,
                args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for cond in ("A2", "S10")[: args.live_trials * 2]:
        def runner(e: Engine) -> Callable[[], Any]:
            return lambda: run_benchmark(e, workload)

        t0 = time.perf_counter()
        v = ab.run_ab(runner(engines["A"]), runner(engines[cond]), {}, alpha=args.alpha)
        out.append({"condition": cond, "verdict": v.verdict, "pairs": v.pairs,
                    "wall_s": time.perf_counter() - t0,
                    "metrics": {m.metric: [m.change_pct, m.ci_low_pct, m.ci_high_pct,
                                           m.verdict] for m in v.metrics if m.gated}})
        print(f"live paired trial A vs {cond}: {v.verdict} after {v.pairs} pairs "
              f"({out[-1]['wall_s']:.0f} s)", flush=True)
    return out


# ------------------------------------------------------------------------------- analysis


def paired_trials(cycles: Sequence[Mapping[str, Any]], cond: str, trials: int, alpha: float,
                  rng: np.random.Generator) -> dict[str, Any]:
    alarms = pairs_used = 0
    wall = 0.0
    for _ in range(trials):
        drawn: list[tuple[dict[str, Any], dict[str, Any]]] = []
        # Distinct cycles (without replacement): a repeated pair would fake certainty.
        order = iter(rng.permutation(len(cycles)))

        def pair(_order: Any = order) -> tuple[dict[str, Any], dict[str, Any]]:
            c = cycles[int(next(_order))]
            return c["A"], c[cond]

        v = run_ab_resampled(drawn, pair, alpha)
        alarms += v.verdict == "regression"
        pairs_used += v.pairs
        wall += sum(a["wall_s"] + b["wall_s"] for a, b in drawn)
    return {"alarms": alarms, "trials": trials, "mean_pairs": pairs_used / trials,
            "mean_wall_s": wall / trials}


def run_ab_resampled(drawn: list[Any], pair: Callable[[], Any], alpha: float) -> ab.ABVerdict:
    """ab.run_ab fed with recorded pairs: each A call draws a recorded pair, B returns its mate."""
    state: dict[str, Any] = {}

    def run_a() -> Mapping[str, Any]:
        if "pending_a" in state:
            return state.pop("pending_a")
        a, b = pair()
        drawn.append((a, b))
        state["pending_b"] = b["summary"]
        return a["summary"]

    def run_b() -> Mapping[str, Any]:
        if "pending_b" in state:
            return state.pop("pending_b")
        a, b = pair()
        drawn.append((a, b))
        state["pending_a"] = a["summary"]
        return b["summary"]

    return ab.run_ab(run_a, run_b, {}, alpha=alpha)


def stored_trials(cycles: Sequence[Mapping[str, Any]], cond: str, trials: int, alpha: float,
                  repeats: int, history: int, rng: np.random.Generator) -> dict[str, Any]:
    nblocks = len(cycles) // repeats
    blocks = [cycles[i * repeats:(i + 1) * repeats] for i in range(nblocks)]
    need = history + 2 if history else 2
    if nblocks < need:
        return {"alarms": 0, "trials": 0, "mean_wall_s": 0.0, "note": "pool too small"}
    alarms = 0
    inconclusive = 0
    wall = 0.0
    head_cond = "A2" if cond == "A2" else cond
    for _ in range(trials):
        pick = rng.choice(nblocks, size=need, replace=False)
        base_b, head_b = blocks[pick[0]], blocks[pick[1]]
        hist_b = [blocks[i] for i in pick[2:]]
        base = [c["A"] for c in base_b]
        cur = [c[head_cond] for c in head_b]
        hist = [base] + [[c["A"] for c in b] for b in hist_b] if history else []
        verdicts = compare_runs({}, base, cur, hist, alpha=alpha)
        gated = [v for v in verdicts if v.gated]
        alarms += any(v.verdict == "regression" for v in gated)
        inconclusive += any(v.verdict == "inconclusive" for v in gated)
        wall += sum(r["wall_s"] for r in cur)
    return {"alarms": alarms, "trials": trials, "inconclusive": inconclusive,
            "mean_wall_s": wall / trials}


def noise_report(cycles: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for m in METRICS:
        a = np.log([c["A"]["summary"][m] for c in cycles])
        a2 = np.log([c["A2"]["summary"][m] for c in cycles])
        s10 = np.log([c["S10"]["summary"][m] for c in cycles])
        s5 = np.log([c["S5"]["summary"][m] for c in cycles])
        lines.append(
            f"  {m:12s} run-to-run CV {100 * a.std(ddof=1):4.1f}%, paired A/A log-ratio sd "
            f"{100 * (a2 - a).std(ddof=1):4.1f}%, measured S5 "
            f"{100 * np.expm1((s5 - a).mean()):+.1f}%, S10 "
            f"{100 * np.expm1((s10 - a).mean()):+.1f}%")
    return lines


def analyse(pool: Mapping[str, Any], args: argparse.Namespace) -> None:
    cycles = pool["cycles"]
    if args.cycle_range:
        lo, _, hi = args.cycle_range.partition(":")
        cycles = cycles[int(lo or 0):int(hi) if hi else None]
        print(f"analysing cycles {args.cycle_range} only")
    loads = [c["loadavg_1m"] for c in cycles if "loadavg_1m" in c]
    if loads:
        print(f"1-minute load average during the cycles: {min(loads):.1f} .. {max(loads):.1f}")
    rng = np.random.default_rng(args.seed)
    run_s = np.mean([c[k]["wall_s"] for c in cycles for k in CONDITIONS])
    w = pool["workload"]
    print(f"\npool: {len(cycles)} cycles x {len(CONDITIONS)} real runs "
          f"({w['requests']} requests x {w['input_tokens']}+{w['output_tokens']} tokens, "
          f"{run_s:.1f} s per run; recorded in {pool.get('record_s', 0):.0f} s)")
    print("measured noise and injected effect:")
    print("\n".join(noise_report(cycles)))
    print(f"\nalpha {args.alpha}, tolerance 5%, gated: {', '.join(METRICS)}; "
          "rate [95% Wilson interval]; a trial alarms when any gated metric regresses")
    names = {"A2": "A/A (false alarm)", "S5": "5% slower", "S10": "10% slower"}
    print(f"\npaired gate ({args.trials} resampled trials each; 5 + 5 pairs, two looks):")
    for cond in ("A2", "S5", "S10"):
        t0 = time.perf_counter()
        r = paired_trials(cycles, cond, args.trials, args.alpha, rng)
        print(f"  {names[cond]:18s} alarms {rate(r['alarms'], r['trials'])}  "
              f"mean pairs {r['mean_pairs']:.1f}, engine time per trial {r['mean_wall_s']:.0f} s"
              f" (analysis {time.perf_counter() - t0:.1f} s)")
    for label, hist, reps in (("history of 5 earlier baselines", 5, args.repeats),
                              ("history of 5, repeats=1", 5, 1),
                              ("repeats only, no history", 0, args.repeats)):
        print(f"\nstored-baseline gate, {label} (repeats={reps}, "
              f"{args.trials} resampled trials each):")
        for cond in ("A2", "S5", "S10"):
            r = stored_trials(cycles, cond, args.trials, args.alpha, reps, hist, rng)
            if not r["trials"]:
                print(f"  {names[cond]:18s} {r.get('note')}")
                continue
            print(f"  {names[cond]:18s} alarms {rate(r['alarms'], r['trials'])}  "
                  f"engine time per head job {r['mean_wall_s']:.0f} s"
                  + (f", inconclusive {r['inconclusive']}" if r.get("inconclusive") else ""))
    for t in pool.get("live", []):
        ms = ", ".join(f"{k} {v[0]:+.1f}% [{v[1]:+.1f}, {v[2]:+.1f}] {v[3]}"
                       for k, v in t["metrics"].items())
        print(f"\nlive paired trial A vs {t['condition']}: {t['verdict']} after {t['pairs']} pairs"
              f" in {t['wall_s']:.0f} s: {ms}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=30)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--output", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="llama.cpp threads (1: steadier on a shared, oversubscribed CPU)")
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--alpha", type=float, default=stats.DEFAULT_ALPHA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--live-trials", type=int, default=1,
                   help="live end-to-end paired trials per condition (A/A and 10%%)")
    p.add_argument("--pool", default="/tmp/llmperf_gate_pool.json")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--cycle-range", default="",
                   help="analyse only these recorded cycles, e.g. 0:12 (Python slice)")
    args = p.parse_args(argv)
    path = Path(args.pool)
    if args.analyse_only:
        pool = json.loads(path.read_text())
    else:
        pool = record(args)
        path.write_text(json.dumps(pool))
    analyse(pool, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
