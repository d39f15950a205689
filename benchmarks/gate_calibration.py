"""Calibrate the regression gate on the real embedded engine: false alarms and detection.

Usage::

    .venv/bin/python benchmarks/gate_calibration.py            # record (about 30 min) + analyse
    .venv/bin/python benchmarks/gate_calibration.py --analyse-only   # reuse the recorded pools

What it does, exactly:

1. Records real runs of Gemma 3 270M on llama.cpp (the embedded default engine,
   ``create_engine(Settings(threads=1))``) under four conditions: ``A`` and ``A2`` (the same
   engine, nothing changed) and ``S5``/``S10`` (the same engine behind ``SlowEngine``, which
   after every token spins the engine's own thread for 5% or 10% of the time that token took,
   so TTFT and TPOT grow by that fraction and tokens/s falls by 1/(1+f), exactly as if the
   engine did that much more work). The slowdown exists only in this file. Each run:
   ``--requests`` requests of ``--input`` prompt and ``--output`` output tokens, one warm-up.
   Two pools:
   - interleaved pairs (the paired gate's default for sequential workloads): ``--pair-cycles``
     cycles, each making the pairs (A, A2), (A, S5), (A, S10) in a shuffled order with
     ``bench.run_benchmark_interleaved`` (the two runs of a pair made together, request by
     request, A B B A ...; which side goes first alternates between cycles);
   - separate runs (the stored-baseline gate, and the paired gate with ``interleave="runs"``):
     ``--cycles`` cycles, each running A, A2, S5 and S10 one after the other, shuffled.
2. Runs real end-to-end paired comparisons (``ab.run_paired`` over interleaved pairs on the
   live engine, exactly what ``llmperf_bench.compare`` does): ``--live-trials`` A/A and as
   many A vs S10.
3. Estimates the rates by resampling the recorded real runs (thousands of live trials are out
   of reach on 2 cores). What is simulated:
   - paired gate: a trial draws distinct recorded pairs of its condition, without
     replacement, and feeds them to ``ab.run_paired`` (5 pairs, then 5 more only when
     unclear; alpha 0.01 spent over the two looks; tolerance 5%), so the decision code is the
     plugin's own;
   - the same on separate runs (``interleave="runs"``): pair i is (A, A2 | S5 | S10) from one
     cycle;
   - stored-baseline gate: consecutive cycles of the separate pool are grouped into blocks of
     ``--repeats``; a block plays one commit's job. A trial draws distinct blocks: the baseline
     commit (its A runs), up to 5 earlier baselines (their A runs: the history), and the head
     (A2 runs of another block for A/A, S5/S10 runs for a slowdown).
   Rates come with 95% Wilson intervals over the trials. Trials re-use the same runs, so the
   intervals describe the resampling, not fresh machines; the pool sizes are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rates import rate  # noqa: E402  (benchmarks/rates.py)

from pytest_llmperf.engines import create_engine  # noqa: E402
from pytest_llmperf.engines.base import (  # noqa: E402
    Engine,
    Generation,
    GenerationParams,
    OnChunk,
    Prompt,
    Tokenizer,
)
from pytest_llmperf.run.bench import run_benchmark, run_benchmark_interleaved  # noqa: E402
from pytest_llmperf.run.workload import Workload  # noqa: E402
from pytest_llmperf.settings import Settings  # noqa: E402
from pytest_llmperf.verdict import ab, stats  # noqa: E402
from pytest_llmperf.verdict.gate import compare_runs  # noqa: E402

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
            # Runs on the engine's thread, which spins (keeps its core busy, as more work
            # would) until the token is late by frac of the time it took; the next token
            # cannot start before.
            target = t_ns + int((t_ns - last) * frac)
            while time.perf_counter_ns() < target:
                pass
            last = time.perf_counter_ns()
            on_chunk(last, n)

        return await self.inner.generate(prompt, params, slowed if frac > 0 else on_chunk)

    def close(self) -> None:
        self.inner.close()


# ------------------------------------------------------------------------------ recording

PAIRS = (("A", "A2"), ("A", "S5"), ("A", "S10"))


def make_engines(args: argparse.Namespace) -> tuple[Engine, dict[str, Engine]]:
    engine = create_engine(Settings(threads=args.threads))
    return engine, {c: (engine if SLOWDOWN[c] == 0 else SlowEngine(engine, SLOWDOWN[c]))
                    for c in CONDITIONS}


def make_workload(args: argparse.Namespace) -> Workload:
    return Workload(input_tokens=args.input, output_tokens=args.output,
                    requests=args.requests, warmup=1)


def record_pairs(engines: Mapping[str, Engine], workload: Workload,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved pairs: per cycle (A, A2), (A, S5), (A, S10), shuffled."""
    rng = random.Random(args.seed)
    cycles: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for c in range(args.pair_cycles):
        order = list(PAIRS)
        rng.shuffle(order)
        cycle: dict[str, Any] = {"order": [b for _, b in order], "b_first": c % 2 == 1}
        for a_cond, b_cond in order:
            t0 = time.perf_counter()
            ra, rb = run_benchmark_interleaved(engines[a_cond], engines[b_cond], workload,
                                               b_first=c % 2 == 1)
            cycle[b_cond] = {"a": dict(ra.summary), "b": dict(rb.summary),
                             "wall_s": time.perf_counter() - t0}
        cycle["loadavg_1m"] = os.getloadavg()[0]
        cycles.append(cycle)
        el = time.perf_counter() - t_start
        change = {k: cycle[k]["b"]["tpot_p50_ms"] / cycle[k]["a"]["tpot_p50_ms"] - 1
                  for _, k in PAIRS}
        print(f"pair cycle {c + 1}/{args.pair_cycles} ({el:.0f} s): " + ", ".join(
            f"A/{k} tpot {100 * v:+.1f}%" for k, v in change.items()), flush=True)
    return {"cycles": cycles, "record_s": time.perf_counter() - t_start}


