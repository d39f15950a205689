"""How much does our own client add to what it measures?

Starts the test oracle (``python -m pytest_llmperf.testing.oracle``) as a separate process: it sends
the first token ``--ttft-ms`` after reading a request and then one token every ``--itl-ms``,
and logs when each send really went out. Our load generator and HTTP engine then run
closed-loop at each concurrency against it. Both processes stamp times with the same
system-wide monotonic clock, so per request:

- TTFT error = measured TTFT (client send -> first chunk read) minus the true TTFT (server read
  the request -> server wrote the first token);
- ITL error = each measured gap between chunks minus the gap between the server's writes.

With ``--workers 1 2`` each concurrency is measured with one load-generator process and with
two (``--llmperf-load-workers 2``: the connections spread over two processes, every
timestamp on the same monotonic clock, the records merged); the table has a workers column.

Run: ``python benchmarks/client_fidelity.py`` (add ``--concurrency 1 8 32`` for a subset).
Prints a Markdown table; ``--json FILE`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_llmperf.engines import http_client
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.loadgen import run_load
from pytest_llmperf.run.metrics import NS_PER_MS
from pytest_llmperf.run.workload import Workload, build_prompts


def start_oracle(ttft_ms: float, itl_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_llmperf.testing.oracle", "--ttft-ms", str(ttft_ms),
         "--itl-ms", str(itl_ms)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the oracle did not start (got {url!r})")
    return proc, url


def http(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def machine() -> str:
    """This machine in one phrase: CPU model, cores, the 1-minute load and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores (shared; 1-min load {os.getloadavg()[0]:.1f}), "
            f"Python {platform.python_version()}")


def measure(engine: OpenAIEngine, url: str, concurrency: int, requests: int,
            output_tokens: int, seed: int, workers: int = 1) -> dict[str, Any]:
    workload = Workload(input_tokens=64, output_tokens=output_tokens, requests=requests,
                        warmup=concurrency, concurrency=concurrency, seed=seed)
    prompts = build_prompts(engine.tokenizer, workload)
    http(url + "/oracle/reset", "POST")
    t0 = time.perf_counter()
    load = asyncio.run(run_load(engine, prompts, workload, workers=workers))
    wall = time.perf_counter() - t0
    logs = {log["prompt"]: log for log in http(url + "/oracle/logs")}
    ttft_err: list[float] = []
    itl_err: list[float] = []
    late: list[float] = []
    up: list[float] = []
    down: list[float] = []
    tokens = 0
    errors = 0
    for rec in load.records:
        if rec.warmup:
            continue
        if not rec.ok:
            errors += 1
            continue
        log = logs[prompts[rec.index].text]
        # Durations on each side: no clock alignment needed.
        measured_ttft = rec.ttft_ns
        true_ttft = log["sent_ns"][0] - log["recv_ns"]
        assert measured_ttft is not None
        ttft_err.append((measured_ttft - true_ttft) / NS_PER_MS)
        t0 = load.client["t0_ns"]
        up.append((log["recv_ns"] - (t0 + rec.send_ns)) / NS_PER_MS)
        down.append(((t0 + rec.chunk_ns[0]) - log["sent_ns"][0]) / NS_PER_MS)
        gaps_client = np.diff(np.asarray(rec.chunk_ns, dtype=np.int64))
        gaps_server = np.diff(np.asarray(log["sent_ns"], dtype=np.int64))
        n = min(len(gaps_client), len(gaps_server))
        itl_err.extend(((gaps_client[:n] - gaps_server[:n]) / NS_PER_MS).tolist())
        late.extend((s - p) / NS_PER_MS
                    for s, p in zip(log["sent_ns"], log["scheduled_ns"], strict=False))
        tokens += rec.n_output
    window = load.client["measured_window_s"]
    return {
        "concurrency": concurrency,
        "workers": load.client.get("load_workers", 1),
        "requests": requests,
        "errors": errors,
        "ttft_err_p50_ms": float(np.percentile(ttft_err, 50)),
        "ttft_err_p99_ms": float(np.percentile(ttft_err, 99)),
        "itl_err_p50_ms": float(np.percentile(itl_err, 50)),
        "itl_err_p99_ms": float(np.percentile(itl_err, 99)),
        "request_path_p50_ms": float(np.percentile(up, 50)),
        "response_path_p50_ms": float(np.percentile(down, 50)),
        "server_late_p50_ms": float(np.percentile(late, 50)),
        "server_late_p99_ms": float(np.percentile(late, 99)),
        "tokens_per_s": tokens / window if window else None,
        "loop_lag_p99_ms": load.client["loop_lag_p99_ms"],
        "wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128, 256])
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--output-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="requests = rounds x concurrency")
    p.add_argument("--min-requests", type=int, default=24)
    p.add_argument("--workers", type=int, nargs="+", default=[1],
                   help="load-generator processes (one row per concurrency and count)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--transports", action="store_true",
                   help="read plain-TCP connections through asyncio transports (as TLS ones "
                        "are) instead of the client's epoll poller")
    args = p.parse_args()
    if args.transports:  # before any engine or load worker exists
        os.environ["LLMPERF_HTTP_POLLER"] = "0"
        http_client.USE_POLLER = False
    proc, url = start_oracle(args.ttft_ms, args.itl_ms)
    rows = []
    try:
        engine = OpenAIEngine(url)
        for c in args.concurrency:
            for w in args.workers:
                rows.append(measure(engine, url, c, max(args.min_requests, args.rounds * c),
                                    args.output_tokens, seed=c, workers=w))
                r = rows[-1]
                print(f"# c={c} workers={r['workers']}: TTFT err p50 "
                      f"{r['ttft_err_p50_ms']:+.2f} ms, ITL err p50 "
                      f"{r['itl_err_p50_ms']:+.3f} ms; request path p50 "
                      f"{r['request_path_p50_ms']:.2f} ms, response path p50 "
                      f"{r['response_path_p50_ms']:.2f} ms ({r['wall_s']:.1f} s)", file=sys.stderr)
        engine.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\nMachine: {machine()}; oracle: first token after {args.ttft_ms:g} ms, then "
          f"one every {args.itl_ms:g} ms, {args.output_tokens} tokens per request.\n")
    print("| concurrency | workers | requests | TTFT err p50 | TTFT err p99 | ITL err p50 "
          "| ITL err p99 | server late p50/p99 | tokens/s | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['workers']} | {r['requests']} "
              f"| {r['ttft_err_p50_ms']:+.2f} ms "
              f"| {r['ttft_err_p99_ms']:+.2f} ms | {r['itl_err_p50_ms']:+.3f} ms "
              f"| {r['itl_err_p99_ms']:+.2f} ms | {r['server_late_p50_ms']:.2f} / "
              f"{r['server_late_p99_ms']:.2f} ms | {r['tokens_per_s']:.0f} | {r['errors']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
