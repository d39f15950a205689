"""The CI templates in ci/, checked against the project's real commands and options: the
GitLab template parsed and its structure checked (GitLab has no offline linter), and every
command of the templates' scripts must exist (a project file, a subcommand of ``llmperf`` with
options its parser accepts, pytest options the plugin registers, a program on this machine).

The templates use the pytest-llmperf Action (``action.yml``): a job's steps are checked with
the Action's steps expanded into it (``ci_action.expanded_steps``), the Action's ``pytest-args``
inputs as pytest options and its ``suite`` inputs as project paths; ``action.yml``'s own
``run:`` scripts are checked like a template's. The Action's structure is checked in
tests/unit/deploy/test_action.py.

Split by tier from tests/test_ci_templates.py: these are its unit tests; the others (actionlint,
the CPU workflow's steps run, and what stands in for what there) are in
tests/e2e/test_ci_templates_e2e.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from ci_action import ACTION_YML, action_inputs, expanded_steps, is_action, load_action
from helpers import ROOT
from helpers import load_ci_yaml as load

from pytest_llmperf.scaffold.action_ref import ACTION_REF

CI = ROOT / "ci"
WORKFLOWS = sorted(CI.glob("github-actions-*.yml"))
GITLAB = CI / "gitlab-ci.yml"
VENV_BIN = Path(sys.executable).parent



# -- lint ----------------------------------------------------------------------------------

def test_the_templates_are_there() -> None:
    names = {p.name for p in WORKFLOWS}
    assert names == {"github-actions-cpu.yml", "github-actions-gpu.yml",
                     "github-actions-nightly.yml"}
    assert GITLAB.exists()


# -- the commands in the templates ---------------------------------------------------------

def shell_lines(script: str) -> list[str]:
    """A script's command lines: backslash continuations joined."""
    return [ln.strip() for ln in script.replace("\\\n", " ").splitlines() if ln.strip()]


def placeholders(line: str) -> str:
    """Shell and GitHub/GitLab variables as plain words, so the line splits like the shell
    would split it after expansion (``${X:-d}`` -> ``VALUE``)."""
    line = re.sub(r"\$\{\{[^}]*\}\}", "VALUE", line)
    return re.sub(r"\$\{[^}]*\}|\$\w+", "VALUE", line)


def tool_calls(line: str) -> Iterator[tuple[str, list[str]]]:
    """(tool, argv after it) for each call of the project's pytest or llmperf on a line."""
    if not re.search(r"/bin/(pytest|llmperf)\b|^(pytest|llmperf) ", line):
        return  # (a line of a multi-line quoted text need not split on its own)
    words = shlex.split(placeholders(line))
    for i, word in enumerate(words):
        tool = Path(word).name
        if tool in ("pytest", "llmperf") and ("/bin/" in word or word == tool):
            rest: list[str] = []
            for w in words[i + 1:]:
                if w in ("&&", "||", ";", "|", ">", ">>"):
                    break
                rest.append(w)
            yield tool, rest


@pytest.fixture
def pytest_options(pytestconfig: pytest.Config) -> set[str]:
    """Every long option of pytest with the plugin, aliases included (``pytest --help`` shows
    one spelling of each): this session's argument parser (this environment's plugins)."""
    parser = pytestconfig._parser.optparser  # private (pytest 9), but the only full list
    options = {s for action in parser._actions for s in action.option_strings}
    assert {"--llmperf", "--junitxml", "--junit-xml", "--llmperf-json"} <= options
    return options


def check_pytest_args(argv: list[str], options: set[str], where: str) -> None:
    for word in argv:
        if word == "--":
            break
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            assert name in options, f"{where}: pytest has no option {name}"


def check_llmperf_args(argv: list[str], where: str, options: set[str]) -> None:
    from pytest_llmperf.cli.main import _split_passthrough, build_parser

    ours, _ = _split_passthrough(argv)  # as `llmperf` itself splits at `--`
    try:
        build_parser().parse_args(ours)
    except SystemExit:
        pytest.fail(f"{where}: `llmperf {' '.join(argv)}` is refused by the llmperf parser")
    if "--" in argv:  # what follows goes to pytest
        check_pytest_args(argv[argv.index("--") + 1:], options, where)


