"""The Kubernetes merge script (k8s/base/merge.sh, the very file kustomize ships) given a results
volume whose path holds a space (issue 23, class 3): every index passed, so the run's verdict is
"passed", not "error: index(es) none errored or never ran" from the shard files' paths split
in two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
