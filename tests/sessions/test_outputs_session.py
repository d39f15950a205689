"""Outputs in the same test (issue 25, item 4) as users meet them: a baseline saved against the
oracle, then a run against an oracle whose text changes from token K on (``diverge_at``): the
gate reports how many requests changed and where, ``same_outputs=True`` fails the test, and the
paired A/B and ``llmperf compare --served`` report B's (HEAD's) answers against A's. The testbed
is recorded with every saved run; a baseline of another testbed setting is compared with a
note, one of another CPU model refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import compare_served, git

from pytest_llmperf.testing.oracle import WORDS, OracleServer

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf({marker})
def test_answers(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=12, requests=4))
"""
K = 5  # the diverging oracle's first changed token
N = 12


def repo(pt: pytest.Pytester, marker: str = "") -> None:
    pt.makepyfile(test_answers=TEST.format(marker=marker))
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n*.json.tmp\nr.json\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")


def session(pt: pytest.Pytester, url: str, *args: str) -> tuple[Any, dict[str, Any]]:
    out = pt.path / "r.json"
    res = pt.runpytest("--llmperf", "--llmperf-url", url, f"--llmperf-json={out}", *args)
    data = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    return res, data


def saved_then_committed(pt: pytest.Pytester, url: str) -> dict[str, Any]:
    res, _ = session(pt, url, "--llmperf-save")
    res.assert_outcomes(passed=1)
    [path] = sorted((pt.path / "baselines").glob("*/*.json"))
    doc = json.loads(path.read_text())
    git(pt.path, "add", "baselines")
    git(pt.path, "commit", "-q", "-m", "baseline")
    return doc


def first_changed_char() -> int:
    """Where the oracle's text first differs when token K becomes the next word."""
    same = " " + " ".join(WORDS[t] for t in range(N))
    changed = " " + " ".join(WORDS[t + (1 if t >= K else 0)] for t in range(N))
    return next(i for i, (a, b) in enumerate(zip(same, changed, strict=True)) if a != b)


def test_changed_outputs_are_counted_with_their_position_and_same_outputs_fails(
    llmperf_pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
) -> None:
    pt = llmperf_pytester
    normal = llmperf_oracle(ttft_ms=5, itl_ms=2)
    diverging = llmperf_oracle(ttft_ms=5, itl_ms=2, diverge_at=K)
    repo(pt, "same_outputs=True")
    doc = saved_then_committed(pt, normal.url)
    [run] = doc["tests"]["test_answers.py::test_answers"]["runs"]
    measured = [s for s in run["samples"] if not s["warmup"]]
    assert len(measured) == 4 and all(s["output_basis"] == "chars" for s in measured)
    assert len({s["output_digest"] for s in measured}) == 1  # the oracle says the same
    # The testbed is stored with the run: this machine's CPU side at least.
    assert run["client"]["testbed"]["cpus"] >= 1

    # The same server again: nothing changed, and the comparison says so.
    res, data = session(pt, normal.url)
    res.assert_outcomes(passed=1)
    outputs = data["tests"][0]["comparison"]["outputs"]
    assert (outputs["compared"], outputs["changed"]) == (4, 0)

    # The diverging server: every answer changed at the same character; the test fails.
    res, data = session(pt, diverging.url)
    res.assert_outcomes(failed=1)
    comp = data["tests"][0]["comparison"]
    outputs = comp["outputs"]
    assert (outputs["compared"], outputs["changed"], outputs["basis"]) == (4, 4, "chars")
    assert outputs["first_divergence"] == first_changed_char()
    assert outputs["changed_requests"] == [1, 2, 3, 4]  # request 0 is the warm-up
    assert f"outputs: 4 of 4 requests changed (first divergence at character " \
           f"{first_changed_char()}" in comp["message"]
    res.stdout.fnmatch_lines(["*same_outputs=True: greedy answers must not change*"])
    assert "[text compared: the engine streams text]" in res.stdout.str()


def test_without_same_outputs_a_change_is_reported_not_failed(
    llmperf_pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
) -> None:
    pt = llmperf_pytester
    normal = llmperf_oracle(ttft_ms=5, itl_ms=2)
    diverging = llmperf_oracle(ttft_ms=5, itl_ms=2, diverge_at=0)
    repo(pt)
    saved_then_committed(pt, normal.url)
    res, data = session(pt, diverging.url)
    res.assert_outcomes(passed=1)
    outputs = data["tests"][0]["comparison"]["outputs"]
    assert outputs["changed"] == 4 and outputs["first_divergence"] == 1  # after the space


def test_paired_ab_reports_b_answers_against_a(
    llmperf_pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
    tmp_path: Path,
) -> None:
    pt = llmperf_pytester
    normal = llmperf_oracle(ttft_ms=5, itl_ms=2)
    diverging = llmperf_oracle(ttft_ms=5, itl_ms=2, diverge_at=K)
    pt.makepyfile(test_answers=TEST.format(marker="same_outputs=True"))
    res, data = session(pt, normal.url, "--llmperf-ab", f"url={diverging.url}")
    res.assert_outcomes(failed=1)
    [entry] = data["tests"][0]["ab"]
    assert entry["outputs"]["changed"] == 4
    assert entry["outputs"]["first_divergence"] == first_changed_char()
    res.stdout.fnmatch_lines(["*A/B: outputs: 4 of 4 requests changed*"])


def test_testbed_difference_is_noted_and_another_cpu_model_refused(
    llmperf_pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
) -> None:
    pt = llmperf_pytester
    server = llmperf_oracle(ttft_ms=5, itl_ms=2)
    repo(pt)
    doc = saved_then_committed(pt, server.url)
    [path] = sorted((pt.path / "baselines").glob("*/*.json"))
    [run] = doc["tests"]["test_answers.py::test_answers"]["runs"]
    mine = dict(run["client"]["testbed"])

    def with_testbed(**changes: Any) -> dict[str, Any]:
        run["client"]["testbed"] = {**mine, **changes}
        path.write_text(json.dumps(doc, sort_keys=True, indent=1))
        res, data = session(pt, server.url)
        res.assert_outcomes(passed=1)
        return data["tests"][0]["comparison"]

    comp = with_testbed(governor="fake-governor")
    assert comp["status"] == "compared"
    now = repr(mine["governor"]) if "governor" in mine else "unknown"  # no cpufreq here
    assert comp["testbed"]["differences"] == [f"governor: baseline 'fake-governor', now {now}"]
    assert "another testbed setting that changes speed (governor: baseline " \
           "'fake-governor'" in comp["message"]
    comp = with_testbed(cpu_model="Another CPU 9000")
    assert comp["status"] == "no baseline"
    assert "not compared: the baseline ran on another hardware class (cpu_model: baseline " \
           "'Another CPU 9000'" in comp["message"]
    assert comp["metrics"] == []


def test_llmperf_compare_served_reports_the_outputs(served_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare_served(served_repo, "HEAD~1", "HEAD", "--json", str(out))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    [(nodeid, test)] = json.loads(out.read_text())["tests"].items()
    outputs = test["outputs"]
    # The two commits' servers differ in speed, not in what they answer.
    assert outputs["compared"] >= 3 and outputs["changed"] == 0
    assert f"{nodeid}: outputs: all {outputs['compared']} requests unchanged" in proc.stdout
