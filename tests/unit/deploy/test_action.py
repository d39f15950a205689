"""The pytest-llmperf GitHub Action (``action.yml``): its interface (the inputs and outputs
ci/README.md documents and ``llmperf init`` writes against), and its structure: every
``inputs.X`` it reads is declared, every declared input is read, every output comes from a
value its run step writes, every ``uses:`` is pinned, inputs reach shell only through
``env:`` (never ``${{ }}`` in a script), and the verdict fails the job only after the reports
are uploaded. actionlint and shellcheck on its steps, and the steps run, are in
tests/e2e/test_ci_templates_e2e.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from ci_action import (
    expanded_steps,
    expressions,
    input_names,
    is_action,
    load_action,
)
from helpers import ROOT
from helpers import load_ci_yaml as load

from pytest_llmperf.scaffold.action_ref import ACTION_REF

INTERFACE_INPUTS = {
    "suite": "tests/perf", "mode": "auto", "store": "git:llmperf-baselines",
    "python-version": "3.11", "extras": "llama", "base-ref": "", "pytest-args": "",
    "results-dir": "llmperf-results", "upload": "true", "artifact-name": "llmperf-reports"}
INTERFACE_OUTPUTS = {"verdict", "report-html", "report-json", "report-junit", "summary-md"}


@pytest.fixture
def action() -> dict[str, Any]:
    return load_action()


def structure_problems(action: dict[str, Any]) -> list[str]:
    """Every broken rule of the Action's structure, one line each."""
    problems = []
    steps = action["runs"]["steps"]
    if action["runs"].get("using") != "composite":
        problems.append("runs.using is not composite")
    declared = set(action["inputs"])
    texts = [repr(step) for step in steps] + [repr(action["outputs"])]
    texts += ["${{ " + str(step["if"]) + " }}" for step in steps if "if" in step]  # bare if:
    used = set().union(*(input_names(t) for t in texts))
    problems += [f"inputs.{name} is read but not declared" for name in sorted(used - declared)]
    problems += [f"input {name} is declared but never read" for name in sorted(declared - used)]
    ids = {step.get("id") for step in steps}
    for step in steps:
        where = step.get("id") or step.get("name") or step.get("uses")
        if "run" in step:
            if step.get("shell") != "bash":
                problems.append(f"{where}: a composite run step needs shell: bash")
            if "${{" in step["run"]:
                problems.append(f"{where}: an expression in the script text (pass it "
                                "through env:)")
        if "uses" in step and not re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]):
            problems.append(f"{where}: {step['uses']} is not pinned to a major version")
        for expr in expressions(repr(step)):
            for ref in re.findall(r"\bsteps\.([\w-]+)\.", expr):
                if ref not in ids:
                    problems.append(f"{where}: steps.{ref} is no step of the Action")
    written = {sid: set(re.findall(r'^\s*echo\s+"([\w-]+)=', step.get("run", ""), re.MULTILINE))
               for step in steps if (sid := step.get("id"))}
    for name, spec in action["outputs"].items():
        m = re.fullmatch(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}", spec["value"])
        if not m:
            problems.append(f"output {name}: not a step's output")
        elif m.group(2) not in written.get(m.group(1), set()):
            problems.append(f"output {name}: step {m.group(1)} writes no {m.group(2)}")
    return problems


def test_the_action_is_composite_and_its_structure_holds(action: dict[str, Any]) -> None:
    assert structure_problems(action) == []


def test_the_structure_check_can_fail(action: dict[str, Any]) -> None:
    steps = action["runs"]["steps"]
    run = next(s for s in steps if s.get("id") == "run")
    run["env"]["EXTRA"] = "${{ inputs.no-such-input }}"
    run["run"] += '\necho "${{ inputs.suite }}"\n'
    del run["shell"]
    action["outputs"]["verdict"]["value"] = "${{ steps.run.outputs.no-such }}"
    action["inputs"]["unread"] = {"default": ""}
    steps.append({"uses": "actions/cache@main"})
    problems = "\n".join(structure_problems(action))
    for expected in ("inputs.no-such-input is read but not declared",
                     "input unread is declared but never read",
                     "run: a composite run step needs shell: bash",
                     "run: an expression in the script text",
                     "actions/cache@main is not pinned",
                     "output verdict: step run writes no no-such"):
        assert expected in problems, problems