def record_separate(engines: Mapping[str, Engine], workload: Workload,
                    args: argparse.Namespace) -> dict[str, Any]:
    """Separate runs: per cycle A, A2, S5, S10 one after the other, shuffled."""
    rng = random.Random(args.seed + 1)
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
    return {"cycles": cycles, "record_s": time.perf_counter() - t_start}


def live_trials(engines: Mapping[str, Engine], workload: Workload,
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """End-to-end paired comparisons on the live engine, as llmperf_bench.compare makes them."""
    out = []
    for cond in ["A2", "S10"] * args.live_trials:
        def pair(i: int, _b: Engine = engines[cond]) -> Any:
            return run_benchmark_interleaved(engines["A"], _b, workload, b_first=i % 2 == 1)

        t0 = time.perf_counter()
        v = ab.run_paired(pair, {}, alpha=args.alpha)
        out.append({"condition": cond, "verdict": v.verdict, "pairs": v.pairs,
                    "wall_s": time.perf_counter() - t0, "loadavg_1m": os.getloadavg()[0],
                    "metrics": {m.metric: [m.change_pct, m.ci_low_pct, m.ci_high_pct,
                                           m.verdict, m.p_value]
                                for m in v.metrics if m.gated}})
        print(f"live paired trial A vs {cond}: {v.verdict} after {v.pairs} pairs "
              f"({out[-1]['wall_s']:.0f} s)", flush=True)
    return out


# ------------------------------------------------------------------------------- analysis


def resampled_paired(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
                     trials: int, alpha: float, rng: np.random.Generator,
                     wall: Sequence[float], interleave: str = "requests") -> dict[str, Any]:
    """``ab.run_paired`` fed with recorded pairs drawn without replacement."""
    if len(pairs) < 10:
        return {"alarms": 0, "trials": 0, "mean_pairs": 0.0, "mean_wall_s": 0.0}
    alarms = pairs_used = 0
    spent = 0.0
    for _ in range(trials):
        order = [int(i) for i in rng.permutation(len(pairs))]
        used: list[int] = []

        def pair(i: int, _order: list[int] = order, _used: list[int] = used) -> Any:
            k = _order[i]
            _used.append(k)
            return pairs[k]

        v = ab.run_paired(pair, {}, alpha=alpha, interleave=interleave)
        alarms += v.verdict == "regression"
        pairs_used += v.pairs
        spent += sum(wall[k] for k in used)
    return {"alarms": alarms, "trials": trials, "mean_pairs": pairs_used / trials,
            "mean_wall_s": spent / trials}


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
    for _ in range(trials):
        pick = rng.choice(nblocks, size=need, replace=False)
        base_b, head_b = blocks[pick[0]], blocks[pick[1]]
        hist_b = [blocks[i] for i in pick[2:]]
        base = [c["A"] for c in base_b]
        cur = [c[cond] for c in head_b]
        hist = [base] + [[c["A"] for c in b] for b in hist_b] if history else []
        verdicts = compare_runs({}, base, cur, hist, alpha=alpha)
        gated = [v for v in verdicts if v.gated]
        alarms += any(v.verdict == "regression" for v in gated)
        inconclusive += any(v.verdict == "inconclusive" for v in gated)
        wall += sum(r["wall_s"] for r in cur)
    return {"alarms": alarms, "trials": trials, "inconclusive": inconclusive,
            "mean_wall_s": wall / trials}


def ratio_report(pairs: Mapping[str, Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]]
                 ) -> list[str]:
    lines = []
    for m in METRICS:
        parts = []
        for cond, ps in pairs.items():
            r = np.log([b[m] / a[m] for a, b in ps])
            parts.append(f"{cond} {100 * np.expm1(r.mean()):+.1f}% (sd {100 * r.std(ddof=1):.1f}%)")
        lines.append(f"  {m:12s} log-ratio B/A: " + ", ".join(parts))
    return lines


