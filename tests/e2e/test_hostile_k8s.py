"""The Kubernetes pod scripts (k8s/base/run-shard.sh and merge.sh, the very files kustomize
ships) on a hostile results volume.

- A path that holds a space (issue 23, class 3): every index passed, so the run's verdict is
  "passed", not "error: index(es) none errored or never ran" from the shard files' paths split
  in two.
- A read-only results directory (issue 23, class 22): the shard fails before pytest starts,
  saying so, with the exit (4) that fails the Job; a status marker that cannot be written after
  the run is an error too, never "passed (exit 0): index-0.status"; and the merge does not wait
  out its deadline (4 h by default) for markers that cannot come, but gives its verdict, naming
  the index, at once. Root ignores permission bits, so as root the scripts run as nobody.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, results_doc

from pytest_llmperf.report.provenance import make_provenance
from pytest_llmperf.results import SCHEMA_VERSION

RUN_ID = "run-space"


def write_shard(run_dir: Path, index: int, count: int, nodeid: str) -> None:
    doc = results_doc()
    doc["tests"] = [{**doc["tests"][0], "nodeid": nodeid, "outcome": "passed"}]
    doc["schema_version"] = SCHEMA_VERSION
    doc["provenance"] = make_provenance(
        commit="c0ffee1", branch="main", dirty=False, profiles=[], shard=(index, count),
        run_id=RUN_ID, host="h", started_at="2026-12-06T00:00:00Z")
    (run_dir / f"shard-{index}.json").write_text(json.dumps(doc))
    (run_dir / f"index-{index}.status").write_text(
        f"status=passed\nexit_code=0\nrun_id={RUN_ID}\n")


def test_the_merge_reads_a_results_dir_with_a_space(tmp_path: Path) -> None:
    results = tmp_path / "results dir"
    run_dir = results / RUN_ID
    run_dir.mkdir(parents=True)
    for i in range(2):
        write_shard(run_dir, i, 2, f"test_suite.py::test_{i}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPERF_")}
    env.update({"LLMPERF_SHARDS": "2", "LLMPERF_RUN_ID": RUN_ID,
                "LLMPERF_RESULTS_DIR": str(results), "LLMPERF_STORE": "",
                "LLMPERF_MERGE_WAIT_S": "5", "LLMPERF_MERGE_POLL_S": "1",
                "LLMPERF_CLI": f"{sys.executable} -m pytest_llmperf.cli"})
    out = subprocess.run(["sh", str(ROOT / "k8s" / "base" / "merge.sh")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = (run_dir / "summary.txt").read_text().splitlines()
    assert summary[0].endswith("2 shard(s): passed: every index passed"), summary
    merged = json.loads((run_dir / "results.json").read_text())
    assert [t["nodeid"] for t in merged["tests"]] == ["test_suite.py::test_0",
                                                      "test_suite.py::test_1"]


# ---------------------------------------------------------------------------------------------
# A read-only results directory (class 22)

SCRIPTS = ROOT / "k8s" / "base"
RO_RUN = "run-ro"
# What pytest would do: say it ran (and, with $MAKE_READ_ONLY, make the run directory read-only
# as a volume remounted read-only mid-run does), pass.
FAKE_PYTEST = """#!/bin/sh
echo "PYTEST RAN $*"
if [ -n "${MAKE_READ_ONLY:-}" ]; then
    chmod 0555 "$LLMPERF_RESULTS_DIR/$LLMPERF_RUN_ID"
