"""Time and peak memory of ``llmperf report`` on big results files (issue 23, item 20).

For each size (MB, default 1 10 100 200) it writes one results file the way a session does:
synthetic request records (a warm-up request, then requests of 128 output tokens streamed
one token a chunk, a few chunks of two), each run summarised by ``run.metrics.summarize``,
tests of three runs (``results.TestRecord``), the document made by
``results.results_document`` with its provenance and written by ``files.dumps`` (the
``--llmperf-json`` writer), as many tests as the size needs. Then, each in a fresh process
(``python -m pytest_llmperf.cli report --json FILE ...``), it runs the command with
``--html OUT``, ``--markdown OUT`` and ``--merged OUT`` (the command has no terminal output of
its own: it writes at least one of these), and prints each run's wall time, CPU time (user
+ system: steadier than the wall time on a shared machine) and peak RSS (of that child
alone: ``os.wait4``), the ratio of the peak to the (largest) file's size, and the exit
status.

Run: ``python benchmarks/bench_report_memory.py [SIZE_MB ...]`` (``--outputs html`` for
one output; ``--keep DIR`` keeps the files there and reuses them in the next run). The
children import ``pytest_llmperf`` from ``PYTHONPATH`` as this process would; to compare two
checkouts, run it once with each on ``PYTHONPATH`` (the first line printed names the package
the children import). They run in a temporary directory outside any git repository, so no
``baselines/`` is read. ``--shards N``: each size is N files, the shards of one run,
merged by one command (the peak is then compared to the largest file).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_llmperf.run.metrics import RequestRecord, RunResult

# The package is imported by the child that writes a file (``--write``), never by the parent:
# a child's peak RSS counts what it shares with its parent at the fork, so the parent stays
# small (no document, no numpy).

OUTPUT_TOKENS = 128
RUNS_PER_TEST = 3
REQUESTS_PER_RUN = 200  # at most: a small file gets fewer
OUTPUTS = ("html", "markdown", "merged")
SUFFIX = {"html": "html", "markdown": "md", "merged": "json"}
WORKLOAD = {"arrival": "poisson", "concurrency": 4, "input_tokens": 256,
            "output_tokens": OUTPUT_TOKENS, "rate": None, "requests": REQUESTS_PER_RUN,
            "warmup": 1, "slo": {}, "seed": 0, "temperature": 0.0}
ENGINE = {"kind": "openai", "version": "0.8.1", "model": "bench-model",
          "model_desc": "bench model Q4", "url": "http://127.0.0.1:8000/v1",
          "settings": {"n_threads": 4}}


def _record(rng: random.Random, index: int, send_ms: float, warmup: bool) -> RequestRecord:
    from pytest_llmperf.run.metrics import NS_PER_MS, RequestRecord
    ttft = rng.uniform(20.0, 80.0)
    chunk_ns: list[int] = []
    chunk_tokens: list[int] = []
    t = send_ms + ttft
    tokens = 0
    while tokens < OUTPUT_TOKENS:
        k = 2 if rng.random() < 0.05 and tokens + 2 <= OUTPUT_TOKENS else 1
        chunk_ns.append(int(t * NS_PER_MS))
        chunk_tokens.append(k)
        tokens += k
        t += rng.uniform(4.0, 9.0) * k
    return RequestRecord(index=index, prompt_tokens=256, warmup=warmup,
                         send_ns=int(send_ms * NS_PER_MS), chunk_ns=chunk_ns,
                         chunk_tokens=chunk_tokens, done_ns=chunk_ns[-1] + 200_000,
                         output_tokens=tokens)


def make_run(rng: random.Random, requests: int, started_at: str) -> RunResult:
    from pytest_llmperf.run.metrics import RunResult, summarize
    records = [_record(rng, 0, 0.0, warmup=True)]
    records += [_record(rng, i, 1000.0 + i * 250.0, warmup=False) for i in range(1, requests + 1)]
    return RunResult(summary=summarize(records), samples=records,
                     workload={**WORKLOAD, "requests": requests}, engine=dict(ENGINE),
                     warnings=[], started_at=started_at,
                     client={"concurrency": 4, "cpu_cores": 4, "checks": []})


def make_document(target_bytes: int, shard: tuple[int, int] | None = None) -> str:
    """A results document of about ``target_bytes`` (as ``--llmperf-json`` writes it);
    ``shard`` (INDEX, COUNT): shard INDEX's file of a run split in COUNT (its own tests)."""
    from pytest_llmperf.files import dumps
    from pytest_llmperf.report.provenance import make_provenance
    from pytest_llmperf.results import TestRecord, results_document
    rng = random.Random(shard[0] if shard else 0)
    provenance = make_provenance(commit="c0ffee" * 6 + "c0ff", branch="main", dirty=False,
                                 profiles=["openai-bench-model-0123456789"], shard=shard,
                                 run_id="bench", host="bench", started_at="2026-12-01T00:00:00Z")
    one = TestRecord(nodeid="t", outcome="passed", thresholds={}, runs=[make_run(rng, 40, "")])
    probe = len(dumps(results_document([one], provenance))) / 40  # bytes per request
    requests = max(5, min(REQUESTS_PER_RUN, int(target_bytes / probe / RUNS_PER_TEST)))
    test_bytes = probe * requests * RUNS_PER_TEST
    n_tests = max(1, round(target_bytes / test_bytes))
    # A pool of distinct runs, cycled over the tests (the file holds every test's own copy).
    pool = [make_run(rng, requests, f"2026-12-01T00:{i // 60:02d}:{i % 60:02d}Z")
            for i in range(min(6, RUNS_PER_TEST * n_tests))]
    tests = []
    for t in range(n_tests):
        runs = [pool[(t * RUNS_PER_TEST + r) % len(pool)] for r in range(RUNS_PER_TEST)]
        nodeid = f"tests/test_serving.py::test_load[{shard[0] if shard else 0}-{t}]"
        tests.append(TestRecord(nodeid=nodeid, outcome="passed",
                                thresholds={"ttft_p95_ms": 500}, runs=runs, key=nodeid))
    return dumps(results_document(tests, provenance,
                                  hardware={"cpu_model": "bench", "cpu_cores": 4}))


