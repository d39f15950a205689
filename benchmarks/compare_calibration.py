"""Calibrate ``llmperf compare`` on the real embedded engine: A/A false alarms, 10% detection.

Usage::

    .venv/bin/python benchmarks/compare_calibration.py                 # record + live + analyse
    .venv/bin/python benchmarks/compare_calibration.py --analyse-only  # re-analyse the pool

What it does, exactly:

1. Builds a git repository under a temporary directory holding a one-test suite on the
   embedded default engine (Gemma 3 270M Q4_K_M on llama.cpp, ``llm_engine`` with
   ``--llmperf-threads 1``; one run = ``--requests`` requests of 32 prompt and 16 output tokens
   plus the plugin's warm-up) and three commits:
   ``A`` (the base), ``A2`` (``A`` plus a comment: the same code) and ``S10`` (its conftest
   wraps the engine in ``SlowEngine``, which after every token spins the engine's own thread
   for 10% of the time that token took, as if the engine did that much more work; the same
   wrapper as ``gate_calibration.py``).
2. Records a pool of real whole pytest sessions, exactly as ``llmperf compare`` runs them
   (``bisect.run_session``: ``python -m pytest --llmperf --llmperf-json ...`` in each commit's
   ``git worktree``): ``--cycles`` cycles, each running one session of ``A``, ``A2`` and
   ``S10`` in an order that rotates through the 6 permutations, so each side goes first as
   often as the other. Each session's results are appended to ``--pool`` as they come.
3. Runs real end-to-end ``llmperf compare`` commands (``--live`` of each: ``A`` vs ``A2`` and
   ``A`` vs ``S10``, ``--live-pairs`` pairs, alpha 0.01, the default 5% tolerance).
4. Estimates the rates by resampling the pool (hundreds of live comparisons are out of reach
   on 2 shared cores): a trial draws ``pairs`` distinct cycles without replacement, pair i
   being (``A``, ``A2``) or (``A``, ``S10``) of one cycle, and decides with the command's own
   code (``bisect.judge``: the exact sign-flip test joint over ``ttft_p50_ms``,
   ``tpot_p50_ms`` and ``output_tps``, alpha split over the tests, tolerance 5%). A trial
   alarms when a gated metric is flagged. Rates come with 95% Wilson intervals over the
   trials; trials share sessions (``pairs`` of ``--cycles`` each), so the intervals describe
   the resampling of this pool, not fresh machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from itertools import permutations
from pathlib import Path
from typing import Any

import git as gitpython
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rates import rate  # noqa: E402  (benchmarks/rates.py)

from pytest_llmperf.commits import bisect  # noqa: E402

METRICS = ("ttft_p50_ms", "tpot_p50_ms", "output_tps")
KEPT = (*METRICS, "ttft_p95_ms", "e2e_p50_ms", "duration_s")
CONDITIONS = ("A", "A2", "S10")
NODEID = "test_chat.py::test_chat"

CONFTEST = '''
"""The engine of the suite: the embedded default, slowed by FRACTION of every token's time."""

import time

import pytest

from pytest_llmperf.engines.base import Engine

FRACTION = {fraction}


class SlowEngine(Engine):
    """The wrapped engine, every token held back by ``fraction`` of the time it took."""

    def __init__(self, inner, fraction):
        self.inner = inner
        self.fraction = fraction
        self.kind = inner.kind
        self.max_concurrency = inner.max_concurrency
        self.stamps_on_loop = inner.stamps_on_loop
        self.load_s = inner.load_s

    @property
    def tokenizer(self):
        return self.inner.tokenizer

    def info(self):
        return self.inner.info()

    async def generate(self, prompt, params, on_chunk):
        last = time.perf_counter_ns()
        frac = self.fraction

        def slowed(t_ns, n):
            nonlocal last
            target = t_ns + int((t_ns - last) * frac)
            while time.perf_counter_ns() < target:
                pass  # the engine's thread keeps its core busy, as more work would
            last = time.perf_counter_ns()
            on_chunk(last, n)

        return await self.inner.generate(prompt, params, slowed)

    def close(self):
        self.inner.close()


@pytest.fixture
def engine(llm_engine):
    return SlowEngine(llm_engine, FRACTION) if FRACTION > 0 else llm_engine
'''

TEST_FILE = '''
from pytest_llmperf import Workload, llmperf


@llmperf()
def test_chat(llmperf_bench, engine):
    llmperf_bench(engine, Workload(input_tokens=32, output_tokens=16, requests={requests}))
