"""The Kubernetes manifests (k8s/): rendered with kustomize, validated against the API schemas
of the last three Kubernetes minor versions, their policies and single sources of truth
checked on the rendered objects, and the Job simulated here: the very pod scripts the
manifests ship (k8s/base/run-shard.sh, merge.sh) run once per index with
``JOB_COMPLETION_INDEX`` and the rendered ConfigMap's environment, as Kubernetes runs them.

Rendering needs ``kubectl`` (which ships kustomize) or a standalone ``kustomize``: without
either, the tests that render skip with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT

from pytest_llmperf.models.packaged import DEFAULT_MODEL
from pytest_llmperf.testing.schedule_engine import CONFTEST as SCHEDULE_CONFTEST

K8S = ROOT / "k8s"
OVERLAYS = ("cpu", "gpu-vllm")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _kustomize_cmd() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


needs_kustomize = pytest.mark.skipif(
    _kustomize_cmd() is None,
    reason="neither kubectl (which ships kustomize) nor kustomize is installed")


def render(path: Path) -> list[dict[str, Any]]:
    cmd = _kustomize_cmd()
    assert cmd is not None
    out = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def new_run(tmp_path: Path, overlay: str, run_id: str, commit: str = COMMIT,
            branch: str = "main") -> Path:
    """The per-run kustomization, written by k8s/new-run.sh as the README says."""
    out = subprocess.run(["sh", str(K8S / "new-run.sh"), overlay, commit, branch, run_id],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "LLMPERF_RUNS_DIR": str(tmp_path / "runs")})
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path == tmp_path / "runs" / run_id and (path / "kustomization.yaml").is_file()
    return path


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def job(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = [d for d in objects(docs, "Job")
                if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found


def config(docs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    (found,) = [d for d in objects(docs, "ConfigMap")
                if d["metadata"]["name"].startswith(prefix + "-")]
    return found


def container(job_doc: dict[str, Any]) -> dict[str, Any]:
    (found,) = job_doc["spec"]["template"]["spec"]["containers"]
    return found


# -- validation --------------------------------------------------------------------------


def last_three_versions() -> list[str]:
    """The newest three Kubernetes minor versions kubernetes-validate ships schemas for."""
    from kubernetes_validate import utils

    minors = sorted({tuple(int(p) for p in v.split(".")[:2]) for v in utils.all_versions()})
    return [f"{major}.{minor}" for major, minor in minors[-3:]]


@needs_kustomize
def test_every_overlay_and_a_run_validate_strictly_on_the_last_three_versions(
        tmp_path: Path) -> None:
    validator = Path(sys.executable).with_name("kubernetes-validate")
    assert validator.exists(), "pip install kubernetes-validate (the dev extra)"
    versions = last_three_versions()
    # backoffLimitPerIndex, maxFailedIndexes and FailIndex are GA in 1.33, podFailurePolicy
    # in 1.31: the schemas of older versions would not know them.
    assert len(versions) == 3 and all(tuple(map(int, v.split("."))) >= (1, 33)
                                      for v in versions), versions
    targets = {name: K8S / "overlays" / name for name in OVERLAYS}
    targets["volumes"] = K8S / "volumes"
    targets["run"] = new_run(tmp_path, "gpu-vllm", "20261201-0123abcd")
    files = []
    for name, path in targets.items():
        rendered = tmp_path / f"{name}.yaml"
        rendered.write_text(yaml.safe_dump_all(render(path)))
        files.append(str(rendered))
    for version in versions:
        out = subprocess.run([str(validator), "--strict", "-k", version, *files],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        passed = [line for line in out.stdout.splitlines() if " passed for resource " in line]
        # cpu, gpu-vllm, run: 2 ConfigMaps and 2 Jobs each; volumes: 2 claims.
        assert len(passed) == 3 * 4 + 2, out.stdout
    # The validator does reject what the API server would: a misspelt field, in strict mode.
    bad = render(targets["cpu"])
    job(bad, "shard")["spec"]["backoffLimitPerIndx"] = 1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(bad))
    out = subprocess.run([str(validator), "--strict", "-k", versions[-1],
                          str(tmp_path / "bad.yaml")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "backoffLimitPerIndx" in out.stdout + out.stderr


# -- the policies, on the rendered objects ---------------------------------------------------


def rules_by_exit_code(job_doc: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for rule in job_doc["spec"]["podFailurePolicy"]["rules"]:
        codes = rule.get("onExitCodes")
        if codes:
            assert codes["operator"] == "In"
            assert codes["containerName"] == container(job_doc)["name"]
            for code in codes["values"]:
                out.setdefault(code, rule["action"])  # the first matching rule wins
    return out


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shard_job_has_its_policies(overlay: str) -> None:
    docs = render(K8S / "overlays" / overlay)
    shards, merge = job(docs, "shard"), job(docs, "merge")
    run = config(docs, "llmperf-run")["data"]
    spec = shards["spec"]
    count = int(run["LLMPERF_SHARDS"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == spec["maxFailedIndexes"] == count
    assert spec["backoffLimitPerIndex"] == int(run["LLMPERF_BACKOFF_PER_INDEX"]) >= 1
    assert "backoffLimit" not in spec  # the per-index limit is the one that counts
    # A failed gate or internal error fails its index only; usage and collection errors (the
    # same on every index) fail the Job; an eviction is not counted at all.
    assert rules_by_exit_code(shards) == {1: "FailIndex", 2: "FailJob", 3: "FailIndex",
                                          4: "FailJob", 5: "FailJob"}
    ignore = [r for r in spec["podFailurePolicy"]["rules"] if r["action"] == "Ignore"]
    assert ignore == [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
    assert rules_by_exit_code(merge) == {1: "FailJob", 2: "FailJob"}
    for doc in (shards, merge):
        assert doc["spec"]["activeDeadlineSeconds"] > 0
        assert doc["spec"]["ttlSecondsAfterFinished"] > 0
        assert doc["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # The merge waits no longer than its own deadline allows.
    assert int(run["LLMPERF_MERGE_WAIT_S"]) < merge["spec"]["activeDeadlineSeconds"]
    assert spec["activeDeadlineSeconds"] <= int(run["LLMPERF_MERGE_WAIT_S"])

    pod = shards["spec"]["template"]["spec"]
    c = container(shards)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and \
        mounts["dshm"]["mountPath"] == "/dev/shm"
    if overlay == "gpu-vllm":  # the checkpoint on the models claim
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "llmperf-models",
                                                              "readOnly": True}
        assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
        assert run["LLMPERF_MODEL"].startswith("/models/")  # the plugin reads LLMPERF_MODEL
    else:  # the packaged model in the image's cache: no models volume to stage
        assert "models" not in volumes and "models" not in mounts
        assert run["LLMPERF_MODEL"] == DEFAULT_MODEL
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == "llmperf-results"
    assert mounts["results"]["mountPath"] == run["LLMPERF_RESULTS_DIR"] == "/results"
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "llmperf-secrets", "key": "HF_TOKEN", "optional": True}
    assert env["LLMPERF_INDEX_FAILURES"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-index-failure-count']"
    assert run["LLMPERF_STORE"] and run["LLMPERF_SAVE"] == "1"
    assert run["HF_HUB_OFFLINE"] == "1"
    # The pod command is the script file itself, shipped by the configMapGenerator.
    scripts = config(docs, "llmperf-scripts")
    assert c["command"] == ["/bin/sh", "/scripts/run-shard.sh"]
    assert container(merge)["command"] == ["/bin/sh", "/scripts/merge.sh"]
    for name in ("run-shard.sh", "merge.sh"):
        assert scripts["data"][name] == (K8S / "base" / name).read_text()
    for doc in (shards, merge):
        refs = [v["configMap"]["name"] for v in doc["spec"]["template"]["spec"]["volumes"]
                if "configMap" in v]
        assert refs == [scripts["metadata"]["name"]]
        (ref,) = [e["configMapRef"]["name"] for e in container(doc)["envFrom"]
                  if "configMapRef" in e]
        assert ref == config(docs, "llmperf-run")["metadata"]["name"]

    resources = c["resources"]
    if overlay == "gpu-vllm":
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] \
            == "1"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
            pod["tolerations"]
        assert run["LLMPERF_ENGINE"] == "vllm" and run["LLMPERF_SUITE"] == "example_suites/vllm"
        assert volumes["dshm"]["emptyDir"]["sizeLimit"] == "16Gi"  # the patch hit /dev/shm
    else:
        assert "nodeSelector" not in pod and "nvidia.com/gpu" not in resources["limits"]
        assert run["LLMPERF_ENGINE"] == "llama_cpp"
        assert resources["limits"]["cpu"] == run["LLMPERF_THREADS"]


@needs_kustomize
def test_the_shard_count_image_and_run_id_are_each_set_in_one_place(tmp_path: Path) -> None:
    """A layer on top of an overlay that changes LLMPERF_SHARDS, the image and the run id
    once changes every field that uses them."""
    base = new_run(tmp_path, "cpu", "20261201-aaaa")
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(base, layer)],
        "components": [os.path.relpath(K8S / "components" / "run", layer)],
        "images": [{"name": "ghcr.io/OWNER/pytest-llmperf-cpu",
                    "newName": "registry.example/llmperf", "newTag": "v7"}],
        "configMapGenerator": [{"name": "llmperf-run", "behavior": "merge",
                                "literals": ["LLMPERF_SHARDS=7", "LLMPERF_RUN_ID=other-run"]}],
    }))
    before, after = render(base), render(layer)
    for docs, count, image, run_id in (
            (before, 4, "ghcr.io/OWNER/pytest-llmperf-cpu:latest", "20261201-aaaa"),
            (after, 7, "registry.example/llmperf:v7", "other-run")):
        spec = job(docs, "shard")["spec"]
        assert spec["completions"] == spec["parallelism"] == spec["maxFailedIndexes"] == count
        assert config(docs, "llmperf-run")["data"]["LLMPERF_SHARDS"] == str(count)
        assert {container(j)["image"] for j in objects(docs, "Job")} == {image}
        assert {j["metadata"]["name"] for j in objects(docs, "Job")} == {
            f"llmperf-shards--{run_id}", f"llmperf-merge--{run_id}"}
        for doc in docs:
            assert doc["metadata"]["labels"]["llmperf-run-id"] == run_id
        assert config(docs, "llmperf-run")["data"]["LLMPERF_RUN_ID"] == run_id
    # The count and the image are written once in each overlay, nowhere else in k8s/.
    for overlay in OVERLAYS:
        text = (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
        assert text.count("LLMPERF_SHARDS=") == 1 and text.count("newName:") == 1
    for path in (K8S / "base").iterdir():
        assert "ghcr.io" not in path.read_text(), path


@needs_kustomize
def test_every_run_has_its_own_names_so_kubectl_create_never_collides(tmp_path: Path) -> None:
    a = render(new_run(tmp_path, "cpu", "run-a"))
    b = render(new_run(tmp_path, "cpu", "run-b", commit="fedcba9876543210"))
    names_a = {(d["kind"], d["metadata"]["name"]) for d in a}
    names_b = {(d["kind"], d["metadata"]["name"]) for d in b}
    assert len(names_a) == len(names_b) == 4 and not names_a & names_b
    assert config(b, "llmperf-run")["data"]["LLMPERF_COMMIT"] == "fedcba9876543210"
    # The script refuses what would make a bad run.
    for args in (["cpu", "not-hex"], ["cpu", COMMIT, "main", "Bad_Id"],
                 ["cpu", COMMIT, "main", "a--b"], ["nope", COMMIT],
                 ["cpu", COMMIT, "main", "run-a"]):  # run-a exists: a run id is used once
        out = subprocess.run(["sh", str(K8S / "new-run.sh"), *args], capture_output=True,
                             text=True, timeout=30,
                             env={**os.environ, "LLMPERF_RUNS_DIR": str(tmp_path / "runs")})
        assert out.returncode == 2 and out.stderr.startswith("usage: "), (args, out)


# -- the Job, simulated ---------------------------------------------------------------------

# Three tests over four shards: shards deal sorted node ids round-robin, so index 0 gets
# test_a, 1 test_b (whose threshold the 20 ms first token cannot meet), 2 test_c, 3 nothing.
SUITE = """
from pytest_llmperf import Workload, llmperf

