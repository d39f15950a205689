"""``llmperf nightly``: real git repositories with stored baselines whose values step at a
known commit; the report names that commit as first bad, the one before as last good, the
bisect command with the recorded pytest arguments, and fails a night only once per
regression.

Split by tier from tests/test_nightly.py: these are its unit tests; the others are in
tests/sessions/test_nightly_session.py, tests/e2e/test_nightly_e2e.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from pytest_llmperf.cli import main
from pytest_llmperf.scaffold.action_ref import ACTION_REF
from pytest_llmperf.store import provenance


def llmperf(repo: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["nightly", "--dir", str(repo / "baselines"), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_store_outside_git_is_bad_usage(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "baselines").mkdir()
    rc = main(["nightly", "--dir", str(tmp_path / "baselines"), "--repo", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "not inside a git repository" in err and "--repo" in err


# ---------------------------------------------------------------------------------------------
# Provenance: the pytest arguments saved with the runs.


def test_recorded_args_drop_outputs_and_saving(tmp_path: Path) -> None:
    (tmp_path / "sub" / "tests").mkdir(parents=True)
    (tmp_path / "sub" / "tests" / "test_x.py").write_text("")
    args = ["--llmperf", "--llmperf-json", "r.json", "--llmperf-html=r.html",
            "--llmperf-markdown", "r.md", "--llmperf-save", "--llmperf-save-dirty",
            "--junitxml=j.xml", "--junit-xml", "k.xml", "-o", "llmperf_json=x.json",
            "-o", "markers=slow", "tests/test_x.py::test_a", "-k", "chat", "-n", "2"]
    assert provenance.recorded_args(args, tmp_path / "sub", tmp_path) == [
        "--llmperf", "-o", "markers=slow", "sub/tests/test_x.py::test_a", "-k", "chat",
        "-n", "2"]
    assert provenance.recorded_args(["tests"], tmp_path / "sub", tmp_path / "sub") == ["tests"]
    assert provenance.recorded_args(["x.py"], None, None) == ["x.py"]


# ---------------------------------------------------------------------------------------------
# The CI workflow.


def test_the_nightly_workflow_is_valid_and_uses_real_commands() -> None:
    root = ROOT
    wf = yaml.safe_load((root / "ci" / "github-actions-nightly.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "schedule" in on and "workflow_dispatch" in on
    assert wf["permissions"] == {"contents": "write", "issues": "write"}
    assert "group" in wf["concurrency"]
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s["run"] for s in steps if "run" in s)
    saved = [s for s in steps if s.get("uses") == ACTION_REF and s["with"]["mode"] == "save"]
    assert saved and saved[0]["continue-on-error"] is True  # the report runs after a failure
    assert "gh issue create" in runs
    assert "gh issue comment" in runs and "gh issue list" in runs
    for script in re.findall(r"(scripts/[\w./-]+)", runs):
        assert (root / script).exists(), script
    for path in re.findall(r"(example_suites/[\w/-]+)", runs):
        assert (root / path).exists(), path
    parser_commands = {"nightly", "bisect", "report", "baselines"}
    for line in re.findall(r"^\s*llmperf ([a-z]+)", runs, re.MULTILINE):
        assert line in parser_commands  # (the Action put its llmperf on the PATH)
    lines = runs.replace("\\\n", " ").splitlines()  # backslash-continued lines joined
    nightly_lines = [ln.split("llmperf nightly", 1)[1] for ln in lines
                     if ln.strip().startswith("llmperf nightly")]
    assert nightly_lines
    from pytest_llmperf.cli.main import build_parser

    for text in nightly_lines:  # every option the workflow gives exists
        build_parser().parse_args(["nightly", *shlex.split(text)])
    assert "upload-artifact" in json.dumps(steps)