def loads_line(cycles: Sequence[Mapping[str, Any]]) -> str:
    loads = [c["loadavg_1m"] for c in cycles if "loadavg_1m" in c]
    return f"1-minute load average {min(loads):.1f} .. {max(loads):.1f}" if loads else ""


NAMES = {"A2": "A/A (false alarm)", "S5": "5% slower", "S10": "10% slower"}


def analyse_pairs(pool: Mapping[str, Any], args: argparse.Namespace,
                  rng: np.random.Generator) -> None:
    cycles = pool["cycles"]
    w = pool["workload"]
    pairs = {c: [(x[c]["a"], x[c]["b"]) for x in cycles] for c in ("A2", "S5", "S10")}
    wall = {c: [x[c]["wall_s"] for x in cycles] for c in ("A2", "S5", "S10")}
    print(f"\n== paired gate, pairs interleaved request by request ==\npool: {len(cycles)} "
          f"cycles x 3 interleaved pairs ({w['requests']} requests x {w['input_tokens']}+"
          f"{w['output_tokens']} tokens per side, {np.mean(wall['A2']):.1f} s per pair; "
          f"recorded in {pool.get('record_s', 0):.0f} s); {loads_line(cycles)}")
    print("\n".join(ratio_report(pairs)))
    print(f"{args.trials} resampled trials each; 5 + 5 pairs, alpha {args.alpha} spent over two "
          "looks, tolerance 5%, gated: " + ", ".join(METRICS))
    for cond in ("A2", "S5", "S10"):
        r = resampled_paired(pairs[cond], args.trials, args.alpha, rng, wall[cond])
        if not r["trials"]:
            print(f"  {NAMES[cond]:18s} pool too small (10 pairs needed)")
            continue
        alarms = rate(r["alarms"], r["trials"], padded=True)
        print(f"  {NAMES[cond]:18s} alarms {alarms}  mean pairs "
              f"{r['mean_pairs']:.1f}, engine time per decision {r['mean_wall_s']:.0f} s")


