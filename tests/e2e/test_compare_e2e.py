"""``llmperf compare BASE [HEAD]``: the paired PR gate, run for real on a git repository whose
suite measures the known-schedule engine oracle (``testing/schedule_engine.py``): a commit
that only edits a comment passes, a commit that makes one test's tokens three times slower
fails naming that test and its metrics, and every output file is written and parseable.

Split by tier from tests/test_compare.py: these are its e2e tests; the others are in
tests/unit/commits/test_compare.py.
"""

from __future__ import annotations

import json
import statistics
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import cli_exit_code, git, llmperf, worktrees

CONFTEST = '''
"""The known-schedule engine oracle, its delay per test read from delays.json."""

import json
from pathlib import Path

import pytest

from pytest_llmperf.testing.schedule_engine import ScheduleEngine

DELAYS = json.loads((Path(__file__).parent / "delays.json").read_text())


@pytest.fixture
def oracle(request):
    delay = DELAYS[request.node.name]
    return ScheduleEngine(delay, gap_ms=delay, kind="schedule-oracle")
'''

TEST_FILE = '''
from pytest_llmperf import Workload, llmperf

WORKLOAD = Workload(input_tokens=4, output_tokens=4, requests=3)


@llmperf()
def test_steady(llmperf_bench, oracle):
    llmperf_bench(oracle, WORKLOAD)


@llmperf()
def test_changed(llmperf_bench, oracle):
    llmperf_bench(oracle, WORKLOAD)
'''

# Quick: 4 pairs (8 sessions). Two tests split alpha 0.2 into 0.1 each, which 4 pairs (p = 1/16
# at best) can reach; the 50% tolerance keeps timer noise on a busy machine from flagging.
FAST = ["--pairs", "4", "--alpha", "0.2", "--max-regression-pct", "50"]


def _commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """main: c1 (4 ms per token), c2 (a comment only, checked out); branch ``slow`` off c2 whose
    test_changed waits 12 ms per token."""
    root = tmp_path_factory.mktemp("compare") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (root / "test_speed.py").write_text(textwrap.dedent(TEST_FILE))
    (root / "delays.json").write_text(json.dumps({"test_steady": 4, "test_changed": 4}))
    c1 = _commit(root, "c1: 4 ms per token")
    (root / "test_speed.py").write_text("# the same code, a comment more\n"
                                        + textwrap.dedent(TEST_FILE))
    c2 = _commit(root, "c2: a comment")
    git(root, "checkout", "-q", "-b", "slow")
    (root / "delays.json").write_text(json.dumps({"test_steady": 4, "test_changed": 12}))
    slow = _commit(root, "slow: test_changed 12 ms per token")
    git(root, "checkout", "-q", "main")
    return {"root": root, "c1": c1, "c2": c2, "slow": slow}


def _rows(stdout: str) -> dict[tuple[str, str], str]:
    """(test, metric) -> the table row's verdict column (after the p-value and the MDE)."""
    out = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) >= 8 and cells[0].startswith("test_speed.py::"):
            # test, metric, base, head, change, interval (low .. high), p, MDE, verdict
            assert cells[6] == "..", line
            out[(cells[0], cells[1])] = " ".join(cells[10:])
    return out


