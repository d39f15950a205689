"""The baseline gate as users use it: real pytest sessions in real git repositories, real runs
of the tiny model, baselines saved, compared, refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import git, no_internal_traceback

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf({marker})
def test_chat(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=4, requests=2))
    assert result.errors == 0
"""


def repo_with_test(pt: pytest.Pytester, marker: str = "") -> str:
    pt.makepyfile(test_chat=TEST.format(marker=marker))
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n*.json.tmp\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    return git(pt.path, "rev-parse", "HEAD")


def baseline_files(pt: pytest.Pytester) -> list[Path]:
    return sorted((pt.path / "baselines").glob("*/*.json"))


def results(pt: pytest.Pytester, *args: str) -> tuple[Any, dict[str, Any]]:
    out = pt.path / "results.json"
    res = pt.runpytest("--llmperf", f"--llmperf-json={out}", *args)
    data = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    return res, data


def test_save_then_compare_on_the_next_commit(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    first = repo_with_test(pt)
    res, data = results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "no baseline" and comp["baseline_commit"] is None
    res.stdout.fnmatch_lines(["*llmperf baselines*", "*test_chat: no baseline*",
                              "*saved 1 run(s) of 1 test(s) to*"])
    [path] = baseline_files(pt)
    assert path.name == f"{first}.json" and path.parent.name == comp["profile_id"]
    doc = json.loads(path.read_text())
    assert doc["schema"] == "pytest-llmperf/baseline" and doc["commit"] == first
    assert doc["branch"] == "main" and doc["dirty"] is False
    assert doc["profile"]["engine"]["kind"] == "llama_cpp"
    assert doc["profile"]["hardware"]["cpu_cores"] >= 1
    [run] = doc["tests"]["test_chat.py::test_chat"]["runs"]
    assert run["summary"]["output_tokens"] == 8 and len(run["samples"]) == 3  # 1 warm-up

    # The baseline file is committed; a new commit compares against it (nearest ancestor).
    git(pt.path, "add", "baselines")
    git(pt.path, "commit", "-q", "-m", "baseline")
    (pt.path / "notes.txt").write_text("x")
    git(pt.path, "add", "notes.txt")
    git(pt.path, "commit", "-q", "-m", "change")
    res, data = results(pt)
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared" and comp["baseline_commit"] == first
    metrics = {m["metric"]: m for m in comp["metrics"]}
    assert {m for m, v in metrics.items() if v["gated"]} == {
        "ttft_p50_ms", "tpot_p50_ms", "output_tps"}
    for m in metrics.values():
        assert set(m) >= {"metric", "baseline", "current", "change_pct", "ci_low_pct",
                          "ci_high_pct", "verdict", "gated"}
        # One run on each side and no history: the noise is unknown, so no verdict.
        assert m["verdict"] == "inconclusive"
    tpot = metrics["tpot_p50_ms"]
    assert tpot["baseline"] == pytest.approx(run["summary"]["tpot_p50_ms"], rel=1e-9)
    assert tpot["change_pct"] == pytest.approx(
        100 * (tpot["current"] / tpot["baseline"] - 1), rel=1e-6)
    assert "compared with" in comp["message"]


def test_saving_appends_runs_and_repeats_are_data_points(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    # A huge tolerance: two sessions of the tiny model on a shared machine differ a lot.
    repo_with_test(pt, "repeats=3, max_regression_pct=1e6")
    res, data = results(pt, "--llmperf-save", "--llmperf-repeats=2")
    res.assert_outcomes(passed=1)
    assert len(data["tests"][0]["runs"]) == 3  # the marker beats the command line
    res, data = results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    [path] = baseline_files(pt)
    doc = json.loads(path.read_text())
    assert len(doc["tests"]["test_chat.py::test_chat"]["runs"]) == 6  # appended, not replaced
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared"
    assert {m["method"] for m in comp["metrics"]} == {"repeats"}
    assert all(m["verdict"] != "inconclusive" for m in comp["metrics"] if m["gated"])


def test_command_line_repeats(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    repo_with_test(pt)
    res, data = results(pt, "--llmperf-repeats=2")
    res.assert_outcomes(passed=1)
    assert len(data["tests"][0]["runs"]) == 2


def _scale_baseline(path: Path, factor: float) -> None:
    """Make the stored runs look ``factor`` times faster (latency / factor, tps * factor)."""
    doc = json.loads(path.read_text())
    for entry in doc["tests"].values():
        for run in entry["runs"]:
            s = run["summary"]
            for k, v in s.items():
                if isinstance(v, float) and k.endswith("_ms"):
                    s[k] = v / factor
            s["output_tps"] *= factor
    path.write_text(json.dumps(doc, sort_keys=True, indent=1))


def test_a_clear_regression_fails_in_one_message_with_the_thresholds(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    repo_with_test(pt, "repeats=3, min_tps=1e12")
    res, _ = results(pt, "--llmperf-save")
    res.assert_outcomes(failed=1)  # the threshold fails, the gate has no baseline yet
    [path] = baseline_files(pt)
    _scale_baseline(path, 100.0)  # the stored commit was 100x faster
    res, data = results(pt)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    no_internal_traceback(out)
    assert "llmperf threshold(s) failed" in out
    assert "llmperf regression(s) against baseline" in out
    for metric in ("ttft_p50_ms", "tpot_p50_ms", "output_tps"):
        assert f"{metric}: measured" in out
    assert "interval" in out and "tolerance 5%" in out
    comp = data["tests"][0]["comparison"]
    gated = {m["metric"]: m for m in comp["metrics"] if m["gated"]}
    assert {m["verdict"] for m in gated.values()} == {"regression"}
    assert gated["output_tps"]["change_pct"] < -50
    assert data["tests"][0]["outcome"] == "failed"


def test_a_generous_tolerance_lets_the_same_change_pass(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    repo_with_test(pt, "repeats=3, max_regression_pct={'ttft_p50_ms': 50000, "
                       "'tpot_p50_ms': 50000, 'output_tps': 50000}, gate=['ttft_p50_ms']")
    res, _ = results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    [path] = baseline_files(pt)
    _scale_baseline(path, 100.0)
    res, data = results(pt)
    res.assert_outcomes(passed=1)
    metrics = {m["metric"]: m for m in data["tests"][0]["comparison"]["metrics"]}
    assert metrics["ttft_p50_ms"]["verdict"] == "ok"
    assert metrics["ttft_p50_ms"]["tolerance_pct"] == 50000
    # A tail percentile is not gated: its regression is a warning, not a failure.
    assert metrics["ttft_p95_ms"]["gated"] is False
    assert metrics["ttft_p95_ms"]["verdict"] == "warn"


def test_unknown_gate_metric_is_a_collection_error(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    repo_with_test(pt, "gate=['ttft_median']")
    res, _ = results(pt)
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*gate names unknown metric(s) ttft_median*"])
    no_internal_traceback(res.stdout.str())


def test_unknown_tolerance_metric_fails_with_a_clear_message(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    repo_with_test(pt, "max_regression_pct={'tpot_median': 5}")
    res, _ = results(pt)
    res.assert_outcomes(errors=1)  # issue 15: a collection error, before any benchmark
    res.stdout.fnmatch_lines(["*unknown metric(s) tpot_median*"])
    no_internal_traceback(res.stdout.str())


def test_dirty_tree_is_refused_unless_forced(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    first = repo_with_test(pt)
    (pt.path / "test_chat.py").write_text(TEST.format(marker="") + "\n# edited\n")
    res = pt.runpytest("--llmperf", "--llmperf-save")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "--llmperf-save refuses a dirty tree" in err and "test_chat.py" in err
    assert "--llmperf-save-dirty" in err
    no_internal_traceback(err + res.stdout.str())
    assert baseline_files(pt) == []
    res = pt.runpytest("--llmperf", "--llmperf-save", "--llmperf-save-dirty")
    res.assert_outcomes(passed=1)
    [path] = baseline_files(pt)
    doc = json.loads(path.read_text())
    assert doc["dirty"] is True and doc["commit"] == first
    res.stdout.fnmatch_lines(["*saved 1 run(s)*(dirty tree)*"])


def test_no_git_repository(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makepyfile(test_chat=TEST.format(marker=""))
    res, data = results(pt)
    res.assert_outcomes(passed=1)  # no baseline is not a failure
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "no baseline" and "not inside a git repository" in comp["message"]
    res = pt.runpytest("--llmperf", "--llmperf-save")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "not inside a git repository" in res.stderr.str()
    no_internal_traceback(res.stderr.str())


def test_compare_with_a_named_ref_and_a_bad_ref(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    first = repo_with_test(pt)
    git(pt.path, "tag", "v1")
    res, _ = results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    # Another branch, not descended from v1's baseline... but we ask for v1 by name.
    git(pt.path, "checkout", "-q", "--orphan", "other")
    git(pt.path, "commit", "-q", "-m", "unrelated")
    res, data = results(pt)
    assert data["tests"][0]["comparison"]["status"] == "no baseline"
    res, data = results(pt, "--llmperf-compare", "v1")
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared" and comp["baseline_commit"] == first
    res = pt.runpytest("--llmperf", "--llmperf-compare", "no-such-ref")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "'no-such-ref' is not a commit, branch or tag" in res.stderr.str()


def test_profile_mismatch_is_refused_and_lists_what_differs(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    repo_with_test(pt)
    res, _ = results(pt, "--llmperf-save")
    [path] = baseline_files(pt)
    doc = json.loads(path.read_text())
    doc["profile"]["hardware"]["cpu_cores"] = 4096
    doc["profile_id"] = "llama_cpp-tiny-elsewhere"
    moved = path.parent.parent / doc["profile_id"] / path.name
    moved.parent.mkdir()
    moved.write_text(json.dumps(doc, sort_keys=True, indent=1))
    path.unlink()
    path.parent.rmdir()
    res, data = results(pt)
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "profile mismatch"
    assert "hardware.cpu_cores: baseline 4096" in comp["message"]
    res.stdout.fnmatch_lines(["*test_chat: profile mismatch*"])


def test_corrupt_baseline_is_named_and_other_tests_still_compare(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    repo_with_test(pt)
    res, _ = results(pt, "--llmperf-save")
    [path] = baseline_files(pt)
    # A stray non-baseline file beside it does not disturb the lookup.
    (path.parent / ("f" * 40 + ".json")).write_text("{not json")
    res, data = results(pt)
    res.assert_outcomes(passed=1)
    assert data["tests"][0]["comparison"]["status"] == "compared"
    path.write_text("{broken")
    res, data = results(pt)
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "no baseline"
    assert str(path) in comp["message"] and "corrupt" in comp["message"]
    # Saving over it refuses, keeps the file, and says so.
    res = pt.runpytest("--llmperf", "--llmperf-save")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*ERROR: baselines not saved*corrupt*"])
    assert path.read_text() == "{broken"


def test_paired_compare_runs_interleaved_pairs(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_regression_pct=10000)
        def test_ab(llmperf_bench, llm_engine):
            w = Workload(input_tokens=16, output_tokens=4, requests=2)
            v = llmperf_bench.compare(llm_engine, llm_engine, w, stage1=2, stage2=1,
                                      labels=("old", "new"))
            assert v.passed
            assert v.pairs in (2, 3) and len(v.runs_a) == len(v.runs_b) == v.pairs
            assert v.metric("tpot_p50_ms").gated
            # A sequential workload: each pair's runs were made together, request by request
            assert all(r.client["interleaved"] for r in v.runs_a + v.runs_b)
            assert llmperf_bench.runs == []  # A/B runs are not the test's own runs
            llmperf_bench(llm_engine, w)
            v = llmperf_bench.compare(llm_engine, llm_engine, w, stage1=2, stage2=0,
                                      interleave="runs")
            assert not any(r.client.get("interleaved") for r in v.runs_a + v.runs_b)

        def test_concurrent_cannot_interleave_requests(llmperf_bench, llm_engine):
            w = Workload(input_tokens=16, output_tokens=4, requests=2, concurrency=2)
            llmperf_bench.compare(llm_engine, llm_engine, w, interleave="requests")
        """
    )
    res, data = results(pt)
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*llmperf: request-level interleaving needs a sequential*"])
    no_internal_traceback(res.stdout.str())
    [ab, _] = next(t for t in data["tests"] if t["nodeid"].endswith("test_ab"))["ab"]
    assert ab["label_b"] == "new" and ab["pairs"] in (2, 3)
    assert {m["metric"] for m in ab["metrics"] if m["gated"]} == {
        "ttft_p50_ms", "tpot_p50_ms", "output_tps"}
    res.stdout.fnmatch_lines(["*A/B new vs old:*interleaved pairs*"])


def test_runs_of_another_workload_are_not_compared(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    repo_with_test(pt)
    res, _ = results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    # The same test now sends a different workload: the stored runs are not its baseline.
    (pt.path / "test_chat.py").write_text(TEST.format(marker="").replace(
        "output_tokens=4", "output_tokens=5"))
    res, data = results(pt)
    res.assert_outcomes(passed=1)
    comp = data["tests"][0]["comparison"]
    # Issue 25 item 3: not a comparison, and it says what changed (neither pass nor fail).
    assert comp["status"] == "workload changed" and comp["gate"] == "no baseline"
    assert comp["workload_changes"] == ["output_tokens: 4 -> 5"]
    assert "not compared, neither passes nor fails" in comp["message"]


def test_no_baseline_at_all_is_one_line_saying_how_to_start_one(
        llmperf_pytester: pytest.Pytester) -> None:
    """Issue 26, item 5: a first run (no baseline for any test) says so once for the session,
    with the path relative to the rootdir and how to start one, not once per test."""
    pt = llmperf_pytester
    pt.makepyfile(test_two=TEST.format(marker="").replace("def test_chat", "def test_a")
                  + TEST.format(marker="").replace("def test_chat", "def test_b"))
    repo_with_test(pt)
    res = pt.runpytest("--llmperf")
    res.assert_outcomes(passed=3)
    text = res.stdout.str()
    section = text[text.index("llmperf baselines"):].splitlines()[1:]
    lines = [ln for ln in section if ln.strip() and not ln.startswith("=")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("no baseline for any of the 3 tests - no baseline in "
                               "./baselines for HEAD "), lines[0]
    assert "--llmperf-save" in lines[0] and str(pt.path) not in lines[0]
    # One test: its own line, as before.
    res = pt.runpytest("--llmperf", "test_chat.py")
    res.stdout.fnmatch_lines(
        ["*test_chat.py::test_chat: no baseline - no baseline in ./baselines*"])
