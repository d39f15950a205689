"""Issue 25 item 3 as users meet it: a regression against a stored baseline comes with what
moved with it, and a test whose traffic changed since its baseline is reported as `workload
changed`, neither passed nor failed on it. The oracle gives a known schedule: its TTFT is
what moves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import git, no_internal_traceback

from pytest_llmperf.testing.oracle import OracleServer

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf(repeats=3)
def test_chat(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens={out}, requests=6,
                                       warmup=0))
"""


def commit_all(pt: pytest.Pytester, message: str) -> None:
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", message)


def session(pt: pytest.Pytester, url: str, *args: str) -> tuple[Any, dict[str, Any]]:
    out = pt.path / "results.json"
    res = pt.runpytest("--llmperf", f"--llmperf-url={url}", f"--llmperf-json={out}", *args)
    data = json.loads(out.read_text())
    out.unlink()
    return res, data


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_chat=TEST.format(out=4))
    (pytester.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n*.html\n")
    git(pytester.path, "init", "-q", "-b", "main")
    commit_all(pytester, "tests")
    return pytester


def test_a_changed_workload_is_not_compared_and_says_what_changed(
        repo: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer]) -> None:
    oracle = llmperf_oracle(ttft_ms=20, itl_ms=2)
    session(repo, oracle.url, "--llmperf-save")[0].assert_outcomes(passed=1)
    commit_all(repo, "baseline")
    Path(repo.path / "test_chat.py").write_text(TEST.format(out=8))
    commit_all(repo, "the test asks for 8 output tokens now")
    # A slower server too: were this compared, TTFT +200% would be a regression.
    slow = llmperf_oracle(ttft_ms=60, itl_ms=2)
    res, data = session(repo, slow.url)
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "workload changed" and comp["metrics"] == []
    assert comp["workload_changes"] == ["output_tokens: 4 -> 8"]
    assert comp["gate"] == "no baseline"  # the next save starts the new series
    res.stdout.fnmatch_lines(["*test_chat: workload changed - the workload changed since "
                              "baseline * (output_tokens: 4 -> 8): not compared*"])
    no_internal_traceback(res.stdout.str())


def test_a_changed_prompts_file_is_a_changed_workload(
        repo: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer]) -> None:
    """Same Workload fields, other prompts (the file's content changed): the digest of what
    was sent tells them apart."""
    prompts = repo.path / "prompts.jsonl"
    prompts.write_text('{"prompt": "alpha bravo charlie", "output_tokens": 4}\n')
    Path(repo.path / "test_chat.py").write_text(
        TEST.replace("Workload(input_tokens=8,", "Workload(prompts_file='prompts.jsonl',")
        .format(out=4))
    commit_all(repo, "prompts file")
    oracle = llmperf_oracle(ttft_ms=20, itl_ms=2)
    session(repo, oracle.url, "--llmperf-save")[0].assert_outcomes(passed=1)
    commit_all(repo, "baseline")
    prompts.write_text('{"prompt": "delta echo foxtrot golf", "output_tokens": 4}\n')
    commit_all(repo, "other prompts")
    res, data = session(repo, oracle.url)
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "workload changed"
    assert comp["workload_changes"] == [
        "the prompts differ (same workload fields: the dataset, trace, prompts file or "
        "tokenizer changed)"]


def test_a_regression_says_which_phase_moved(
        repo: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer]) -> None:
    oracle = llmperf_oracle(ttft_ms=20, itl_ms=2)
    session(repo, oracle.url, "--llmperf-save")[0].assert_outcomes(passed=1)
    commit_all(repo, "baseline")
    (repo.path / "notes.txt").write_text("x")
    commit_all(repo, "a change")
    slow = llmperf_oracle(ttft_ms=60, itl_ms=2)
    html = repo.path / "r.html"
    res, data = session(repo, slow.url, f"--llmperf-html={html}")
    res.assert_outcomes(failed=1)
    comp = data["tests"][0]["comparison"]
    ttft = next(m for m in comp["metrics"] if m["metric"] == "ttft_p50_ms")
    assert ttft["verdict"] == "regression"
    block = comp["attribution"]
    phases = {row["what"]: row for row in block["phases"]}
    prefill = phases["prefill (TTFT p50)"]
    assert prefill["baseline"] == pytest.approx(20, abs=8)
    assert prefill["current"] == pytest.approx(60, abs=8)
    assert prefill["most"] is True
    # Decode did not move (2 ms a token on both sides, noise aside).
    assert abs(phases["decode (TPOT p50)"]["change_pct"]) < 50
    assert not phases["decode (TPOT p50)"].get("most")
    assert block["workload"] == [] and block["tokens"] == []
    res.stdout.fnmatch_lines(["*ttft_p50_ms: regression*", "  what moved with it:",
                              "    phase: prefill (TTFT p50): * -> * (+*%) <- grew most"])
    assert "What moved with it" in html.read_text()