fi
exit 0
"""


def unprivileged() -> dict[str, Any]:
    """Popen arguments under which permission bits apply (root ignores them: nobody then)."""
    return {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (tmp_path's parents are private to this user)."""
    path = Path(tempfile.mkdtemp(prefix="llmperf-k8s-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+rwX", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def pod_env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    env.update({"LLMPERF_SHARDS": "1", "LLMPERF_RUN_ID": RO_RUN, "JOB_COMPLETION_INDEX": "0",
                "LLMPERF_SUITE": "suite", "LLMPERF_RESULTS_DIR": str(work / "results"),
                "LLMPERF_PYTEST": str(work / "pytest.sh"), "LLMPERF_SAVE": "0",
                "LLMPERF_STORE": "", "LLMPERF_INDEX_FAILURES": "0", "HOME": str(work),
                "LLMPERF_MERGE_WAIT_S": "3600", "LLMPERF_MERGE_POLL_S": "1",
                # A model file the pod can read (run-shard.sh checks it before pytest; the
                # packaged model's name would have it resolved by a Python this user may
                # not be able to run, and assembled into HOME).
                "LLMPERF_MODEL": str(work / "model.gguf")})
    env.update(extra)
    return env


def pod(script: str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout is a hang guard: the merge's own deadline here is an hour.
    return subprocess.run(["sh", str(SCRIPTS / script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120, **unprivileged())


def read_only_work(shared_dir: Path) -> Path:
    work = shared_dir
    (work / "pytest.sh").write_text(FAKE_PYTEST)
    (work / "model.gguf").write_bytes(b"GGUF")
    (work / "model.gguf").chmod(0o644)
    (work / "pytest.sh").chmod(0o755)
    (work / "results").mkdir()
    (work / "results").chmod(0o777)
    probe = work / "probe"
    probe.mkdir(mode=0o555)
    probe.chmod(0o555)
    tried = subprocess.run(["sh", "-c", f": > {probe}/x"], capture_output=True,
                           **unprivileged())
    if tried.returncode == 0:
        pytest.skip("a read-only directory is writable here (no unprivileged user)")
    return work


def test_a_shard_on_a_read_only_results_dir_fails_before_pytest_and_the_merge_says_so(
        shared_dir: Path) -> None:
    work = read_only_work(shared_dir)
    run_dir = work / "results" / RO_RUN
    run_dir.mkdir()
    run_dir.chmod(0o555)
    out = pod("run-shard.sh", work, pod_env(work))
    assert out.returncode == 4, out.stdout + out.stderr
    assert "PYTEST RAN" not in out.stdout
    assert out.stderr.splitlines() == [
        f"llmperf shard: error: the results directory {run_dir} is not writable (Permission "
        "denied): this index could keep neither its results nor the status marker the merge "
        "waits for"]
    assert list(run_dir.iterdir()) == []

    merge = pod("merge.sh", work, pod_env(work))
    assert merge.returncode == 2, merge.stdout + merge.stderr
    assert merge.stdout.splitlines() == [
        f"run {RO_RUN}, commit ?, 1 shard(s): error: the results directory is not writable "
        "(Permission denied): index(es) 0 errored or never ran; no report",
        "index 0: missing (exit -)"]
    assert (f"llmperf merge: error: the results directory {run_dir} is not writable "
            "(Permission denied): no index can write its marker there") in merge.stderr
    assert "waiting for" not in merge.stdout


def test_a_status_marker_that_cannot_be_written_fails_the_index(shared_dir: Path) -> None:
    work = read_only_work(shared_dir)
    run_dir = work / "results" / RO_RUN
    out = pod("run-shard.sh", work, pod_env(work, MAKE_READ_ONLY="1"))
    assert "PYTEST RAN --llmperf suite --llmperf-shard 0/1" in out.stdout  # the run did run
    assert out.returncode == 4, out.stdout + out.stderr
    assert "index-0.status" not in out.stdout  # no "passed (exit 0): .../index-0.status"
    assert out.stderr.splitlines() == [
        f"llmperf shard 0/1: error: could not write the status marker {run_dir}/index-0.status"
        " (Permission denied): the merge cannot see this index's outcome (passed, exit 0); "
        "exit 4"]

    merge = pod("merge.sh", work, pod_env(work))
    assert merge.returncode == 2, merge.stdout + merge.stderr
    assert merge.stdout.splitlines()[-1] == "index 0: missing (exit -)"
    assert "not writable (Permission denied): index(es) 0 errored" in merge.stdout


def test_the_merge_stops_waiting_when_an_index_failed_the_job(tmp_path: Path) -> None:
    """An index that exits 2, 4 or 5 fails the whole Job (podFailurePolicy FailJob):
    Kubernetes stops the other pods, which write no marker, so the merge does not wait for
    them until its deadline."""
    results = tmp_path / "results"
    run_dir = results / RO_RUN
    run_dir.mkdir(parents=True)
    (run_dir / "index-1.status").write_text(f"status=error\nexit_code=4\nrun_id={RO_RUN}\n")
    env = pod_env(tmp_path, LLMPERF_SHARDS="3")
    out = subprocess.run(["sh", str(SCRIPTS / "merge.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert ("llmperf merge: index 1 exited 4, which fails the whole Job (podFailurePolicy "
            "FailJob): index(es) 0 2 will write no marker; not waiting for them") in out.stderr
    assert (run_dir / "summary.txt").read_text().splitlines()[1:] == [
        "index 0: missing (exit -)", "index 1: error (exit 4)", "index 2: missing (exit -)"]
    assert "exit_code=2\n" in (run_dir / "merged.status").read_text()
