"""Calibrate the nightly change-point detector on series built from real runs.

Usage::

    .venv/bin/python benchmarks/changepoint_calibration.py               # record (~8 min) + analyse
    .venv/bin/python benchmarks/changepoint_calibration.py --analyse-only
    .venv/bin/python benchmarks/changepoint_calibration.py --analyse-only --noise-scale 0.2
    .venv/bin/python benchmarks/changepoint_calibration.py --analyse-only --max-load 1.5 \
        --per-commit 1 --only detect oracle
    .venv/bin/python benchmarks/changepoint_calibration.py --analyse-only --only detect \
        --metrics tpot_p50_ms --trials 50 --flat-trials 200      # a quick look

The third-party detectors are compared only when importable; they cannot be installed beside
this project (their numpy/scipy pins conflict), so install them apart::

    .venv/bin/pip install --no-deps --target /tmp/cpdeps apache-otava \
        signal-processing-algorithms structlog more-itertools
    PYTHONPATH=/tmp/cpdeps .venv/bin/python benchmarks/changepoint_calibration.py --analyse-only

What it does, exactly:

1. Records ``--runs`` real runs of Gemma 3 270M on llama.cpp (the embedded default engine,
   ``create_engine(Settings(threads=1))``), one after the other, each ``--requests`` requests of
   ``--input`` prompt and ``--output`` output tokens after one warm-up request
   (``run.bench.run_benchmark``), with the 1-minute load average after each run (the machine
   is shared). The pool is saved to ``--pool`` so the analysis can be rerun.
2. Builds per-commit series from the pool the way a nightly store keeps them: each commit is
   ``--per-commit`` runs (1 or 2) drawn without replacement from the pool, in random order, so
   the noise between commits is real run-to-run noise of this machine. Shapes:
   - ``flat``: no shift;
   - ``step5`` / ``step10``: the values of every commit from the step on multiplied by 1.05 /
     1.10 (latencies) or divided by it (tokens/s) -- real noise, injected shift;
   - ``drift``: commit i multiplied by 1.01**i (a slow 1% per commit drift);
   - ``spike``: one commit, anywhere, multiplied by 1.20.
   ``--noise-scale`` shrinks each run's log-distance from the pool's geometric mean (the noise
   keeps its recorded shape, not its width); ``--max-load`` keeps only the runs recorded at or
   below that 1-minute load average.
   A step series has ``--before`` commits before the step and ``--after`` commits from it on
   (the step commit included), so "5 commits after the step exist".
3. Runs every detector on every series (each gated metric separately) and reports, with 95%
   Wilson intervals: the share of flat series flagged (any change point), the share of step
   series whose change is found within one commit of the truth (and exactly), how many commits
   late the change is placed, the share of spike series flagged, and for the drift, the share
   flagged and where the first change point falls. An "oracle" row (a t-test at the true step,
   known in advance) shows what the noise allows at all.

Detectors: ``detect`` (this project's, all runs of each commit, winsorised at the median +- 1.5
robust standard deviations before the scan), the project's earlier
``change_points`` (E-divisive over per-commit means), and, when installed, Apache Otava
(``apache-otava``) and MongoDB's ``signal-processing-algorithms`` (E-divisive means), both over
per-commit means as their APIs take one value per point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rates import rate  # noqa: E402  (benchmarks/rates.py)

from pytest_llmperf.metric_table import higher_is_better  # noqa: E402
from pytest_llmperf.verdict import changepoints  # noqa: E402

METRICS = ("ttft_p50_ms", "tpot_p50_ms", "output_tps")


# ------------------------------------------------------------------------------ recording


def record(args: argparse.Namespace) -> dict[str, Any]:
    from pytest_llmperf.engines import create_engine
    from pytest_llmperf.run.bench import run_benchmark
    from pytest_llmperf.run.workload import Workload
    from pytest_llmperf.settings import Settings

    engine = create_engine(Settings(threads=args.threads))
    workload = Workload(input_tokens=args.input, output_tokens=args.output,
                        requests=args.requests, warmup=1)
    pool: dict[str, Any] = {"workload": workload.to_dict(), "engine": engine.info(),
                            "machine": {"platform": platform.platform(),
                                        "processor": platform.processor(),
                                        "cpus": os.cpu_count()},
                            "runs": []}
    path = Path(args.pool)
    t_start = time.perf_counter()
    try:
        for i in range(args.runs):
            t0 = time.perf_counter()
            res = run_benchmark(engine, workload)
            pool["runs"].append({"summary": {m: res.summary[m] for m in METRICS},
                                 "wall_s": time.perf_counter() - t0,
                                 "loadavg_1m": os.getloadavg()[0]})
            el = time.perf_counter() - t_start
            s = res.summary
            print(f"run {i + 1}/{args.runs} ({el:.0f} s, load {os.getloadavg()[0]:.1f}): "
                  + ", ".join(f"{m} {s[m]:.2f}" for m in METRICS), flush=True)
            if (i + 1) % 10 == 0:
                pool["record_s"] = el
                path.write_text(json.dumps(pool))
            if el > args.max_seconds:
                print(f"stopping after {el:.0f} s (--max-seconds)", flush=True)
                break
    finally:
        pool["record_s"] = time.perf_counter() - t_start
        path.write_text(json.dumps(pool))
        engine.close()
    return pool


# ------------------------------------------------------------------------------ detectors

Detector = Callable[[list[list[float]]], list[int]]


def _means(series: list[list[float]]) -> list[float]:
    return [float(np.exp(np.mean(np.log(runs)))) for runs in series]


def _seg_change_ok(means: list[float], idx: list[int], min_pct: float) -> list[int]:
    """Keep the change points whose neighbouring segments' geometric means differ by more
    than min_pct (for detectors without a minimum magnitude of their own)."""
    edges = [0, *idx, len(means)]
    logs = np.log(means)
    keep = []
    for i, k in enumerate(idx):
        a, b = logs[edges[i]:k], logs[k:edges[i + 2]]
        if abs(math.expm1(b.mean() - a.mean())) * 100 > min_pct:
            keep.append(k)
    return keep


def detectors(alpha: float, min_pct: float) -> dict[str, Detector]:
    out: dict[str, Detector] = {
        "detect (runs winsorised, t-scan permutation)": lambda s: [
            c.index for c in changepoints.detect(s, alpha=alpha,
                                                 min_change_pct=min_pct).change_points],
        "change_points (E-divisive, earlier)": lambda s: [
            c.index for c in changepoints.change_points(_means(s), alpha=alpha,
                                                        min_change_pct=min_pct)],
    }
    try:
        from otava.analysis import compute_change_points  # type: ignore[import-not-found]
    except ImportError:
        print("apache-otava not importable: skipped", flush=True)
    else:
        def otava(max_p: float) -> Detector:
            return lambda s: [int(c.index) for c in compute_change_points(
                _means(s), window_len=50, max_pvalue=max_p, min_magnitude=min_pct / 100)[0]]

        out["Otava 0.8 (p 0.001, default)"] = otava(0.001)
        out[f"Otava 0.8 (p {alpha:g})"] = otava(alpha)
    try:
        from signal_processing_algorithms.energy_statistics import (  # type: ignore[import-not-found]
            energy_statistics as es,
        )
    except ImportError:
        print("signal-processing-algorithms not importable: skipped", flush=True)
    else:
        def spa(s: list[list[float]]) -> list[int]:
            means = _means(s)
            idx = sorted(int(i) for i in es.e_divisive(means, pvalue=alpha, permutations=100))
            return _seg_change_ok(means, idx, min_pct)

        out[f"MongoDB SPA e_divisive (p {alpha:g}, 100 perms, +{min_pct:g}% filter)"] = spa
    return out


# ------------------------------------------------------------------------------- series


def factor(metric: str, f: float) -> float:
    """A slowdown by f: latencies times f, throughput divided by it."""
    return 1.0 / f if higher_is_better(metric) else f


def draw(pool: Sequence[dict[str, Any]], n: int, per_commit: int,
         rng: np.random.Generator) -> list[list[dict[str, Any]]]:
    pick = rng.choice(len(pool), size=n * per_commit, replace=False)
    return [[pool[int(j)] for j in pick[i * per_commit:(i + 1) * per_commit]] for i in range(n)]


def shaped(commits: list[list[dict[str, Any]]], metric: str,
           mult: Sequence[float]) -> list[list[float]]:
    return [[float(r[metric]) * factor(metric, mult[i]) for r in runs]
            for i, runs in enumerate(commits)]


# ------------------------------------------------------------------------------ analysis


def analyse(pool: dict[str, Any], args: argparse.Namespace) -> None:
    recorded = [r for r in pool["runs"] if r["loadavg_1m"] <= args.max_load]
    runs = [dict(r["summary"]) for r in recorded]
    loads = [r["loadavg_1m"] for r in recorded]
    if args.noise_scale != 1.0:
        # Real noise, scaled: each run's distance from the pool's geometric mean (log scale)
        # times noise_scale; the shape of the noise (tails, outliers) is kept.
        for m in METRICS:
            x = np.log([r[m] for r in runs])
            for r, v in zip(runs, np.exp(x.mean() + args.noise_scale * (x - x.mean())),
                            strict=True):
                r[m] = float(v)
        print(f"noise scaled by {args.noise_scale:g} (not as recorded)")
    w = pool["workload"]
    kept = f" (load <= {args.max_load:g})" if len(recorded) < len(pool["runs"]) else ""
    print(f"pool: {len(runs)} real runs{kept} ({w['requests']} requests x {w['input_tokens']}+"
          f"{w['output_tokens']} tokens, {np.mean([r['wall_s'] for r in recorded]):.1f} s "
          f"per run, recorded in {pool.get('record_s', 0):.0f} s); 1-minute load average "
          f"{min(loads):.1f} .. {max(loads):.1f} (median {np.median(loads):.1f}); "
          f"{pool.get('machine', {})}")
    for m in METRICS:
        x = np.log([r[m] for r in runs])
        print(f"  {m:12s} run-to-run CV {100 * x.std(ddof=1):4.1f}%, lag-1 autocorrelation "
              f"{np.corrcoef(x[:-1], x[1:])[0, 1]:+.2f}")
    dets = detectors(args.alpha, args.min_change_pct)
    dets[ORACLE] = lambda s: []
    if args.only:
        dets = {k: v for k, v in dets.items() if any(o in k for o in args.only)}
    pc, nb = args.per_commit, args.before
    shapes: dict[str, tuple[int, Callable[[int], float], int | None]] = {
        "flat": (nb + args.after[0], lambda i: 1.0, None)}
    for step in (5, 10):
        for na in args.after:
            shapes[f"step{step} +{na}"] = (nb + na, (lambda i, s=step: 1 + s / 100
                                                     if i >= nb else 1.0), nb)
    shapes["drift 1%/commit"] = (nb + args.after[0], lambda i: 1.01 ** i, None)
    shapes["spike +20%"] = (nb + args.after[0], lambda i: 1.0, None)
    print(f"\nseries: {pc} run(s) per commit drawn without replacement from the pool; steps "
          f"at commit {nb} (commits before it: {nb}); alpha {args.alpha:g}, minimum change "
          f"{args.min_change_pct:g}%; trials per shape and metric: {args.trials} "
          f"({args.flat_trials} flat)")
    rows: list[str] = []
    for name, det in dets.items():
        t0 = time.perf_counter()
        calls = 0
        for m in args.metrics:
            rng = np.random.default_rng(args.seed)  # the same series for every detector
            cells: list[str] = []
            for shape, (n, mult_of, truth) in shapes.items():
                trials = args.flat_trials if shape == "flat" else args.trials
                flagged = within = exact = 0
                errors: list[int] = []
                first: list[int] = []
                for _ in range(trials):
                    commits = draw(runs, n, pc, rng)
                    mult = [mult_of(i) for i in range(n)]
                    if shape.startswith("spike"):
                        mult[int(rng.integers(n))] = 1.2
                    cps = (det(shaped(commits, m, mult)) if name != ORACLE
                           else oracle(shaped(commits, m, mult), nb, args))
                    calls += 1
                    flagged += bool(cps)
                    if shape.startswith("drift") and cps:
                        first.append(min(cps))
                    if truth is not None and cps:
                        err = min(cps, key=lambda k: abs(k - truth)) - truth
                        errors.append(err)
                        within += abs(err) <= 1
                        exact += err == 0
                if shape == "flat" or shape.startswith("spike"):
                    cells.append(rate(flagged, trials))
                elif shape.startswith("drift"):
                    cells.append(f"{100 * flagged / trials:.0f}%"
                                 + (f", at {np.median(first):.0f}" if first else ""))
                elif shape == f"step10 +{args.after[0]}":
                    cells.append(rate(within, trials))
                    cells.append(f"{100 * exact / trials:.0f}% / " + (
                        f"{np.median(errors):+.0f} / {np.mean(errors):+.1f}" if errors else "-"))
                else:
                    cells.append(f"{100 * within / trials:.0f}%")
            rows.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
        print(f"  ({name}: {1000 * (time.perf_counter() - t0) / max(calls, 1):.1f} ms per "
              "series)", flush=True)
    heads = []
    for s in shapes:
        if s == "flat":
            heads.append("no shift: flagged")
        elif s.startswith("spike"):
            heads.append("one +20% spike: flagged")
        elif s.startswith("drift"):
            heads.append("drift 1%/commit: flagged, first change at")
        elif s == f"step10 +{args.after[0]}":
            heads.append(f"10% step, {args.after[0]} after: within 1 commit")
            heads.append("exact / median / mean offset")
        else:
            st, na = s.split(" +")
            heads.append(f"{st[4:]}% step, {na} after: within 1")
    print("\n| detector | metric | " + " | ".join(heads) + " |\n|---|---|"
          + "---:|" * len(heads) + "\n" + "\n".join(rows))


ORACLE = "oracle t-test at the true step (not a detector)"


def oracle(series: list[list[float]], nb: int, args: argparse.Namespace) -> list[int]:
    """What is reachable at all: a two-sided t-test of the commit means at the step's commit,
    known in advance, at alpha, with the same minimum change; no search, no persistence."""
    from scipy import stats as sps

    m = np.log(_means(series))
    a, b = m[:nb], m[nb:]
    p = float(sps.ttest_ind(a, b).pvalue)
    big = abs(math.expm1(b.mean() - a.mean())) * 100 > args.min_change_pct
    return [nb] if p < args.alpha and big else []

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--runs", type=int, default=140)
    p.add_argument("--max-seconds", type=float, default=480.0)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--output", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pool", default="/tmp/llmperf_changepoint_pool.json")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--per-commit", type=int, default=2, help="runs per commit (1 or 2)")
    p.add_argument("--before", type=int, default=15, help="commits before the step")
    p.add_argument("--after", type=int, nargs="+", default=[5, 10],
                   help="commits from the step on (the first is also the length of the "
                        "flat, drift and spike series beyond --before)")
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--flat-trials", type=int, default=1000)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--min-change-pct", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-load", type=float, default=math.inf,
                   help="use only the runs recorded at this 1-minute load average or less")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="scale each run's log-distance from the pool's mean (1: as recorded)")
    p.add_argument("--only", nargs="*", default=[],
                   help="run only the detectors whose name contains one of these")
    p.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS,
                   help="the gated metrics to build series of (default: all three)")
    args = p.parse_args(argv)
    path = Path(args.pool)
    pool = json.loads(path.read_text()) if args.analyse_only else record(args)
    analyse(pool, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
