"""What does installing pytest-llmperf cost a user's plain test run?

Builds a temporary project holding one test file (``def test_x(): pass``) and an empty
``pytest.ini`` (so no configuration above the temporary folder is picked up), then runs
``python -m pytest -q -p no:cacheprovider test_one.py`` in it, each run a fresh process,
under three conditions:

- (a) ``-p no:llmperf``: the plugin is not loaded (the baseline);
- (b) the plugin loaded, no ``--llmperf`` (what every user of the environment pays);
- (c) the plugin with ``--llmperf`` (no report option).

Runs are made in pairs, (a, b) and (a, c), the pairs alternating and the side that goes
first alternating from one pair to the next, so slow drifts of a shared machine fall on both
sides of a pair. For each run it records the wall time, the user+sys CPU time and the peak RSS
of that child alone (``os.wait4``, not ``RUSAGE_CHILDREN`` accumulated over all children).
It prints each condition's median and, for (b)-(a) and (c)-(a), the median paired difference
with a percentile bootstrap 95% interval. One extra run per condition, with a ``-p`` plugin
that dumps ``sys.modules`` at ``pytest_sessionfinish``, tells how many ``pytest_llmperf``
modules and which heavy third-party modules each condition imports.

Run: ``python benchmarks/plugin_overhead.py`` (``--pairs N``, default 30, about 1-2 min on two
cores; ``--python PATH`` for another interpreter or environment). To measure another checkout
of the package, prepend it to ``PYTHONPATH``; the output says which ``pytest_llmperf`` was
imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Third-party modules that loading the plugin must not import (by top-level name).
HEAVY = ("numpy", "scipy", "git", "jinja2", "rich", "psutil", "llama_cpp")

CONDITIONS: dict[str, tuple[str, ...]] = {
    "a": ("-p", "no:llmperf"),
    "b": (),
    "c": ("--llmperf",),
}
LABELS = {
    "a": "(a) -p no:llmperf",
    "b": "(b) plugin, no --llmperf",
    "c": "(c) plugin, --llmperf",
}

DUMP_PLUGIN = '''\
"""Benchmark helper: writes the imported modules to $LLMPERF_OVERHEAD_DUMP at session end."""
import json
import os
import sys


def pytest_sessionfinish(session, exitstatus):
    mod = sys.modules.get("pytest_llmperf")
    with open(os.environ["LLMPERF_OVERHEAD_DUMP"], "w") as fh:
        json.dump({"modules": sorted(sys.modules),
                   "package": getattr(mod, "__file__", None)}, fh)
'''


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    cpu_ms: float
    rss_mib: float


def make_project(root: Path) -> None:
    (root / "test_one.py").write_text("def test_x(): pass\n")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "llmperf_overhead_dump.py").write_text(DUMP_PLUGIN)


def child_env() -> dict[str, str]:
    """This environment minus what would change what pytest or the plugin does. Bytecode
    caching stays on, as in a user's installation (an installed package has its ``.pyc``
    files; the warm-up runs write them for an editable one), so the figures are the cost of
    running the modules, not of compiling them on every start."""
    drop = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
            "GITHUB_STEP_SUMMARY", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items()
            if k not in drop and not k.startswith("LLMPERF_")}


def run_once(python: str, cwd: Path, extra: tuple[str, ...], env: dict[str, str]) -> Sample:
    """One fresh pytest process; its own wall time, CPU time and peak RSS."""
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "test_one.py"]
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            out.seek(0)
            sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                     + out.read().decode(errors="replace"))
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    rss_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return Sample(wall_ms=wall * 1e3, cpu_ms=(usage.ru_utime + usage.ru_stime) * 1e3,
                  rss_mib=rss_bytes / 2**20)


def dump_modules(python: str, cwd: Path, extra: tuple[str, ...],
                 env: dict[str, str]) -> tuple[list[str], str | None]:
    path = cwd / "modules.json"
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "llmperf_overhead_dump",
           *extra, "test_one.py"]
    subprocess.run(cmd, cwd=cwd, env={**env, "LLMPERF_OVERHEAD_DUMP": str(path)}, check=True,
                   stdout=subprocess.DEVNULL)
    data = json.loads(path.read_text())
    path.unlink()
    return data["modules"], data["package"]


def bootstrap_median(diffs: list[float], rng: random.Random,
                     resamples: int = 5000) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the median of ``diffs``."""
    n = len(diffs)
    meds = sorted(statistics.median(rng.choices(diffs, k=n)) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def fmt_diff(diffs: list[float], unit: str, digits: int, rng: random.Random) -> str:
    lo, hi = bootstrap_median(diffs, rng)
    med = statistics.median(diffs)
    return f"{med:+.{digits}f} {unit} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=30,
                        help="pairs per comparison, (a, b) and (a, c) (default 30)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs pytest (default: this one)")
    args = parser.parse_args()
    env = child_env()
    rng = random.Random(20261122)

    with tempfile.TemporaryDirectory(prefix="llmperf-overhead-") as tmp:
        cwd = Path(tmp)
        make_project(cwd)

        imports: dict[str, tuple[list[str], str | None]] = {
            key: dump_modules(args.python, cwd, extra, env) for key, extra in CONDITIONS.items()
        }
        for extra in CONDITIONS.values():  # warm-up: bytecode caches, page cache
            run_once(args.python, cwd, extra, env)

        samples: dict[str, list[Sample]] = {key: [] for key in CONDITIONS}
        paired: dict[str, list[tuple[Sample, Sample]]] = {"b": [], "c": []}
        load_before = os.getloadavg()
        start = time.perf_counter()
        for i in range(args.pairs):
            # (a, b) then (a, c) on even rounds, (a, c) then (a, b) on odd ones; within a pair,
            # the baseline goes first on even rounds and second on odd ones.
            for other in ("b", "c") if i % 2 == 0 else ("c", "b"):
                order = ("a", other) if i % 2 == 0 else (other, "a")
                got = {key: run_once(args.python, cwd, CONDITIONS[key], env) for key in order}
                samples["a"].append(got["a"])
                samples[other].append(got[other])
                paired[other].append((got["a"], got[other]))
        elapsed = time.perf_counter() - start
        load_after = os.getloadavg()

    print(f"python: {args.python} ({platform.python_version()}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    print(f"pytest_llmperf imported from: {imports['b'][1]}")
    print(f"{args.pairs} pairs per comparison, {4 * args.pairs} timed runs in {elapsed:.0f} s; "
          f"1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print()
    print("| condition | wall median | CPU (user+sys) median | peak RSS median | "
          "pytest_llmperf modules | heavy modules imported |")
    print("|---|---:|---:|---:|---:|---|")
    for key, label in LABELS.items():
        runs = samples[key]
        modules = imports[key][0]
        ours = sum(1 for m in modules if m == "pytest_llmperf" or m.startswith("pytest_llmperf."))
        heavy = [h for h in HEAVY if h in modules]
        print(f"| {label} | {statistics.median(s.wall_ms for s in runs):.0f} ms "
              f"| {statistics.median(s.cpu_ms for s in runs):.0f} ms "
              f"| {statistics.median(s.rss_mib for s in runs):.1f} MiB | {ours} "
              f"| {', '.join(heavy) or 'none'} |")
    print()
    print("| paired difference (median [bootstrap 95%]) | wall | CPU (user+sys) | peak RSS |")
    print("|---|---:|---:|---:|")
    for key in ("b", "c"):
        pairs = paired[key]
        wall = [o.wall_ms - a.wall_ms for a, o in pairs]
        cpu = [o.cpu_ms - a.cpu_ms for a, o in pairs]
        rss = [o.rss_mib - a.rss_mib for a, o in pairs]
        print(f"| {key} - a | {fmt_diff(wall, 'ms', 0, rng)} | {fmt_diff(cpu, 'ms', 0, rng)} "
              f"| {fmt_diff(rss, 'MiB', 1, rng)} |")


if __name__ == "__main__":
    main()
