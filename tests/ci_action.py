"""The pytest-llmperf GitHub Action (``action.yml``) as the CI-template tests read it (a plain
module, like ``helpers.py``: shared by tests/unit/deploy/ and tests/e2e/, no test module
imports another).

- ``load_action()``: the parsed ``action.yml``.
- ``is_action(step)``: a workflow step that uses the Action (``ACTION_REF`` or ``./``).
- ``expanded_steps(job)``: a job's steps with each use of the Action replaced by the Action's
  own steps (what GitHub runs), each tagged with the ``with:`` it got (``_inputs``).
- ``expressions(text)`` / ``input_names(text)``: the ``${{ ... }}`` of a text and the
  ``inputs.X`` they read.
- ``lint_workflow(action)``: a workflow that inlines the Action's steps, for actionlint (which
  lints workflows only): ``on: workflow_call`` with the Action's inputs as string inputs, so an
  ``inputs.X`` the Action does not declare is an actionlint error.
- ``run_scripts(action)``: (step id or name, bash script) of every ``run:`` step, each script
  preceded by assignments of its step's ``env:`` names (so shellcheck sees them set).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from helpers import ROOT

from pytest_llmperf.scaffold.action_ref import ACTION_REF

ACTION_YML = ROOT / "action.yml"


def load_action(path: Path = ACTION_YML) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def is_action(step: Mapping[str, Any]) -> bool:
    return str(step.get("uses", "")) in (ACTION_REF, "./")


def expanded_steps(job: Mapping[str, Any],
                   action: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    action = action if action is not None else load_action()
    out: list[dict[str, Any]] = []
    for step in job["steps"]:
        if is_action(step):
            given = dict(step.get("with", {}))
            out += [{**inner, "_inputs": given} for inner in action["runs"]["steps"]]
        else:
            out.append(dict(step))
    return out


def action_inputs(step: Mapping[str, Any], action: Mapping[str, Any]) -> dict[str, str]:
    """The inputs a use of the Action gets: its ``with:`` over the Action's defaults."""
    values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    values.update({k: str(v) for k, v in step.get("with", {}).items()})
    return values


def expressions(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"\$\{\{(.*?)\}\}", text, re.DOTALL)]


def input_names(text: str) -> set[str]:
    return {name for expr in expressions(text)
            for name in re.findall(r"\binputs\.([A-Za-z_][\w-]*)", expr)}


def lint_workflow(action: Mapping[str, Any]) -> dict[str, Any]:
    inputs = {name: {"type": "string", "required": False,
                     "default": str(spec.get("default", ""))}
              for name, spec in action["inputs"].items()}
    return {"name": "the pytest-llmperf Action, inlined",
            "on": {"workflow_call": {"inputs": inputs}},
            "permissions": {"contents": "read"},
            "jobs": {"action": {"runs-on": "ubuntu-latest",
                                "steps": list(action["runs"]["steps"])}}}


def run_scripts(action: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for step in action["runs"]["steps"]:
        if "run" not in step:
            continue
        names = sorted(step.get("env", {}))
        declared = "".join(f'export {name}="${{{name}:-x}}"\n' for name in names)
        yield str(step.get("id", step.get("name"))), declared + step["run"]