'''


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(base: Path, requests: int) -> dict[str, str]:
    """The repository and its three commits; returns condition -> commit id."""
    root = base / "repo"
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "calibration@example.invalid")
    git(root, "config", "user.name", "calibration")
    (root / "test_chat.py").write_text(textwrap.dedent(TEST_FILE.format(requests=requests)))
    shas: dict[str, str] = {}
    for cond, fraction, extra in (("A", 0.0, ""), ("A2", 0.0, "# the same code\n"),
                                  ("S10", 0.10, "# the same code\n")):
        (root / "conftest.py").write_text(extra + textwrap.dedent(
            CONFTEST.format(fraction=fraction)))
        git(root, "add", "-A")
        git(root, "commit", "-q", "--allow-empty", "-m", f"{cond}: slowdown {fraction:g}")
        shas[cond] = git(root, "rev-parse", "HEAD")
    return shas


def load_pool(path: Path) -> dict[str, Any]:
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {"sessions": [], "live": []}


def save_pool(path: Path, pool: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pool, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, path)


def record(args: argparse.Namespace, root: Path, shas: Mapping[str, str],
           pool: dict[str, Any], deadline: float) -> None:
    repo = gitpython.Repo(root)
    commits = {c: bisect.Commit(sha, c) for c, sha in shas.items()}
    orders = list(permutations(CONDITIONS))
    pytest_args = ["test_chat.py", "--llmperf-threads", str(args.threads)]
    start = len({s["cycle"] for s in pool["sessions"]})
    with tempfile.TemporaryDirectory(prefix="llmperf-compare-cal-") as tmp:
        trees = bisect.Worktrees(repo, Path(tmp))
        try:
            for cycle in range(start, start + args.cycles):
                if time.monotonic() > deadline:
                    print(f"record: time budget spent after {cycle - start} cycles", flush=True)
                    break
                for k, cond in enumerate(orders[cycle % len(orders)]):
                    t0 = time.time()
                    found = bisect.run_session(sys.executable, trees.get(commits[cond]),
                                               pytest_args, Path(tmp) / "r.json",
                                               commits[cond])
                    point = found[NODEID]
                    pool["sessions"].append({
                        "cycle": cycle, "condition": cond, "position": k,
                        "wall_s": round(time.time() - t0, 2),
                        "load1": round(os.getloadavg()[0], 2),
                        "summary": {m: point.summary.get(m) for m in KEPT}})
                save_pool(args.pool, pool)
                last = pool["sessions"][-3:]
                print(f"cycle {cycle + 1}: " + ", ".join(
                    f"{s['condition']} tpot {s['summary']['tpot_p50_ms']:.1f} ms "
                    f"({s['wall_s']:.1f} s)" for s in last)
                    + f", load {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            trees.close()


def live(args: argparse.Namespace, root: Path, shas: Mapping[str, str],
         pool: dict[str, Any]) -> None:
    """Real ``llmperf compare`` commands, end to end."""
    for _ in range(args.live):
        for cond in ("A2", "S10"):
            out = root.parent / f"live-{cond}.json"
            cmd = [sys.executable, "-m", "pytest_llmperf.cli", "compare", shas["A"],
                   shas[cond], "--pairs", str(args.live_pairs), "--alpha", "0.01",
                   "--json", str(out), "--", "test_chat.py", "--llmperf-threads",
                   str(args.threads)]
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
            wall = time.time() - t0
            if proc.returncode not in (0, 1):
                print(f"live {cond}: exit {proc.returncode}: {proc.stderr[-2000:]}")
                continue
            doc = json.loads(out.read_text())
            metrics = doc["tests"][NODEID]["metrics"]
            entry = {"condition": cond, "exit": proc.returncode, "verdict": doc["verdict"],
                     "pairs": doc["pairs"], "wall_s": round(wall, 1),
                     "load1": round(os.getloadavg()[0], 2),
                     "metrics": {m["metric"]: {k: m[k] for k in (
                         "change_pct", "ci_low_pct", "ci_high_pct", "p_value", "verdict")}
                         for m in metrics if m["metric"] in METRICS}}
            pool["live"].append(entry)
            save_pool(args.pool, pool)
            print(f"live A vs {cond}: exit {proc.returncode} ({doc['verdict']}) in {wall:.0f} s",
                  flush=True)


def cycles(pool: Mapping[str, Any]) -> dict[int, dict[str, dict[str, Any]]]:
    """cycle -> condition -> summary, complete cycles only."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for s in pool["sessions"]:
        out.setdefault(s["cycle"], {})[s["condition"]] = s["summary"]
    return {c: v for c, v in out.items() if set(v) == set(CONDITIONS)}


def _point(summary: Mapping[str, Any]) -> dict[str, bisect.DataPoint]:
    return {NODEID: bisect.DataPoint(summary=dict(summary), thresholds={}, runs=1)}


def trials(full: Mapping[int, Mapping[str, Mapping[str, Any]]], cond: str, pairs: int,
           alpha: float, n: int, rng: random.Random) -> tuple[int, int]:
    """(alarms, trials) of ``bisect.judge`` on ``pairs`` cycles drawn without replacement."""
    keys = sorted(full)
    alarms = 0
    for _ in range(n):
        drawn = rng.sample(keys, pairs)
        ref = [_point(full[c]["A"]) for c in drawn]
        cand = [_point(full[c][cond]) for c in drawn]
        verdicts, _, _ = bisect.judge(ref, cand, alpha=alpha)
        alarms += any(v.gated and v.verdict == "regression" for v in verdicts[NODEID])
    return alarms, n


def analyse(pool: Mapping[str, Any], args: argparse.Namespace) -> None:
    full = cycles(pool)
    sessions = [s for s in pool["sessions"] if s["cycle"] in full]
    if len(full) < 10:
        print(f"only {len(full)} complete cycles: record more")
        return
    loads = [s["load1"] for s in sessions]
    walls = [s["wall_s"] for s in sessions]
    print(f"\npool: {len(full)} complete cycles, {len(sessions)} sessions, session wall "
          f"{np.median(walls):.1f} s median, load1 {min(loads):.1f}-{max(loads):.1f}")
    print("\nmeasured per pair (geometric mean of X/A over the cycles, sd of the log-ratio):")
    print("| metric | A/A (A2 vs A) | S10 vs A |")
    print("|---|---:|---:|")
    for m in METRICS:
        cells = []
        for cond in ("A2", "S10"):
            r = np.log([full[c][cond][m] / full[c]["A"][m] for c in sorted(full)])
            cells.append(f"{math.expm1(r.mean()) * 100:+.1f}% (sd {r.std(ddof=1) * 100:.1f}%)")
        print(f"| {m} | {cells[0]} | {cells[1]} |")
    a = np.array([[full[c]["A"][m] for c in sorted(full)] for m in METRICS])
    cv = np.std(np.log(a), axis=1, ddof=1) * 100
    print("session-to-session spread of A (sd of log): "
          + ", ".join(f"{m} {v:.1f}%" for m, v in zip(METRICS, cv, strict=True)))
    rng = random.Random(args.seed)
    print(f"\nresampled ({args.trials} trials per row; tolerance 5%, one test):")
    print("| pairs | alpha | A/A false alarms | 10% slower detected |")
    print("|---:|---:|---:|---:|")
    for pairs, alpha in ((7, 0.01), (10, 0.01), (10, 0.05), (20, 0.01)):
        if pairs > len(full):
            continue
        fa = trials(full, "A2", pairs, alpha, args.trials, rng)
        det = trials(full, "S10", pairs, alpha, args.trials, rng)
        print(f"| {pairs} | {alpha:g} | {rate(*fa)} | {rate(*det)} |")
    if pool.get("live"):
        print("\nlive end-to-end llmperf compare runs:")
        print("| comparison | exit | verdict | pairs | wall | ttft_p50_ms | tpot_p50_ms | "
              "output_tps |")
        print("|---|---:|---|---:|---:|---|---|---|")
        for e in pool["live"]:
            cells = [f"{v['change_pct']:+.1f}% [{v['ci_low_pct']:+.1f}, {v['ci_high_pct']:+.1f}]"
                     f", p {v['p_value']:.3g}" for v in (e["metrics"][m] for m in METRICS)]
            print(f"| A vs {e['condition']} | {e['exit']} | {e['verdict']} | {e['pairs']} | "
                  f"{e['wall_s']:.0f} s | " + " | ".join(cells) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pool", type=Path, default=Path("/tmp/llmperf-compare-pool.json"),
                   help="the recorded sessions (appended to; default %(default)s)")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--cycles", type=int, default=30, help="cycles of A, A2, S10 to record")
    p.add_argument("--budget-s", type=float, default=1200, help="stop recording after this")
    p.add_argument("--live", type=int, default=1, help="live compares of each kind")
    p.add_argument("--live-pairs", type=int, default=7)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    pool = load_pool(args.pool)
    if not args.analyse_only:
        deadline = time.monotonic() + args.budget_s
        with tempfile.TemporaryDirectory(prefix="llmperf-compare-cal-") as tmp:
            shas = make_repo(Path(tmp), args.requests)
            if args.cycles > 0:
                record(args, Path(tmp) / "repo", shas, pool, deadline)
            if args.live > 0:
                live(args, Path(tmp) / "repo", shas, pool)
    analyse(pool, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
