"""``llmperf bisect``: the binary search and ABBA order, the paired decision over sessions, and
the real command on a real git repository whose commits slow down a test-oracle engine.

Split by tier from tests/test_bisect.py: these are its unit tests; the others are in
tests/e2e/test_bisect_e2e.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.cli import main
from pytest_llmperf.commits.bisect import (
    BisectError,
    Comparison,
    DataPoint,
    abba_order,
    check_pairs,
    combine,
    first_bad,
    judge,
    min_pairs,
    session_results,
    workload_split,
)

# ---------------------------------------------------------------------------------------------
# Pure logic.


@pytest.mark.parametrize("boundary", range(1, 9))
def test_first_bad_finds_the_boundary_in_log2_comparisons(boundary: int) -> None:
    commits = [f"c{i}" for i in range(9)]  # c0 known good, c8 known bad
    asked: list[str] = []

    def is_bad(c: str) -> bool:  # a monotone oracle: bad from the boundary on
        asked.append(c)
        return commits.index(c) >= boundary

    assert first_bad(commits, is_bad) == boundary
    assert len(asked) <= math.ceil(math.log2(len(commits) - 1)) == 3
    assert "c0" not in asked and "c8" not in asked  # the ends are known, never re-measured


def test_first_bad_of_adjacent_commits_asks_nothing() -> None:
    assert first_bad(["good", "bad"], lambda c: pytest.fail("asked")) == 1
    with pytest.raises(ValueError):
        first_bad(["only"], lambda c: True)


def test_abba_order_alternates_which_side_goes_first() -> None:
    assert abba_order(3) == [(0, "reference"), (0, "candidate"), (1, "candidate"),
                             (1, "reference"), (2, "reference"), (2, "candidate")]
    roles = [r for _, r in abba_order(10)]
    assert roles.count("reference") == roles.count("candidate") == 10


def test_too_few_pairs_is_refused_with_the_reason() -> None:
    assert min_pairs(0.01) == 7 and min_pairs(0.05) == 5 and min_pairs(0.01, 3) == 9
    check_pairs(7, 0.01)
    with pytest.raises(BisectError, match=r"--pairs 6 can never flag .* use --pairs 7 or more"):
        check_pairs(6, 0.01)
    with pytest.raises(BisectError, match=r"split over 3 tests .* --pairs 9 or more"):
        check_pairs(7, 0.01, n_tests=3)


def test_a_session_is_one_data_point_per_test() -> None:
    doc = {"tests": [
        {"nodeid": "t.py::a", "thresholds": {"max_regression_pct": 20, "ttft_p95_ms": 9},
         "runs": [{"summary": {"tpot_p50_ms": v, "errors": 0, "kind": "x"}}
                  for v in (3.0, 1.0, 2.0)]},
        {"nodeid": "t.py::no_runs", "thresholds": {}, "runs": []},
    ]}
    [(nodeid, result)] = session_results(doc).items()
    assert nodeid == "t.py::a" and result.runs == 3
    assert result.summary == {"tpot_p50_ms": 2.0, "errors": 0, "kind": "x"}  # medians
    assert result.thresholds["max_regression_pct"] == 20
    assert combine([{"a": 1.0, "b": None}]) == {"a": 1.0, "b": None}


def _sessions(tpot: dict[str, float], n: int, jitter: float = 0.02,
              marker: dict[str, Any] | None = None) -> list[dict[str, DataPoint]]:
    out = []
    for i in range(n):
        x = 1.0 + jitter * ((-1) ** i) * (1 + i % 3) / 3  # deterministic run-to-run noise
        out.append({node: DataPoint(summary={"ttft_p50_ms": 10.0 * x, "tpot_p50_ms": t * x,
                                              "output_tps": 1000.0 / (t * x)},
                                     thresholds=dict(marker or {}), runs=1)
                    for node, t in tpot.items()})
    return out


def test_judge_flags_the_slower_test_with_alpha_split_over_the_tests() -> None:
    ref = _sessions({"t::fast": 5.0, "t::slow": 5.0}, 7)
    cand = _sessions({"t::fast": 5.0, "t::slow": 10.0}, 7)
    verdicts, left_out, per_test = judge(ref, cand, alpha=0.02)
    assert left_out == [] and per_test == pytest.approx(0.01)
    assert [v.metric for v in verdicts["t::slow"] if v.verdict == "regression"] == [
        "tpot_p50_ms", "output_tps"]
    assert all(v.verdict == "ok" for v in verdicts["t::fast"])
    assert all(v.alpha == pytest.approx(0.01) for vs in verdicts.values() for v in vs
               if v.gated)


def test_judge_uses_the_markers_tolerance_unless_the_command_line_gives_one() -> None:
    ref = _sessions({"t::x": 5.0}, 7, marker={"max_regression_pct": 150})
    cand = _sessions({"t::x": 10.0}, 7, marker={"max_regression_pct": 150})
    verdicts, _, _ = judge(ref, cand, alpha=0.01)
    assert not any(v.verdict == "regression" for v in verdicts["t::x"])  # +100% < 150%
    verdicts, _, _ = judge(ref, cand, alpha=0.01, max_regression_pct=50)
    assert any(v.verdict == "regression" for v in verdicts["t::x"])


def test_judge_leaves_out_a_test_missing_from_a_session() -> None:
    ref = _sessions({"t::a": 5.0, "t::b": 5.0}, 7)
    cand = _sessions({"t::a": 5.0, "t::b": 5.0}, 7)
    del cand[3]["t::b"]
    verdicts, left_out, per_test = judge(ref, cand, alpha=0.01)
    assert list(verdicts) == ["t::a"] and left_out == ["t::b"] and per_test == 0.01


def test_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bisect", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert "is not inside a git repository" in err and len(err.strip().splitlines()) == 1


def test_a_worktree_owner_is_gone_only_when_certainly_gone() -> None:
    """The owner file of a run's worktrees (``Worktrees.create``): a later run removes them
    only when the process it names is gone, or its pid now belongs to another process."""
    import os
    import socket

    from pytest_llmperf.commits.bisect import _owner_gone, _process_stat

    me = _process_stat(os.getpid())
    assert me is not None and me[0] in "RS"
    owner = {"pid": os.getpid(), "started": me[1], "host": socket.gethostname(),
             "keep": False}
    assert not _owner_gone(owner)  # this very process
    assert _owner_gone({**owner, "started": str(int(me[1]) + 1)})  # the pid was reused
    assert not _owner_gone({**owner, "started": None})  # alive, start unknown: kept
    assert not _owner_gone({**owner, "started": "0", "keep": True})  # --keep-worktrees
    assert not _owner_gone({**owner, "started": "0", "host": "another-host"})
    for pid in (0, -1, True, "1", 2**80):
        assert not _owner_gone({**owner, "pid": pid, "started": "0"})


def test_a_test_whose_workload_changed_between_the_commits_is_not_compared() -> None:
    """Issue 25 item 3: HEAD's test asks for 32 output tokens, BASE's for 16: not a
    comparison. The session document carries each test's workload; the split names it."""
    def doc(out: int, digest: str) -> dict[str, Any]:
        return {"tests": [
            {"nodeid": "t.py::a", "runs": [{"summary": {"tpot_p50_ms": 1.0},
                                            "workload": {"output_tokens": out},
                                            "client": {"prompts_digest": digest}}]},
            {"nodeid": "t.py::b", "runs": [{"summary": {"tpot_p50_ms": 1.0},
                                            "workload": {"output_tokens": 8},
                                            "client": {"prompts_digest": digest + "b"}}]}]}
    ref, cand = [session_results(doc(16, "x"))], [session_results(doc(32, "x"))]
    assert workload_split(ref, cand) == {"t.py::a": ["output_tokens: 16 -> 32"]}
    assert workload_split(ref, [session_results(doc(16, "y"))]) == {
        "t.py::a": ["the prompts differ (same workload fields: the dataset, trace, prompts "
                    "file or tokenizer changed)"],
        "t.py::b": ["the prompts differ (same workload fields: the dataset, trace, prompts "
                    "file or tokenizer changed)"]}
    assert workload_split(ref, ref) == {}


def test_a_regressed_test_of_a_comparison_says_what_moved_with_it() -> None:
    ref = _sessions({"t::slow": 5.0, "t::same": 5.0}, 7)
    cand = _sessions({"t::slow": 10.0, "t::same": 5.0}, 7)
    verdicts, left_out, per_test = judge(ref, cand, alpha=0.02)
    comp = Comparison(commit="b" * 40, subject="s", reference="a" * 40, pairs=7, alpha=0.02,
                      alpha_per_test=per_test, tests=verdicts, left_out=left_out,
                      sides={"reference": ref, "candidate": cand})
    block = comp.attribution("t::slow")
    assert block is not None
    phases = {row["what"]: row for row in block["phases"]}
    assert phases["decode (TPOT p50)"]["change_pct"] == pytest.approx(100, abs=1)
    assert phases["decode (TPOT p50)"]["most"] is True
    assert comp.attribution("t::same") is None
    doc = comp.to_dict()
    assert "attribution" in doc["tests"]["t::slow"] and "attribution" not in doc["tests"][
        "t::same"]
    assert doc["workload_changed"] == {}
