"""What interleaving by request gains over interleaving by session, for served engines.

Usage::

    .venv/bin/python benchmarks/served_interleave.py [--reps 3] [--slowdown-pct 10] \
        [--drift-pct 20 --drift-period-s 20]

What it does, exactly: a git repository under a temporary directory holds ``serve.py`` (the
known-schedule oracle server of ``pytest_llmperf.testing.oracle``, TTFT 5 ms, ITL read from
``itl.json``; with ``--drift-pct`` both its TTFT and ITL are scaled by ``1 + d sin(2 pi t /
period)`` on the wall clock, every server of the machine alike: a known machine drift, as a
neighbour's load would make) and one test (``gate=["tpot_p50_ms"]``, 3 requests of 8 prompt and 6
output tokens). Commit ``A``: 5 ms per token; commit ``S``: ``--slowdown-pct`` slower per
token. Then, ``--reps`` times each, the real command in both modes, A/A (``A`` vs ``A``) and
the slowdown (``A`` vs ``S``), alpha 0.05:

- **session**: ``llmperf compare A S --pairs P -- --llmperf-server-cmd "python serve.py --port
  {port}"``: 2P whole pytest sessions in the two worktrees, each starting its own server;
- **request**: ``llmperf compare A S --served "python serve.py --port {port}"``: both servers
  side by side, ONE session sending every request to both (5 to 10 pairs).

Printed per mode and case: the verdicts, the median measured change of tpot_p50_ms against the
truth, the median width of its interval, and the median wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SERVER = """
import asyncio, json, math, sys, time
from dataclasses import replace
from pytest_llmperf.testing.oracle import OracleConfig, _Oracle

cfg = json.load(open("itl.json"))
port = int(sys.argv[sys.argv.index("--port") + 1])
base = OracleConfig(ttft_ms=5, itl_ms=cfg["itl_ms"])


async def main():
    oracle = _Oracle(base)

    async def drift():  # the machine's speed, the same for every server on it
        while True:
            f = 1 + cfg["drift"] * math.sin(2 * math.pi * time.time() / cfg["period_s"])
            oracle.config = replace(base, ttft_ms=base.ttft_ms * f, itl_ms=base.itl_ms * f)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(drift())
    server = await asyncio.start_server(oracle.handle, "127.0.0.1", port)
    print(f"http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()
    task.cancel()


asyncio.run(main())
"""
TEST = """
import pytest
from pytest_llmperf import Workload

@pytest.mark.llmperf(gate=["tpot_p50_ms"])
def test_decode(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=6, requests=3))
"""


def git(root: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com",
           "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def make_repo(root: Path, slowdown_pct: float, drift_pct: float,
              period_s: float) -> tuple[str, str]:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "serve.py").write_text(textwrap.dedent(SERVER))
    (root / "test_served.py").write_text(textwrap.dedent(TEST))
    shas = []
    for itl in (5.0, 5.0 * (1 + slowdown_pct / 100)):
        (root / "itl.json").write_text(json.dumps({"itl_ms": itl, "drift": drift_pct / 100,
                                                   "period_s": period_s}))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"itl {itl} ms")
        shas.append(git(root, "rev-parse", "HEAD"))
    return shas[0], shas[1]


def one(root: Path, mode: str, base: str, head: str, pairs: int, out: Path) -> dict[str, float]:
    server = f"{sys.executable} serve.py --port {{port}}"
    cmd = [sys.executable, "-m", "pytest_llmperf.cli", "compare", base, head, "--alpha", "0.05",
           "--json", str(out)]
    if mode == "request":
        cmd += ["--served", server, "--", "test_served.py"]
    else:
        cmd += ["--pairs", str(pairs), "--", "test_served.py", "--llmperf-server-cmd", server]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    doc = json.loads(out.read_text())
    (test,) = doc["tests"].values()
    m = next(v for v in test["metrics"] if v["metric"] == "tpot_p50_ms")
    return {"alarm": float(proc.returncode == 1), "change": m["change_pct"],
            "width": m["ci_high_pct"] - m["ci_low_pct"], "wall": wall,
            "pairs": float(doc["pairs"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--pairs", type=int, default=6, help="session mode's --pairs")
    p.add_argument("--slowdown-pct", type=float, default=10.0)
    p.add_argument("--drift-pct", type=float, default=0.0,
                   help="the machine's speed drifts by +-this (a sine on the wall clock, the "
                        "same for both servers, like a neighbour's load)")
    p.add_argument("--drift-period-s", type=float, default=20.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmperf-served-bench-") as tmp:
        root = Path(tmp) / "repo"
        a, s = make_repo(root, args.slowdown_pct, args.drift_pct, args.drift_period_s)
        print(f"oracle: TTFT 5 ms, 5 ms per token at A, S {args.slowdown_pct:g}% slower; "
              f"machine drift +-{args.drift_pct:g}% over {args.drift_period_s:g} s")
        print(f"{'mode':8} {'case':9} {'alarms':>7} {'pairs':>5} {'change (truth)':>16} "
              f"{'interval width':>15} {'wall s':>7}")
        for mode in ("request", "session"):
            for case, head, truth in (("A/A", a, 0.0), ("slowdown", s, args.slowdown_pct)):
                runs = [one(root, mode, a, head, args.pairs, Path(tmp) / "c.json")
                        for _ in range(args.reps)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                alarms = sum(int(r["alarm"]) for r in runs)
                print(f"{mode:8} {case:9} {alarms:>3}/{len(runs):<3} {med['pairs']:>5.0f} "
                      f"{med['change']:>+8.1f}% ({truth:+.0f}%) {med['width']:>14.1f}% "
                      f"{med['wall']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