def check_line(line: str, options: set[str], where: str) -> int:
    calls = 0
    for tool, argv in tool_calls(line):
        calls += 1
        if tool == "pytest":
            check_pytest_args(argv, options, where)
        else:
            check_llmperf_args(argv, where, options)
    for script in re.findall(r"\b((?:scripts|example_suites)/[\w./-]+)", line):
        assert (ROOT / script).exists(), f"{where}: no {script} in the project"
    return calls


def workflow_runs(path: Path) -> Iterator[tuple[str, str, str]]:
    if path == ACTION_YML:
        jobs = {"action": {"steps": load_action()["runs"]["steps"]}}
    else:
        jobs = load(path)["jobs"]
    for job_name, job in jobs.items():
        for step in job["steps"]:
            if "run" in step:
                yield job_name, step.get("name", step["run"][:30]), step["run"]


def check_action_uses(path: Path, options: set[str]) -> int:
    """Each use of the Action: its pytest-args are pytest options, its suite a project path."""
    uses = 0
    action = load_action()
    for job_name, job in load(path)["jobs"].items():
        for step in filter(is_action, job["steps"]):
            uses += 1
            given = action_inputs(step, action)
            where = f"{path.name}: {job_name}/{step.get('name', 'the Action')}"
            check_pytest_args(shlex.split(placeholders(given["pytest-args"])), options, where)
            assert (ROOT / given["suite"]).exists(), f"{where}: no suite {given['suite']}"
    return uses


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION_YML, GITLAB], ids=lambda p: p.name)
def test_every_llmperf_and_pytest_option_exists(path: Path, pytest_options: set[str]) -> None:
    if path == GITLAB:
        lines = [(f"{job}", ln) for job, script in gitlab_scripts() for ln in script]
    else:
        lines = [(f"{job}/{name}", ln) for job, name, run in workflow_runs(path)
                 for ln in shell_lines(run)]
    calls = sum(check_line(line, pytest_options, f"{path.name}: {where}")
                for where, line in lines)
    if path in WORKFLOWS:
        calls += check_action_uses(path, pytest_options)
    assert calls >= 1