def test_the_interface_is_as_documented(action: dict[str, Any]) -> None:
    defaults = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    assert defaults == INTERFACE_INPUTS
    assert set(action["outputs"]) == INTERFACE_OUTPUTS
    assert ACTION_REF == "pytest-llmperf/pytest-llmperf@v1"
    readme = (ROOT / "ci" / "README.md").read_text()
    for name in [*INTERFACE_INPUTS, *INTERFACE_OUTPUTS]:
        assert f"`{name}`" in readme, f"ci/README.md does not document {name}"
    assert f"uses: {ACTION_REF}" in readme


def test_the_verdict_fails_the_job_only_after_the_reports_are_out(
        action: dict[str, Any]) -> None:
    steps = action["runs"]["steps"]
    ids = [s.get("id") or s.get("uses", "").split("@")[0] or s.get("name") for s in steps]
    run_at = ids.index("run")
    upload_at = ids.index("actions/upload-artifact")
    assert run_at < upload_at < len(steps) - 1
    run = steps[run_at]
    assert "set +e" in run["run"]  # the suite's failure does not end the step early
    assert "$GITHUB_STEP_SUMMARY" in run["run"]
    upload = steps[upload_at]
    assert upload["if"].startswith("always()") and "inputs.upload == 'true'" in upload["if"]
    assert upload["with"]["path"] == "${{ inputs.results-dir }}"
    last = steps[-1]
    assert last["if"] == "always()" and "exit 1" in last["run"]
    assert last["env"]["VERDICT"] == "${{ steps.run.outputs.verdict }}"


def test_the_action_installs_from_its_own_checkout_with_the_cmake_args(
        action: dict[str, Any]) -> None:
    """scripts/setup.sh of the Action's checkout: it sources scripts/cmake_args.sh (AMX off)."""
    install = next(s for s in action["runs"]["steps"] if s.get("id") == "install")
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert 'bash "$ACTION_PATH/scripts/setup.sh"' in install["run"]
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert ". scripts/cmake_args.sh" in setup
    assert "-DGGML_AMX_TILE=OFF" in (ROOT / "scripts" / "cmake_args.sh").read_text()


def test_the_action_caches_are_keyed_by_cpu_flags(action: dict[str, Any]) -> None:
    steps = action["runs"]["steps"]
    assert "cpu" in [s.get("id") for s in steps]
    caches = {s["with"]["path"]: s["with"] for s in steps
              if str(s.get("uses", "")).startswith("actions/cache@")}
    assert "steps.cpu.outputs.flags" in caches["~/.cache/pip"]["key"]
    assert "steps.cpu.outputs.install" in caches["~/.cache/pip"]["key"]
    assert "~/.cache/pytest-llmperf" in caches


@pytest.mark.parametrize("name", ["github-actions-cpu.yml", "github-actions-gpu.yml",
                                  "github-actions-nightly.yml"])
def test_the_templates_use_the_action(name: str) -> None:
    wf = load(ROOT / "ci" / name)
    uses = [s for job in wf["jobs"].values() for s in job["steps"] if is_action(s)]
    assert uses and all(s["uses"] == ACTION_REF for s in uses)
    for step in uses:
        assert set(step.get("with", {})) <= set(INTERFACE_INPUTS), step
        assert step["with"]["mode"] in ("compare", "gate", "save"), step
        assert (ROOT / step["with"]["suite"]).is_dir(), step["with"]["suite"]
    for job in wf["jobs"].values():
        if any(is_action(s) for s in job["steps"]):
            checkout = job["steps"][0]
            assert checkout["uses"] == "actions/checkout@v4"
            assert checkout["with"]["fetch-depth"] == 0
            assert len(expanded_steps(job)) > len(job["steps"])