def measure(argv: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """(wall s, CPU s (user + system), peak RSS MB of this child alone, exit status, stderr's
    last line)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    lines = err.strip().splitlines()
    cpu = usage.ru_utime + usage.ru_stime
    return (wall, cpu, usage.ru_maxrss * 1024 / 1_000_000, proc.returncode,
            lines[-1] if lines else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=float, default=[1, 10, 100, 200],
                        help="results file sizes in MB (default: 1 10 100 200)")
    parser.add_argument("--outputs", nargs="+", choices=OUTPUTS, default=list(OUTPUTS),
                        help="which outputs to time, each in its own run (default: all)")
    parser.add_argument("--shards", type=int, default=1, metavar="N",
                        help="N files of each size, the shards of one run, merged by one "
                             "command (default: 1, one file)")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the files here, keep them, and reuse them in a later run")
    parser.add_argument("--write", metavar="PATH",
                        help="(internal) only write one results file of the size given here")
    parser.add_argument("--shard", metavar="I/N", help="(internal) with --write: shard I of N")
    args = parser.parse_args(argv)
    if args.write:
        index, count = map(int, args.shard.split("/")) if args.shard else (0, 0)
        shard = (index, count) if args.shard else None
        Path(args.write).write_text(make_document(int(args.sizes[0] * 1_000_000), shard),
                                    encoding="utf-8")
        return 0
    python = sys.executable
    where = subprocess.run([python, "-c", "import pytest_llmperf; print(pytest_llmperf.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"pytest_llmperf imported by the children: {where}")
    print(f"{'size MB':>8} {'files':>5} {'output':>9} {'wall s':>8} {'CPU s':>7} "
          f"{'peak RSS MB':>12} {'RSS/file':>9} {'exit':>5}")
    with tempfile.TemporaryDirectory(prefix="llmperf-bench-report-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            paths = _files(python, root, size, args.shards, reuse=bool(args.keep))
            mb = max(p.stat().st_size for p in paths) / 1_000_000
            for output in args.outputs:
                out = root / f"out-{size:g}MB.{SUFFIX[output]}"
                cmd = [python, "-m", "pytest_llmperf.cli", "report",
                       "--json", *map(str, paths), f"--{output}", str(out)]
                wall, cpu, rss, code, last = measure(cmd, root)
                note = f"  {last}" if code else ""
                print(f"{mb:8.1f} {len(paths):5d} {output:>9} {wall:8.2f} {cpu:7.2f} "
                      f"{rss:12.0f} {rss / mb:9.1f} {code:5d}{note}", flush=True)
    return 0


def _files(python: str, root: Path, size: float, shards: int, reuse: bool) -> list[Path]:
    """The results file(s) of one size: one, or ``shards`` shards of one run, each written by
    a child (``--write``); ``reuse``: a file written before (``--keep``) is used again."""
    named: list[tuple[Path, str | None]]
    if shards == 1:
        named = [(root / f"results-{size:g}MB.json", None)]
    else:
        named = [(root / f"results-{size:g}MB-shard{i}of{shards}.json", f"{i}/{shards}")
                 for i in range(shards)]
    for path, shard in named:
        if not (reuse and path.exists()):
            cmd = [python, __file__, "--write", str(path), str(size)]
            subprocess.run(cmd + (["--shard", shard] if shard else []), check=True)
    return [path for path, _ in named]


if __name__ == "__main__":
    raise SystemExit(main())
