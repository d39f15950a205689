"""Baseline keys do not move with pytest's rootdir (issue 27, point 2).

pytest takes every existing path on its command line, option values included, when it picks
the rootdir: ``pytest test_perf.py --llmperf-model /usr`` (a space) makes it ``/``,
``--llmperf-model=/usr`` does not, and pytest's node ids (``tmp/.../test_perf.py::test_stream`` vs
``test_perf.py::test_stream``) change with it. A baseline is keyed by the test file's path
relative to the git repository instead (``store/keys.py``), so both spellings compare with
each other's baselines, and baselines saved under an older spelling are still read.

Real pytest sessions in a real git repository, with the in-process schedule engine (its model
setting, here an existing directory outside the repository, does not change the profile).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import git

CONFTEST = """
from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def pytest_llmperf_engine_names():
    return ["schedule"]


def pytest_llmperf_make_engine(settings):
    if settings.engine == "schedule":
        return ScheduleEngine(40.0, gap_ms=1.0)  # the model setting is only a path here
    return None
"""

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf(max_regression_pct=1e6)
def test_stream(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=4, requests=2))
    assert result.errors == 0
"""

KEY = "test_perf.py::test_stream"
MODEL = "/usr"  # an existing absolute directory outside the repository


def repo(pt: pytest.Pytester, where: str = "") -> str:
    """The suite (its test file in ``where``) in a fresh git repository, with no ini file
    (pytest's rootdir is not pinned)."""
    pt.makeconftest(CONFTEST)
    (pt.path / where).mkdir(parents=True, exist_ok=True)
    (pt.path / where / "test_perf.py").write_text(TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nresults.json\n")
    git(pt.path, "init", "-q", "-b", "main")
    return commit(pt, "suite")


def commit(pt: pytest.Pytester, message: str) -> str:
    (pt.path / "notes.txt").write_text(message + "\n")
    git(pt.path, "add", "-A")
    git(pt.path, "commit", "-q", "-m", message)
    return git(pt.path, "rev-parse", "HEAD")


def session(pt: pytest.Pytester, *args: str) -> tuple[Any, dict[str, Any]]:
    out = pt.path / "results.json"
    res = pt.runpytest("-p", "no:cacheprovider", "--llmperf", "--llmperf-engine=schedule",
                       f"--llmperf-json={out}", *args)
    data = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    return res, data


def rootdir(res: Any) -> str:
    [line] = [line for line in res.stdout.lines if line.startswith("rootdir: ")]
    return line.split(": ", 1)[1].split(",")[0].strip()


def stored_keys(pt: pytest.Pytester, sha: str) -> list[str]:
    [path] = (pt.path / "baselines").glob(f"*/{sha}.json")
    return sorted(json.loads(path.read_text())["tests"])


def test_both_spellings_of_a_path_option_share_their_baselines(
    pytester: pytest.Pytester,
) -> None:
    pt = pytester
    first = repo(pt)
    # Session 1: --opt=PATH, pytest's rootdir is the repository: the key is pytest's node id.
    res, data = session(pt, "test_perf.py", f"--llmperf-model={MODEL}", "--llmperf-save")
    res.assert_outcomes(passed=1)
    assert rootdir(res) == str(pt.path)
    [test] = data["tests"]
    assert test["nodeid"] == KEY and test["comparison"]["key"] == KEY
    assert stored_keys(pt, first) == [KEY]

    # Session 2: --opt PATH, pytest takes /usr for a test path too: the common ancestor of
    # test_perf.py and /usr, /, becomes the rootdir (no ini file pins it).
    second = commit(pt, "baseline 1")
    res, data = session(pt, "test_perf.py", "--llmperf-model", MODEL, "--llmperf-save")
    res.assert_outcomes(passed=1)
    assert rootdir(res) == "/"
    [test] = data["tests"]
    moved = os.path.relpath(pt.path / "test_perf.py", rootdir(res)) + "::test_stream"
    assert test["nodeid"] == moved != KEY  # reports keep showing pytest's node id
    assert test["key"] == KEY
    comp = test["comparison"]
    assert comp["key"] == KEY and "baseline_key" not in comp
    assert comp["status"] == "compared", comp["message"]
    assert comp["baseline_commit"] == first
    assert stored_keys(pt, second) == [KEY]  # saved under the same key, not the moved id

    # Session 3: back to --opt=PATH, compares with session 2's baseline.
    commit(pt, "baseline 2")
    res, data = session(pt, "test_perf.py", f"--llmperf-model={MODEL}")
    res.assert_outcomes(passed=1)
    assert rootdir(res) == str(pt.path)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared" and comp["baseline_commit"] == second


def _rekey(path: Path, old: str) -> None:
    doc = json.loads(path.read_text())
    [entry] = doc["tests"].values()
    doc["tests"] = {old: entry}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


@pytest.mark.parametrize("spelling", ["rootdir /", "another machine", "rootdir in tests/"])
def test_a_baseline_saved_under_an_older_key_is_still_found(
    pytester: pytest.Pytester, spelling: str,
) -> None:
    pt = pytester
    first = repo(pt, "tests")
    res, _ = session(pt, f"--llmperf-model={MODEL}", "--llmperf-save")
    res.assert_outcomes(passed=1)
    [path] = (pt.path / "baselines").glob(f"*/{first}.json")
    key = "tests/" + KEY
    assert stored_keys(pt, first) == [key]
    # What older versions stored when pytest's rootdir was elsewhere.
    old = {"rootdir /": (pt.path / "tests" / "test_perf.py").relative_to("/").as_posix()
           + "::test_stream",
           "another machine": "builds/ci/repo/" + key,
           "rootdir in tests/": KEY}[spelling]
    _rekey(path, old)
    commit(pt, "baseline")
    res, data = session(pt, f"--llmperf-model={MODEL}")
    res.assert_outcomes(passed=1)
    [test] = data["tests"]
    comp = test["comparison"]
    assert test["nodeid"] == key and comp["key"] == key
    assert comp["status"] == "compared", comp["message"]
    assert comp["baseline_commit"] == first and comp["baseline_key"] == old
    assert f"under its older key {old} (saved now as {key})" in comp["message"]