def test_a_comment_only_change_passes_against_head(repo: dict[str, Any]) -> None:
    root, c1, c2 = repo["root"], repo["c1"], repo["c2"]
    # An uncommitted change that would be 25 times slower: HEAD is the commit, not the tree.
    (root / "delays.json").write_text(json.dumps({"test_steady": 100, "test_changed": 100}))
    try:
        res = llmperf(root, "compare", c1, *FAST, "--", "test_speed.py")  # HEAD: c2
    finally:
        git(root, "checkout", "--", "delays.json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[compare] note: the working tree has uncommitted changes" in res.stderr
    assert res.stdout.startswith(f"no regression: HEAD {c2[:12]} against BASE {c1[:12]} "
                                 "(4 interleaved pairs, alpha 0.2 (0.1 per test))")
    rows = _rows(res.stdout)
    assert set(rows) >= {(f"test_speed.py::{t}", m) for t in ("test_changed", "test_steady")
                         for m in ("ttft_p50_ms", "tpot_p50_ms", "output_tps")}
    assert "regression" not in rows.values()
    assert all(v.endswith("(not gated)") for (_, m), v in rows.items()
               if m not in ("ttft_p50_ms", "tpot_p50_ms", "output_tps"))
    progress = [ln for ln in res.stderr.splitlines() if ln.startswith("[compare] comparing")]
    assert len(progress) == 8
    assert f"comparing {c2[:12]} against {c1[:12]}: pair 1/4, run 1/8 ({c1[:12]})" in progress[0]
    assert f"pair 2/4, run 3/8 ({c2[:12]})" in progress[2]  # ABBA: HEAD first in pair 2
    assert "Traceback" not in res.stderr
    assert len(worktrees(root)) == 1


def test_a_slowdown_fails_naming_the_test_and_writes_every_output(
    repo: dict[str, Any],
) -> None:
    root, c2, slow = repo["root"], repo["c2"], repo["slow"]
    out = root.parent / "out"
    files = {k: out / f"compare.{ext}" for k, ext in
             (("json", "json"), ("junit", "xml"), ("markdown", "md"), ("html", "html"))}
    res = llmperf(root, "compare", "main", "slow", *FAST,
                  *(a for k, p in files.items() for a in (f"--{k}", str(p))),
                  "--", "test_speed.py")
    assert res.returncode == 1, res.stdout + res.stderr
    head = res.stdout.splitlines()[0]
    assert head.startswith(f"regression: HEAD {slow[:12]} is slower than BASE {c2[:12]}: "
                           "test_speed.py::test_changed ")
    assert "test_steady" not in head
    rows = _rows(res.stdout)
    assert rows[("test_speed.py::test_changed", "tpot_p50_ms")] == "regression"
    assert rows[("test_speed.py::test_changed", "output_tps")] == "regression"
    assert all(v != "regression" for (t, _), v in rows.items() if t.endswith("test_steady"))
    assert len(worktrees(root)) == 1

    doc = json.loads(files["json"].read_text())
    assert files["json"].read_text() == json.dumps(doc, sort_keys=True, indent=1) + "\n"
    assert doc["schema"] == "pytest-llmperf/compare" and doc["version"] == 1
    assert doc["base"]["commit"] == c2 and doc["head"]["commit"] == slow
    assert doc["verdict"] == "regression" and doc["regression"] is True
    assert doc["order"] == ["base", "head", "head", "base", "base", "head", "head", "base"]
    assert doc["settings"]["alpha_per_test"] == pytest.approx(0.1)
    assert {r["test"] for r in doc["regressions"]} == {"test_speed.py::test_changed"}
    changed = doc["tests"]["test_speed.py::test_changed"]
    tpot = next(m for m in changed["metrics"] if m["metric"] == "tpot_p50_ms")
    assert tpot["verdict"] == "regression" and tpot["method"] == "paired"
    assert 100 < tpot["change_pct"] < 300  # 12 ms against 4 ms per token: +200%
    assert tpot["p_value"] == pytest.approx(1 / 16)  # all 4 pairs worse: the smallest p
    values = changed["values"]["tpot_p50_ms"]
    assert len(values["base"]) == len(values["head"]) == 4
    # Every pair slower, the median by about 3x (a loaded machine stretches the 4 ms side).
    assert all(h > b for b, h in zip(values["base"], values["head"], strict=True))
    assert statistics.median(values["head"]) > 2 * statistics.median(values["base"])
    assert doc["tests"]["test_speed.py::test_steady"]["verdict"] != "regression"

    suite = ET.parse(files["junit"]).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"test_changed", "test_steady"}
    assert cases["test_changed"].get("classname") == "test_speed"
    failure = cases["test_changed"].find("failure")
    assert failure is not None and "tpot_p50_ms" in (failure.get("message") or "")
    assert cases["test_steady"].find("failure") is None
    props = {p.get("name"): p.get("value") for p in cases["test_changed"].iter("property")}
    assert props["tpot_p50_ms.verdict"] == "regression"

    md = files["markdown"].read_text()
    assert md.startswith("### pytest-llmperf compare ❌ 1/2 tests regressed")
    row = next(ln for ln in md.splitlines()
               if "`test_speed.py::test_changed`" in ln and "tpot_p50_ms" in ln)
    # test, metric, base, head, change, interval, p, MDE, verdict
    assert row.startswith("| ") and row.endswith("❌ regression |") and row.count(" | ") == 8

    html = files["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert ('data-test="test_speed.py::test_changed" data-metric="tpot_p50_ms" '
            'data-verdict="regression"') in html
    assert "--bad:" in html  # the session report's stylesheet, inline


def test_too_few_pairs_for_the_tests_found_is_bad_usage(repo: dict[str, Any]) -> None:
    # 4 pairs reach p = 1/16; alpha 0.1 split over the 2 tests the first session found is 0.05.
    res = llmperf(repo["root"], "compare", repo["c1"], "--pairs", "4", "--alpha", "0.1",
                  "--", "test_speed.py")
    assert res.returncode == 2
    [line] = [ln for ln in res.stderr.splitlines() if ln.startswith("llmperf: error:")]
    assert "split over 2 tests" in line and "use --pairs 5 or more" in line
    assert len(worktrees(repo["root"])) == 1


def test_a_selection_without_tests_is_bad_usage(repo: dict[str, Any]) -> None:
    res = llmperf(repo["root"], "compare", repo["c1"], *FAST, "--", "-k", "no_such_test")
    assert res.returncode == 2
    first = res.stderr.split("llmperf: error: ", 1)[1].splitlines()[0]
    assert f"the pytest session at {repo['c1'][:12]}" in first
    assert "exited with status 5 (no tests collected)" in first
    assert "Traceback (most recent call last)" not in res.stderr


@pytest.mark.parametrize("argv,needle", [
    (["compare", "nosuchref"], "BASE 'nosuchref' is not a commit, branch or tag"),
    (["compare", "main", "nosuchref"], "HEAD 'nosuchref' is not a commit, branch or tag"),
    (["compare", "main", "--pairs", "6"], "--pairs 6 can never flag a regression"),
    (["compare", "main", "--pairs", "1"], "--pairs 1: need at least 2 pairs"),
    (["compare", "main", "--alpha", "0"], "--alpha 0: must be between 0 and 0.5"),
    (["compare", "main", "--max-regression-pct", "-5"], "--max-regression-pct -5: must be"),
    (["compare", "main", "--python", "/no/such/python"], "no such executable"),
    (["compare", "main", "--html", "{root}"], "--html {root}: is a directory"),
    (["compare", "main", "--junit", "{root}/conftest.py/x.xml"], "is not a directory"),
    (["compare"], "required: BASE"),
    (["compare", "main", "--pairs", "x"], "invalid int value"),
])
def test_bad_usage_is_one_line_and_exit_2(
    repo: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str,
) -> None:
    root = repo["root"]
    monkeypatch.chdir(root)
    argv = [a.format(root=root) for a in argv]
    code = cli_exit_code(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert needle.format(root=root) in err and "Traceback" not in err
    assert len(worktrees(root)) == 1