W = Workload(input_tokens=4, output_tokens=3, requests=2)


@llmperf(ttft_p50_ms=5000)
def test_a(llmperf_bench, llm_engine):
    assert llmperf_bench(llm_engine, W).errors == 0


@llmperf(ttft_p50_ms=1)
def test_b_fails_its_gate(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, W)


@llmperf(ttft_p50_ms=5000)
def test_c(llmperf_bench, llm_engine):
    assert llmperf_bench(llm_engine, W).errors == 0
"""

STALE_RUN = "20261130-stale"


def _stale(results: Path) -> None:
    """What an earlier run left on the results volume: its own directory, with a marker per
    index and results of a test the suite no longer has, and files of the old flat layout."""
    old = results / STALE_RUN
    old.mkdir(parents=True)
    doc = {"tests": [{"nodeid": "test_gone.py::test_stale_from_an_old_run", "runs": []}],
           "provenance": {"run_id": STALE_RUN}}
    for i in range(4):
        (old / f"shard-{i}.json").write_text(json.dumps(doc))
        (old / f"index-{i}.status").write_text(f"status=passed\nexit_code=0\nrun_id={STALE_RUN}\n")
        (results / f"shard-{i}.json").write_text(json.dumps(doc))
        (results / f"index-{i}.status").write_text("status=passed\nexit_code=0\n")


def _kill(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    _kill(procs)


def simulate(scripts: Path, work: Path, env: dict[str, str], shards: int,
             started: list[subprocess.Popen[str]]) -> tuple[list[int], list[str], int, str]:
    """One run as Kubernetes makes it: the merge pod and every index's pod at once."""
    merge = subprocess.Popen(["sh", str(scripts / "merge.sh")], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started.append(merge)
    pods = []
    for index in range(shards):
        pod = subprocess.Popen(["sh", str(scripts / "run-shard.sh")], cwd=work,
                               env={**env, "JOB_COMPLETION_INDEX": str(index),
                                    "LLMPERF_INDEX_FAILURES": "0"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(pod)
        pods.append(pod)
    outputs = [pod.communicate(timeout=120)[0] for pod in pods]
    merged = merge.communicate(timeout=120)[0]
    return [pod.returncode for pod in pods], outputs, merge.returncode, merged


@needs_kustomize
def test_the_job_simulated_one_index_fails_its_gate(
        tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    run_id = "20261201-0123abcd"
    docs = render(new_run(tmp_path, "cpu", run_id))
    env_cm = dict(config(docs, "llmperf-run")["data"])
    scripts = config(docs, "llmperf-scripts")["data"]
    bin_dir = tmp_path / "scripts"  # what the pod mounts at /scripts
    bin_dir.mkdir()
    for name in ("run-shard.sh", "merge.sh"):
        (bin_dir / name).write_text(scripts[name])

    work = tmp_path / "app"  # the image's working directory: no .git in it or above it
    (work / "suite").mkdir(parents=True)
    (work / "suite" / "conftest.py").write_text(SCHEDULE_CONFTEST)
    (work / "suite" / "test_tiny.py").write_text(SUITE)
    nogit = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=work,
                           capture_output=True, text=True)
    assert nogit.returncode != 0, f"{work} is inside a git repository: {nogit.stdout}"
    results, store = tmp_path / "results", tmp_path / "store"
    _stale(results)

    shards = int(env_cm["LLMPERF_SHARDS"])
    assert shards == 4 and env_cm["LLMPERF_RUN_ID"] == run_id
    assert env_cm["LLMPERF_COMMIT"] == COMMIT and env_cm["LLMPERF_SAVE"] == "1"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLMPERF_", "PYTEST_")) and k != "JOB_COMPLETION_INDEX"}
    env.update(env_cm)
    env.update({  # what differs from a cluster: paths here, the oracle engine, the store
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LLMPERF_SUITE": "suite",
        "LLMPERF_ENGINE": "schedule",
        "LLMPERF_MODEL": "20",  # the oracle's first token after 20 ms
        "LLMPERF_RESULTS_DIR": str(results),
        "LLMPERF_STORE": store.as_uri(),
        "LLMPERF_MERGE_POLL_S": "1",
        "LLMPERF_MERGE_WAIT_S": "120",
        "LLMPERF_CACHE_DIR": str(tmp_path / "cache"),
    })

    t0 = time.monotonic()
    codes, outputs, merge_code, merged_out = simulate(bin_dir, work, env, shards, started)
    assert codes == [0, 1, 0, 0], "\n".join(outputs)
    assert "shard 3/4 has no tests" in outputs[3]  # the empty index passes, and says so
    assert merge_code == 1, merged_out  # a gate failed; nothing errored

    run_dir = results / run_id
    for index, status in enumerate(["passed", "failed", "passed", "passed"]):
        marker = dict(line.split("=", 1) for line in
                      (run_dir / f"index-{index}.status").read_text().splitlines())
        assert marker["status"] == status and marker["run_id"] == run_id
        assert marker["exit_code"] == str(codes[index]) and marker["commit"] == COMMIT
        shard_doc = json.loads((run_dir / f"shard-{index}.json").read_text())
        prov = shard_doc["provenance"]
        assert prov["run_id"] == run_id and prov["commit"] == COMMIT
        assert prov["shard"] == f"{index}/{shards}"
    summary = (run_dir / "summary.txt").read_text()
    assert summary.splitlines() == [
        f"run {run_id}, commit {COMMIT}, 4 shard(s): failed: index(es) 1 failed a test or gate",
        "index 0: passed (exit 0)", "index 1: failed (exit 1)", "index 2: passed (exit 0)",
        "index 3: passed (exit 0)"]
    status = (run_dir / "merged.status").read_text()
    assert "exit_code=1\n" in status and "failed=1\n" in status and "errored=\n" in status

    # The merged report: every test of the suite, one failed, nothing from the stale run.
    report = (run_dir / "report.md").read_text()
    assert "1/3 tests passed" not in report and "2/3 tests passed" in report, report
    for name in ("test_a", "test_b_fails_its_gate", "test_c"):
        assert name in report and name in (run_dir / "report.html").read_text()
    assert "stale" not in report
    merged = json.loads((run_dir / "results.json").read_text())
    assert sorted(t["nodeid"].rsplit("::", 1)[-1] for t in merged["tests"]) == [
        "test_a", "test_b_fails_its_gate", "test_c"]
    assert merged["provenance"]["run_id"] == run_id
    assert merged["provenance"]["commit"] == COMMIT
    assert len(merged["sources"]) == 4  # the empty index 3 wrote a results file too
    # The stale files are untouched and were not read.
    assert (results / STALE_RUN / "index-0.status").read_text().startswith("status=passed")

    # The baselines: every test's run, saved under LLMPERF_COMMIT without a .git.
    from pytest_llmperf.store.baselines import BaselineStore

    baselines, errors = BaselineStore(store).load_all()
    assert not errors
    assert [b.commit for b in baselines] == [COMMIT]
    assert sorted(baselines[0].tests) == [f"suite/test_tiny.py::{n}" for n in
                                          ("test_a", "test_b_fails_its_gate", "test_c")]
    assert all(len(baselines[0].runs(n)) == 1 for n in baselines[0].tests)
    # The merge pulled the store for the report's trend.
    assert [b.commit for b in BaselineStore(run_dir / "baselines").load_all()[0]] == [COMMIT]

    # A run id is used once: a shard of the merged run refuses to start (exit 4: FailJob).
    again = subprocess.run(["sh", str(bin_dir / "run-shard.sh")], cwd=work,
                           env={**env, "JOB_COMPLETION_INDEX": "0"}, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 4 and "was merged already" in again.stderr

    # The next run, of the next commit: its shards find the first run's baselines in the store
    # and, without git, compare with the newest earlier one, saying so.
    run2, commit2 = "20261201-0234abcd", "fedcba9876543210fedcba9876543210fedcba98"
    run2_cm = config(render(new_run(tmp_path, "cpu", run2, commit=commit2)), "llmperf-run")
    env2 = {**env, **{k: run2_cm["data"][k] for k in ("LLMPERF_RUN_ID", "LLMPERF_COMMIT")}}
    codes, outputs, merge_code, merged_out = simulate(bin_dir, work, env2, shards, started)
    assert codes == [0, 1, 0, 0] and merge_code == 1, "\n".join([*outputs, merged_out])
    compared = json.loads((results / run2 / "shard-0.json").read_text())["tests"][0]
    assert compared["comparison"]["baseline_commit"] == COMMIT, compared["comparison"]
    assert "ancestry unknown" in compared["comparison"]["message"]
    assert sorted(b.commit for b in BaselineStore(store).load_all()[0]) == [COMMIT, commit2]
    assert (results / run_id / "summary.txt").read_text() == summary  # run 1 untouched
    assert time.monotonic() - t0 < 90


@needs_kustomize
def test_the_merge_reports_an_index_that_never_ran(tmp_path: Path) -> None:
    """A pod killed outright writes no marker: the merge waits until its deadline, then
    merges what exists and says which index is missing (exit 2)."""
    run_id = "run-missing"
    docs = render(new_run(tmp_path, "cpu", run_id))
    env_cm = dict(config(docs, "llmperf-run")["data"])
    script = tmp_path / "merge.sh"
    script.write_text(config(docs, "llmperf-scripts")["data"]["merge.sh"])
    results = tmp_path / "results"
    run_dir = results / run_id
    run_dir.mkdir(parents=True)
    for i in (0, 2):
        (run_dir / f"index-{i}.status").write_text(f"status=passed\nexit_code=0\nrun_id={run_id}\n")
    (run_dir / "index-3.status").write_text(f"status=error\nexit_code=3\nrun_id={run_id}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPERF_")}
    env.update(env_cm)
    env.update({"LLMPERF_RESULTS_DIR": str(results), "LLMPERF_STORE": "",
                "LLMPERF_MERGE_WAIT_S": "2", "LLMPERF_MERGE_POLL_S": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    out = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no marker from index(es) 1" in out.stderr
    lines = (run_dir / "summary.txt").read_text().splitlines()
    assert lines[1:] == ["index 0: passed-no-results (exit 0)", "index 1: missing (exit -)",
                         "index 2: passed-no-results (exit 0)", "index 3: error (exit 3)"]
    assert lines[0].startswith(f"run {run_id}, commit {COMMIT}, 4 shard(s): error: ")


@needs_kustomize
def test_a_shard_that_cannot_run_says_why_with_the_exit_code_that_fails_the_job(
        tmp_path: Path) -> None:
    """Usage errors are the same on every index: exit 4, which the podFailurePolicy turns
    into a failed Job (see test_the_shard_job_has_its_policies), with one line saying why."""
    run_id = "run-bad"
    docs = render(new_run(tmp_path, "cpu", run_id))
    script = tmp_path / "run-shard.sh"
    script.write_text(config(docs, "llmperf-scripts")["data"]["run-shard.sh"])
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    env.update(config(docs, "llmperf-run")["data"])
    env.update({"LLMPERF_RESULTS_DIR": str(results), "LLMPERF_STORE": "",
                "LLMPERF_BASELINE_DIR": str(tmp_path / "store"),
                "JOB_COMPLETION_INDEX": "0", "LLMPERF_SUITE": "no_such_suite",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})

    def shard(**changes: str) -> subprocess.CompletedProcess[str]:
        run_env = {**env, **changes}
        for key in [k for k, v in changes.items() if v == "<unset>"]:
            del run_env[key]
        return subprocess.run(["sh", str(script)], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, timeout=60)

    # pytest's own usage error (the suite path is not in the image): a final marker, exit 4.
    out = shard()
    assert out.returncode == 4, out.stdout + out.stderr
    marker = (results / run_id / "index-0.status").read_text()
    assert "status=error\n" in marker and "exit_code=4\n" in marker
    # The script's own checks: one line each, before pytest starts, no marker.
    for changes, words in (
            ({"LLMPERF_COMMIT": "<unset>", "LLMPERF_SUITE": "suite"},
             "LLMPERF_COMMIT is not set"),
            ({"JOB_COMPLETION_INDEX": "4"}, "index 4 is not below LLMPERF_SHARDS=4"),
            ({"JOB_COMPLETION_INDEX": "<unset>"}, "JOB_COMPLETION_INDEX='' is not an index"),
            ({"LLMPERF_RUN_ID": "../etc"}, "LLMPERF_RUN_ID='../etc' must be")):
        shutil.rmtree(results, ignore_errors=True)
        out = shard(**changes)
        assert out.returncode == 4 and out.stdout == "", (changes, out)
        assert out.stderr.startswith("llmperf shard: error: ") and words in out.stderr
        assert len(out.stderr.splitlines()) == 1
        assert not list(results.rglob("index-*.status"))
    # A missing model (a path on an unstaged volume, or a name the plugin does not package):
    # exit 4 before pytest, one line, and a marker with exit_code=4 so the merge stops waiting.
    ran = tmp_path / "pytest-ran"
    for model, words in (
            ("/models/missing.gguf", "the model /models/missing.gguf (LLMPERF_MODEL) does not"
                                     " exist"),
            ("no-such-packaged-model", "the model: model 'no-such-packaged-model' not found")):
        shutil.rmtree(results, ignore_errors=True)
        out = shard(LLMPERF_MODEL=model, LLMPERF_SUITE="suite",
                    LLMPERF_PYTEST=f"touch {ran}")
        assert out.returncode == 4 and out.stdout == "", (model, out)
        assert out.stderr.startswith("llmperf shard: error: ") and words in out.stderr, out.stderr
        assert len(out.stderr.splitlines()) == 1
        marker = (results / run_id / "index-0.status").read_text()
        assert "status=error\n" in marker and "exit_code=4\n" in marker
        assert not ran.exists()


@needs_kustomize
def test_a_stopped_shard_stops_pytest_and_leaves_no_marker(
        tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    """SIGTERM (eviction, the Job's deadline, kubectl delete) reaches pytest through the
    script, which as a pod's PID 1 would otherwise ignore it; the index writes no marker (an
    evicted pod comes back; otherwise the merge's deadline reports the index)."""
    run_id = "run-stopped"
    docs = render(new_run(tmp_path, "cpu", run_id))
    script = tmp_path / "run-shard.sh"
    script.write_text(config(docs, "llmperf-scripts")["data"]["run-shard.sh"])
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_slow.py").write_text(
        "import time\n\n\ndef test_slow():\n    time.sleep(120)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    env.update(config(docs, "llmperf-run")["data"])
    env.update({"LLMPERF_RESULTS_DIR": str(tmp_path / "results"), "LLMPERF_STORE": "",
                "LLMPERF_SAVE": "0", "LLMPERF_SUITE": "suite", "JOB_COMPLETION_INDEX": "0",
                "LLMPERF_SHARDS": "1", "LLMPERF_INDEX_FAILURES": "1",  # its last attempt
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    pod = subprocess.Popen(["sh", str(script)], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started.append(pod)
    assert pod.stdout is not None
    seen = []
    for line in pod.stdout:  # until pytest has collected the test (then it runs it)
        seen.append(line)
        if line.startswith("collected 1 item"):
            break
    t0 = time.monotonic()
    pod.terminate()
    rest = pod.communicate(timeout=60)[0]
    assert time.monotonic() - t0 < 30, "pytest did not stop"
    assert pod.returncode == 128 + 15, "".join(seen) + rest
    assert "no marker (retried or stopped)" in rest
    assert not (tmp_path / "results" / run_id / "index-0.status").exists()