def analyse_separate(pool: Mapping[str, Any], args: argparse.Namespace,
                     rng: np.random.Generator) -> None:
    cycles = pool["cycles"]
    w = pool["workload"]
    run_s = np.mean([c[k]["wall_s"] for c in cycles for k in CONDITIONS])
    print(f"\n== separate runs ==\npool: {len(cycles)} cycles x {len(CONDITIONS)} real runs "
          f"({w['requests']} requests x {w['input_tokens']}+{w['output_tokens']} tokens, "
          f"{run_s:.1f} s per run; recorded in {pool.get('record_s', 0):.0f} s); "
          f"{loads_line(cycles)}")
    for m in METRICS:
        a = np.log([c["A"]["summary"][m] for c in cycles])
        print(f"  {m:12s} run-to-run CV {100 * a.std(ddof=1):4.1f}%")
    pairs = {c: [(x["A"]["summary"], x[c]["summary"]) for x in cycles]
             for c in ("A2", "S5", "S10")}
    print("\n".join(ratio_report(pairs)))
    print(f"\npaired gate with interleave='runs' ({args.trials} resampled trials each; pair i = "
          "A then the other condition from one cycle):")
    for cond in ("A2", "S5", "S10"):
        wall = [x["A"]["wall_s"] + x[cond]["wall_s"] for x in cycles]
        r = resampled_paired(pairs[cond], args.trials, args.alpha, rng, wall, "runs")
        if not r["trials"]:
            print(f"  {NAMES[cond]:18s} pool too small (10 pairs needed)")
            continue
        alarms = rate(r["alarms"], r["trials"], padded=True)
        print(f"  {NAMES[cond]:18s} alarms {alarms}  mean pairs "
              f"{r['mean_pairs']:.1f}, engine time per decision {r['mean_wall_s']:.0f} s")
    for label, hist, reps in (("history of 5 earlier baselines", 5, args.repeats),
                              ("history of 5, repeats=1", 5, 1),
                              ("repeats only, no history", 0, args.repeats)):
        print(f"\nstored-baseline gate, {label} (repeats={reps}, "
              f"{args.trials} resampled trials each):")
        for cond in ("A2", "S5", "S10"):
            r = stored_trials(cycles, cond, args.trials, args.alpha, reps, hist, rng)
            if not r["trials"]:
                print(f"  {NAMES[cond]:18s} {r.get('note')}")
                continue
            print(f"  {NAMES[cond]:18s} alarms {rate(r['alarms'], r['trials'], padded=True)}  "
                  f"engine time per head job {r['mean_wall_s']:.0f} s"
                  + (f", inconclusive {r['inconclusive']}" if r.get("inconclusive") else ""))


def analyse(pool: Mapping[str, Any], args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    if pool.get("pairs"):
        analyse_pairs(pool["pairs"] | {"workload": pool["workload"]}, args, rng)
    if pool.get("separate"):
        analyse_separate(pool["separate"] | {"workload": pool["workload"]}, args, rng)
    for t in pool.get("live", []):
        ms = ", ".join(f"{k} {v[0]:+.1f}% [{v[1]:+.1f}, {v[2]:+.1f}] p={v[4]:.4f}"
                       for k, v in t["metrics"].items())
        print(f"\nlive paired trial A vs {t['condition']}: {t['verdict']} after {t['pairs']} "
              f"pairs in {t['wall_s']:.0f} s (load {t.get('loadavg_1m', 0):.1f}): {ms}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--pair-cycles", type=int, default=30,
                   help="cycles of 3 interleaved pairs (0: skip)")
    p.add_argument("--cycles", type=int, default=24,
                   help="cycles of 4 separate runs (0: skip)")
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
    args = p.parse_args(argv)
    path = Path(args.pool)
    if args.analyse_only:
        pool = json.loads(path.read_text())
    else:
        engine, engines = make_engines(args)
        workload = make_workload(args)
        pool = {"workload": workload.to_dict(), "engine": engine.info(), "version": 2}
        if args.pair_cycles:
            pool["pairs"] = record_pairs(engines, workload, args)
            path.write_text(json.dumps(pool))
        if args.cycles:
            pool["separate"] = record_separate(engines, workload, args)
            path.write_text(json.dumps(pool))
        pool["live"] = live_trials(engines, workload, args) if args.live_trials else []
        path.write_text(json.dumps(pool))
        engine.close()
    analyse(pool, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
