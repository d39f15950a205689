"""Trace replay fidelity: does each request reach the server when the trace says?

Writes a plain JSONL trace (``{"timestamp": ms, "input_length": n, "output_length": n}``) with
seeded Poisson arrivals at each rate, replays it (``Workload(trace=..., trace_format="jsonl")``)
against the test oracle started as a separate process, and compares, per request, when the
oracle read it with when the trace said it was due: both sides stamp the same system-wide
monotonic clock (``time.perf_counter_ns``). Per rate and load-process count:

- schedule error: the client's own due times (``scheduled_ns``) against the trace's
  timestamps, relative to the first request (should be 0: the replay's plan is the trace);
- arrival error: the oracle's read time minus the due time (client dispatch, the request
  path and the server's accept; what a trace replay adds to the trace's timing), p50/p99;
- achieved against asked rate.

Run: ``python benchmarks/trace_fidelity.py`` (``--rates 10 100`` for a subset, ``--workers 1
2``). Prints a Markdown table; ``--json FILE`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client_fidelity import http, machine, start_oracle

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.loadgen import run_load
from pytest_llmperf.run.metrics import NS_PER_MS
from pytest_llmperf.run.workload import Workload, build_prompts


def write_trace(path: Path, rate: float, n: int, seed: int) -> list[float]:
    """A seeded Poisson trace of ``n`` requests at ``rate``/s; returns the offsets in ms."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1000.0 / rate, size=n)
    stamps = np.cumsum(gaps) - gaps[0]
    with path.open("w") as fh:
        for t in stamps:
            fh.write(json.dumps({"timestamp": round(float(t), 3), "input_length": 24,
                                 "output_length": 4}) + "\n")
    return [round(float(t), 3) for t in stamps]


def measure(engine: OpenAIEngine, url: str, trace: Path, offsets_ms: list[float], rate: float,
            workers: int) -> dict[str, Any]:
    n = len(offsets_ms)
    workload = Workload(trace=str(trace), trace_format="jsonl", requests=n, warmup=0)
    prompts = build_prompts(engine.tokenizer, workload)
    http(url + "/oracle/reset", "POST")
    wall = time.perf_counter()
    load = asyncio.run(run_load(engine, prompts, workload, workers=workers))
    wall = time.perf_counter() - wall
    logs = {log["prompt"]: log for log in http(url + "/oracle/logs")}
    t0 = load.client["t0_ns"]
    measured = sorted((r for r in load.records if not r.warmup), key=lambda r: r.index)
    due = np.asarray([r.scheduled_ns for r in measured], dtype=np.int64)
    plan_err = np.abs((due - due[0]) / NS_PER_MS - np.asarray(offsets_ms[:len(due)]))
    arrival = []
    errors = 0
    for r in measured:
        log = logs.get(prompts[r.index].text)
        if log is None or not r.ok:
            errors += 1
            continue
        arrival.append((log["recv_ns"] - (t0 + r.scheduled_ns)) / NS_PER_MS)
    a = np.asarray(arrival)
    return {
        "rate": rate, "workers": load.client.get("load_workers", 1), "requests": n,
        "errors": errors, "plan_err_max_ms": float(plan_err.max()),
        "arrival_err_p50_ms": float(np.percentile(a, 50)),
        "arrival_err_p99_ms": float(np.percentile(a, 99)),
        "arrival_err_max_ms": float(a.max()),
        "achieved_rps": load.client.get("achieved_send_rate_rps"),
        "scheduled_rps": load.client.get("scheduled_rate_rps"),
        "loop_lag_p99_ms": load.client.get("loop_lag_p99_ms"), "wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", type=float, nargs="+", default=[10, 100, 1000])
    p.add_argument("--seconds", type=float, default=8.0, help="trace length per rate")
    p.add_argument("--min-requests", type=int, default=100)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    proc, url = start_oracle(5.0, 2.0)
    rows = []
    try:
        engine = OpenAIEngine(url)
        with tempfile.TemporaryDirectory() as tmp:
            for rate in args.rates:
                n = max(args.min_requests, int(rate * args.seconds))
                trace = Path(tmp) / f"trace_{rate:g}.jsonl"
                offsets = write_trace(trace, rate, n, seed=int(rate))
                for w in args.workers:
                    rows.append(measure(engine, url, trace, offsets, rate, w))
                    r = rows[-1]
                    print(f"# {rate:g}/s workers={r['workers']}: arrival err p50 "
                          f"{r['arrival_err_p50_ms']:.2f} ms p99 {r['arrival_err_p99_ms']:.2f} "
                          f"ms ({r['wall_s']:.1f} s)", file=sys.stderr)
        engine.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\nMachine: {machine()}; oracle: first token after 5 ms, then one every 2 ms, "
          "4 tokens per request; 24-token prompts.\n")
    print("| trace rate | workers | requests | plan err max | arrival err p50 | arrival err p99 "
          "| arrival err max | sent/s (trace's own) | loop lag p99 | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['rate']:g}/s | {r['workers']} | {r['requests']} "
              f"| {r['plan_err_max_ms']:.3f} ms | {r['arrival_err_p50_ms']:.2f} ms "
              f"| {r['arrival_err_p99_ms']:.2f} ms | {r['arrival_err_max_ms']:.2f} ms "
              f"| {r['achieved_rps'] or 0:.1f} ({r['scheduled_rps'] or 0:.1f}) "
              f"| {r['loop_lag_p99_ms'] or 0:.2f} ms | {r['errors']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
