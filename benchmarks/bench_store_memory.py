"""Time and peak memory of ``llmperf baselines pull`` from a directory store (issue 23, item 20).

Builds directory stores of realistic baseline files (``<profile>/<commit>.json``: runs of
256 requests, each sample with its per-chunk arrival times, the summary ``summarize`` computes,
the provenance a save records) of 1, 10, 100 and 200 MB in two shapes:

- ``one``: the whole size in one baseline file (one commit with many runs);
- ``many``: files of about 1 MB, one per commit (a long history).

and runs each operation as a fresh child process, reading that child's own peak RSS with
``os.wait4`` (``ru_maxrss``) and its wall time:

- ``pull``: ``llmperf baselines pull STORE --dir FRESH`` into an empty directory;
- ``again``: the same pull again, into the now up-to-date directory (nothing new to move);
- ``gate``: what a session's ``--llmperf-store`` does before comparing: the pull into the
  up-to-date directory (``backends.pull_for_gate``), then the baseline of the newest commit
  loaded, as the gate loads it.

Run: ``python benchmarks/bench_store_memory.py`` (``--sizes 1 10``, ``--shapes one``,
``--ops pull``, ``--repeat N`` for the median of N runs, ``--cache DIR`` to keep the generated
stores between runs, by default in the temporary directory). The package measured is the
one the child processes import: to compare two checkouts, run the script twice with
``PYTHONPATH=/path/to/checkout``; the output says which ``pytest_llmperf`` was imported.
Generating the stores takes about two minutes the first time (then they are reused); the
measurements of the default sizes took about 6 minutes with the code before issue 23 and 2
after, on two shared cores (``--sizes 1 10 100`` for a quicker look).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1024 * 1024
SHAPES = ("one", "many")
OPS = ("pull", "again", "gate")
PROFILE_ID = "openai-llama-3-8b-0123456789"
PROFILE = {"engine": {"kind": "openai", "model": "llama-3-8b", "version": "0.6.1"},
           "hardware": {"cpu_cores": 16, "cpu_model": "bench", "gpus": []}}
NODE = "tests/test_chat.py::test_chat[short]"
REQUESTS = 256  # per run
TOKENS = 32  # output tokens per request, one chunk each


def _records(rng: random.Random) -> tuple[list[Any], dict[str, Any]]:
    """One run's samples (RequestRecord) and its summary, from the package's own code."""
    from pytest_llmperf.run.metrics import RequestRecord, summarize

    records = []
    t = 0
    for i in range(REQUESTS):
        send = t + rng.randrange(0, 2_000_000)
        first = send + rng.randrange(40_000_000, 60_000_000)
        chunks = [first]
        for _ in range(TOKENS - 1):
            chunks.append(chunks[-1] + rng.randrange(15_000_000, 25_000_000))
        records.append(RequestRecord(index=i, prompt_tokens=512, send_ns=send, chunk_ns=chunks,
                                     chunk_tokens=[1] * TOKENS, done_ns=chunks[-1] + 1000,
                                     output_tokens=TOKENS))
        t = send + 5_000_000
    return records, summarize(records)


def _run(rng: random.Random, started: str) -> dict[str, Any]:
    records, summary = _records(rng)
    return {
        "summary": summary,
        "samples": [r.to_dict() for r in records],
        "workload": {"input_tokens": 512, "output_tokens": TOKENS, "requests": REQUESTS,
                     "concurrency": 8, "seed": rng.randrange(1 << 30)},
        "engine": {"kind": "openai", "model": "llama-3-8b", "url": "http://127.0.0.1:8000"},
        "warnings": [],
        "started_at": started,
        "client": {"gated": ["ttft_p50_ms", "tpot_p50_ms"], "host": "bench",
                   "pytest_args": ["--llmperf", "tests/test_chat.py"]},
    }


def _doc(commit: str, day: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    stamp = f"2026-01-{1 + day % 28:02d}T00:00:00+00:00"
    return {"schema": "pytest-llmperf/baseline", "schema_version": 1,
            "profile_id": PROFILE_ID, "profile": PROFILE, "commit": commit, "branch": "main",
            "dirty": False, "committed_at": stamp, "saved_at": stamp,
            "tests": {NODE: {"runs": runs, "outcome": "passed", "gate": "ok"}}}


def _write(path: Path, doc: dict[str, Any]) -> int:
    text = json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def build(root: Path, size_mb: float, shape: str) -> dict[str, Any]:
    """A directory store of about ``size_mb`` MB; its description (files, bytes, newest
    commit)."""
    marker = root / ".bench.json"
    if marker.exists():
        return json.loads(marker.read_text())
    if root.exists():
        shutil.rmtree(root)
    (root / PROFILE_ID).mkdir(parents=True)
    rng = random.Random(f"{size_mb}-{shape}")
    sample = _doc("0" * 40, 0, [_run(rng, "2026-01-01T00:00:00+00:00")])
    one_run = len(json.dumps(sample, sort_keys=True, indent=1)) - len(
        json.dumps(_doc("0" * 40, 0, []), sort_keys=True, indent=1))
    target = size_mb * MB
    per_file = target if shape == "one" else min(target, MB)
    runs_per_file = max(1, round(per_file / one_run))
    total, files, commit, serial = 0, 0, "", 0
    while total < target * 0.97:
        serial += 1
        commit = f"{serial:08x}" + "ab" * 16
        runs = []
        for k in range(runs_per_file):
            runs.append(_run(rng, f"2026-01-01T{serial % 24:02d}:{k // 60 % 60:02d}:"
                                  f"{k % 60:02d}.{serial:06d}+00:00"))
        total += _write(root / PROFILE_ID / f"{commit}.json", _doc(commit, serial, runs))
        files += 1
    info = {"files": files, "bytes": total, "newest": commit,
            "largest": max(f.stat().st_size for f in (root / PROFILE_ID).iterdir())}
    marker.write_text(json.dumps(info))
    return info


GATE = """
import sys
from pathlib import Path
from pytest_llmperf.store.backends import pull_for_gate
from pytest_llmperf.store.baselines import BaselineStore
store, local, profile, commit = sys.argv[1:]
lines = pull_for_gate(store, Path(local), None)
b = BaselineStore(local).load(profile, commit)
print(lines[0], b.n_runs)
"""


def measure(python: str, args: list[str], env: dict[str, str], cwd: Path
            ) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the child, and its output. ``cwd``: outside any
    checkout, so that ``-m`` imports the package from PYTHONPATH, not from the directory."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([python, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}\n{text}")
    return wall, usage.ru_maxrss / 1024, text  # ru_maxrss is KiB on Linux


def _build_in_child(python: str, env: dict[str, str], store: Path, size: float, shape: str
                    ) -> dict[str, Any]:
    """``build`` in a child process: this one stays small, since a child's peak RSS counts
    the memory of the process it was forked from."""
    subprocess.run([python, __file__, "--build", str(store), f"{size:g}", shape], env=env,
                   check=True, cwd=tempfile.gettempdir())
    return dict(json.loads((store / ".bench.json").read_text()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--build"]:
        build(Path(argv[1]), float(argv[2]), argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1, 10, 100, 200],
                    help="store sizes in MB (default 1 10 100 200)")
    ap.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    ap.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure (the median)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "llmperf-bench-store"),
                    help="where the generated stores are kept between runs")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args(argv)
    env = dict(os.environ)
    where = subprocess.run([args.python, "-c", "import pytest_llmperf as p; print(p.__file__)"],
                           capture_output=True, text=True, env=env, check=True,
                           cwd=tempfile.gettempdir()).stdout.strip()
    print(f"pytest_llmperf: {where}")
    print(f"python: {args.python}")
    cache = Path(args.cache)
    print("| store | shape | files | largest file | operation | wall s | peak RSS MiB |")
    print("|---:|:---|---:|---:|:---|---:|---:|")
    for size in args.sizes:
        for shape in args.shapes:
            store = cache / f"store-{size:g}mb-{shape}"
            info = _build_in_child(args.python, env, store, size, shape)
            work = Path(tempfile.mkdtemp(prefix="llmperf-bench-pull-"))
            try:
                figures = _ops(args, env, store, work, info)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for op, (wall, rss) in figures.items():
                print(f"| {info['bytes'] / MB:.0f} MB | {shape} | {info['files']} | "
                      f"{info['largest'] / MB:.1f} MB | {op} | {wall:.2f} | {rss:.0f} |",
                      flush=True)
    return 0


def _ops(args: argparse.Namespace, env: dict[str, str], store: Path, work: Path,
         info: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The median (wall, peak RSS) of each operation."""
    runs: dict[str, list[tuple[float, float]]] = {op: [] for op in args.ops}
    pull = ["-m", "pytest_llmperf.cli", "baselines", "pull", str(store), "--dir"]
    for _ in range(args.repeat):
        local = work / "local"
        shutil.rmtree(local, ignore_errors=True)
        wall, rss, _ = measure(args.python, [*pull, str(local)], env, work)
        if "pull" in runs:
            runs["pull"].append((wall, rss))
        if "again" in runs:
            wall, rss, text = measure(args.python, [*pull, str(local)], env, work)
            assert "nothing" in text, text
            runs["again"].append((wall, rss))
        if "gate" in runs:
            wall, rss, _ = measure(args.python, ["-c", GATE, str(store), str(local), PROFILE_ID,
                                                 info["newest"]], env, work)
            runs["gate"].append((wall, rss))
    return {op: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v))
            for op, v in runs.items()}


if __name__ == "__main__":
    sys.exit(main())