def test_the_action_args_check_can_fail(pytest_options: set[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(f"on: push\njobs:\n  a:\n    steps:\n      - uses: {ACTION_REF}\n"
                   "        with:\n          suite: example_suites/cpu\n"
                   "          pytest-args: --llmperf-engine x --llmperf-no-such 1\n")
    with pytest.raises(AssertionError, match="no option --llmperf-no-such"):
        check_action_uses(bad, pytest_options)


def test_the_option_check_can_fail(pytest_options: set[str]) -> None:
    with pytest.raises(AssertionError, match="no option --llmperf-no-such"):
        check_line(".venv/bin/pytest --llmperf x --llmperf-no-such=1", pytest_options, "t")
    with pytest.raises(pytest.fail.Exception, match="refused"):
        check_line('.venv/bin/llmperf compare "origin/$B" HEAD --no-such -- x',
                   pytest_options, "t")


# -- GitHub Actions: static checks ---------------------------------------------------------

def all_jobs() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for path in WORKFLOWS:
        wf = load(path)
        for name, job in wf["jobs"].items():
            yield path.name, name, job, wf


def job_text(job: Mapping[str, Any]) -> str:
    """The job's scripts, the Action's own not included (its mode says what it does)."""
    return "\n".join(s.get("run", "") for s in job["steps"])


def action_modes(job: Mapping[str, Any]) -> set[str]:
    return {str(s.get("with", {}).get("mode", "auto")) for s in job["steps"] if is_action(s)}


def saves(job: Mapping[str, Any]) -> bool:
    """Its scripts push, or it uses the Action in mode save (or auto, unless the job runs on
    pull requests only, where auto compares)."""
    text = job_text(job)
    modes = action_modes(job)
    pr_only = "github.event_name == 'pull_request'" in str(job.get("if", ""))
    return ("--llmperf-save" in text or "baselines push" in text or "git push" in text
            or "save" in modes or ("auto" in modes and not pr_only))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_and_concurrency_are_set(path: Path) -> None:
    wf = load(path)
    assert "permissions" in wf, "no workflow-level permissions: the default token may write"
    assert "group" in wf["concurrency"]
    assert "pull_request_target" not in wf["on"], "pull_request_target runs fork code with " \
        "this repository's token"
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", wf["permissions"])
        assert isinstance(perms, dict), f"{name}: permissions must be listed"
        if saves(job):
            assert perms.get("contents") == "write", name
            assert "concurrency" in job or "concurrency" in wf, name
        else:
            assert perms.get("contents", "read") == "read", f"{name}: writes without saving"


def test_a_job_that_runs_pull_request_code_cannot_write_contents() -> None:
    for wf_name, name, job, wf in all_jobs():
        perms = job.get("permissions", wf["permissions"])
        runs_pr = "pull_request" in wf["on"] and (
            "if" not in job or "github.event_name == 'pull_request'" in job["if"])
        if runs_pr and (job_text(job) or action_modes(job)):
            assert perms.get("contents") == "read", f"{wf_name}/{name}"


def test_self_hosted_gpu_jobs_keep_fork_pull_requests_off() -> None:
    gpu_jobs = 0
    for wf_name, name, job, wf in all_jobs():
        labels = job["runs-on"] if isinstance(job["runs-on"], list) else [job["runs-on"]]
        if "self-hosted" not in labels or "pull_request" not in wf["on"]:
            continue
        gpu_jobs += 1
        cond = " ".join(str(job.get("if", "")).split())
        assert cond, f"{wf_name}/{name}: a self-hosted job with no condition"
        if "github.event_name != 'pull_request'" in cond:
            continue  # never runs for a pull request
        assert "github.event.pull_request.head.repo.full_name == github.repository" in cond
        assert "contains(github.event.pull_request.labels.*.name, 'llmperf-gpu')" in cond
        assert "labeled" in wf["on"]["pull_request"]["types"]
    assert gpu_jobs == 2


def test_the_gpu_workflow_runs_vllm_with_a_local_model() -> None:
    wf = load(CI / "github-actions-gpu.yml")
    assert wf["env"]["HF_HUB_OFFLINE"] == "1"
    for job in wf["jobs"].values():
        text = job_text(job)
        uses = [s["with"] for s in job["steps"] if is_action(s)]
        args = [u["pytest-args"] for u in uses]
        assert '--llmperf-engine vllm --llmperf-model "${{ env.MODEL_DIR }}"' in args
        assert '--llmperf-server vllm --llmperf-model "${{ env.MODEL_DIR }}"' in args
        assert 'test -d "$MODEL_DIR"' in text  # a model id instead of a directory stops here
        assert 'echo "MODEL_DIR=$MODEL_DIR" >> "$GITHUB_ENV"' in text
        assert all(set(u["extras"].split(",")) >= {"vllm", "gpu", "server"} for u in uses)
        assert len({u["results-dir"] for u in uses}) == len({u["artifact-name"] for u in uses}) \
            == len(uses) == 2  # two sessions: their reports and artifacts apart
        assert "Qwen/" not in text + repr(uses)  # no hub ids: the runner is offline from the hub


def test_cpu_caches_are_keyed_by_cpu_flags_and_the_model_is_cached() -> None:
    """Every job that sets up the CPU build (the Action's steps expanded) caches pip's wheels
    under a key with the CPU flags, and the model."""
    checked = 0
    for path in (CI / "github-actions-cpu.yml", CI / "github-actions-nightly.yml"):
        for name, job in load(path)["jobs"].items():
            steps = expanded_steps(job)
            caches = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache@")]
            if not caches:
                continue
            checked += 1
            ids = [s.get("id") for s in steps]
            assert "cpu" in ids, f"{path.name}/{name}: no CPU flags step"
            pip = [s for s in caches if s["with"]["path"] == "~/.cache/pip"]
            assert pip and "steps.cpu.outputs.flags" in pip[0]["with"]["key"]
            assert any(s["with"]["path"] == "~/.cache/pytest-llmperf" for s in caches)
    assert checked == 3  # pr-gate, main-baseline, nightly


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned(path: Path) -> None:
    """The templates' uses and the Action's own (expanded): a major version each."""
    uses = [s["uses"] for job in load(path)["jobs"].values() for s in expanded_steps(job)
            if "uses" in s]
    assert uses
    for use in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", use), f"{use}: pin a major version"


def test_reports_are_uploaded_and_published_with_pinned_actions() -> None:
    wf = load(CI / "github-actions-cpu.yml")
    uses = [s["uses"] for job in wf["jobs"].values() for s in expanded_steps(job)
            if "uses" in s]
    assert "mikepenz/action-junit-report@v5" in uses
    assert "marocchino/sticky-pull-request-comment@v2" in uses
    action = load_action()
    download = next(s for s in wf["jobs"]["report"]["steps"]
                    if s["uses"].startswith("actions/download-artifact@"))
    for name in ("pr-gate", "main-baseline"):
        (step,) = [s for s in wf["jobs"][name]["steps"] if is_action(s)]
        given = action_inputs(step, action)
        assert given["upload"] == "true"
        assert given["artifact-name"] == download["with"]["name"]  # what the report job reads
    run = next(s for s in action["runs"]["steps"] if s.get("id") == "run")["run"]
    for report in ("llmperf-junit.xml", "llmperf.json", "llmperf.html", "llmperf.md"):
        assert f'="$dir/{report}"' in run, report  # all four under results-dir, uploaded
    report = wf["jobs"]["report"]
    assert report["permissions"] == {"contents": "read", "checks": "write",
                                     "pull-requests": "write"}
    assert "head.repo.full_name == github.repository" in report["if"]


# -- GitLab --------------------------------------------------------------------------------

def gitlab() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    """The jobs, with `extends:` resolved (one level, as the template uses it)."""
    data = gitlab()
    out = {}
    for name, job in data.items():
        if name.startswith(".") or name in ("workflow", "stages", "variables", "default"):
            continue
        merged = dict(data[job["extends"]]) if "extends" in job else {}
        merged.update(job)
        out[name] = merged
    return out


def gitlab_scripts() -> Iterator[tuple[str, list[str]]]:
    for name, job in gitlab_jobs().items():
        yield name, [*job.get("before_script", []), *job["script"]]


def test_gitlab_template_structure() -> None:
    data = gitlab()
    assert data["stages"] == ["perf"]
    assert data["variables"]["GIT_DEPTH"] == "0"
    assert data["workflow"]["rules"]
    jobs = gitlab_jobs()
    assert set(jobs) == {"llmperf:merge-request", "llmperf:default-branch", "llmperf:gpu"}
    for name, job in jobs.items():
        assert job["stage"] in data["stages"], name
        assert job["rules"], name
        assert job["artifacts"]["reports"]["junit"] == "llmperf-junit.xml", name
        assert job["artifacts"]["when"] == "always", name
        assert "interruptible" in job or "resource_group" in job or any(
            "interruptible" in rule for rule in job["rules"]), name
        assert isinstance(job["script"], list) and all(isinstance(s, str) for s in job["script"])
    mr = jobs["llmperf:merge-request"]
    assert mr["interruptible"] is True
    assert mr["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert any("llmperf compare" in s for s in mr["script"])
    main = jobs["llmperf:default-branch"]
    assert main["resource_group"] and main["interruptible"] is False
    assert any("--llmperf-save --llmperf-store" in s for s in main["script"])
    gpu = jobs["llmperf:gpu"]
    assert gpu["tags"] == ["gpu"]
    mr_rule = gpu["rules"][0]["if"]
    assert "$CI_MERGE_REQUEST_SOURCE_PROJECT_ID == $CI_PROJECT_ID" in mr_rule  # no forks
    assert "llmperf-gpu" in mr_rule
    assert any("--llmperf-engine vllm" in s for s in gpu["script"])


SHELL_WORDS = {"export", "if", "then", "fi", "test", "[", "echo", "cd", "set"}


def test_every_gitlab_script_command_exists() -> None:
    """A command is a shell builtin, a project path, or a program (git, bash, grep...) that
    the job's image has: checked on this machine, which has the same Debian tools."""
    for name, script in gitlab_scripts():
        for line in script:
            first = shlex.split(placeholders(line))[0]
            if first in SHELL_WORDS:
                continue
            if first.startswith(".venv/bin/"):
                assert (ROOT / ".venv" / "bin" / Path(first).name).exists() or \
                    (VENV_BIN / Path(first).name).exists(), f"{name}: {first}"
            elif first == "python3.11":
                assert sys.version_info[:2] == (3, 11)
            else:
                assert shutil.which(first), f"{name}: no program {first!r}: {line}"
            if first == "bash":
                assert (ROOT / shlex.split(line)[1]).exists(), line
