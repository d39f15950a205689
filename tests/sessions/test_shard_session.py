"""Sharding a suite across machines (Kubernetes Indexed Jobs, CI matrices).

Split by tier from tests/test_shard.py: these are its sessions tests; the others are in
tests/unit/test_shard.py.
"""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.shard import (
    assign,
    durations_from_results,
)


def test_shard_option_deselects_other_shards(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("\n".join(f"def test_{i}(): pass" for i in range(10)))
    counts = []
    for index in range(3):
        result = pytester.runpytest(f"--llmperf-shard={index}/3")
        outcomes = result.parseoutcomes()
        counts.append(outcomes.get("passed", 0))
        assert outcomes.get("passed", 0) + outcomes.get("deselected", 0) == 10
    assert counts == [4, 3, 3]


def test_an_empty_shard_exits_0_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("\n".join(f"def test_{i}(): pass" for i in range(10)))
    result = pytester.runpytest("--llmperf-shard=12/16")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["llmperf: shard 12/16 has no tests (10 tests over 16 shards)"])
    assert result.parseoutcomes() == {"deselected": 10}
    # A suite that collects nothing at all is still pytest's exit 5.
    pytester.makepyfile("")
    assert pytester.runpytest("--llmperf-shard=0/2").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_shards_split_what_k_and_deselect_left(pytester: pytest.Pytester) -> None:
    """-k (a Job's LLMPERF_PYTEST_ARGS) selects before the split: test_2 and test_4 would
    both fall in shard 0 of the whole suite, leaving shard 1 empty (exit 5, a failed Job)."""
    pytester.makepyfile("\n".join(f"def test_{i}(): pass" for i in range(10)))
    for args in (["-k", "test_2 or test_4"],
                 [f"--deselect=test_shards_split_what_k_and_deselect_left.py::test_{i}"
                  for i in (0, 1, 3, 5, 6, 7, 8, 9)]):
        for index in range(2):
            result = pytester.runpytest(f"--llmperf-shard={index}/2", *args)
            assert result.ret == pytest.ExitCode.OK, (args, index)
            outcomes = result.parseoutcomes()
            assert outcomes.get("passed") == 1 and outcomes.get("deselected") == 9, outcomes


def test_shards_balance_by_an_earlier_results_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite="\n".join(
        f"def test_{name}(): pass" for name in ("slow", "q1", "q2", "q3", "q4", "new")))
    runs = {"slow": 100.0, "q1": 1.0, "q2": 1.0, "q3": 1.0, "q4": 1.0}
    earlier = {"schema": "pytest-llmperf/results", "schema_version": 1, "tests": [
        {"nodeid": f"test_suite.py::test_{n}", "runs": [{"summary": {"duration_s": s}}]}
        for n, s in runs.items()]}
    (pytester.path / "earlier.json").write_text(json.dumps(earlier))

    def ran(index: int, *extra: str) -> set[str]:
        result = pytester.runpytest("-v", f"--llmperf-shard={index}/2", *extra)
        assert result.ret == pytest.ExitCode.OK
        return {line.split("::")[1].split()[0] for line in result.stdout.lines
                if " PASSED" in line}

    by_time = [ran(i, "--llmperf-shard-durations=earlier.json") for i in range(2)]
    assert by_time == [{"test_slow"}, {"test_q1", "test_q2", "test_q3", "test_q4", "test_new"}]
    by_count = [ran(i) for i in range(2)]
    assert sorted(len(s) for s in by_count) == [3, 3]


@pytest.mark.parametrize(("content", "reason"), [
    (None, "No such file or directory"),
    ("{not json", "not valid JSON (Expecting property name"),
    # Issue 23, item 16: read through the bounded reader, not json.load.
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply to read"),
    ('{"tests": [{"nodeid": "t", "duration_s": NaN}]}',
     "not valid JSON (NaN is not a JSON number this tool accepts)"),
    ('{"runs": []}', 'is not a pytest-llmperf results file (no "tests" list)'),
])
def test_a_bad_durations_file_is_a_usage_error(
    pytester: pytest.Pytester, content: str | None, reason: str,
) -> None:
    pytester.makepyfile("def test_a(): pass")
    if content is not None:
        (pytester.path / "d.json").write_text(content)
    result = pytester.runpytest("--llmperf-shard=0/2", "--llmperf-shard-durations=d.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-llmperf: --llmperf-shard-durations d.json: {reason}*"])
    assert "Traceback" not in result.stderr.str()


def test_bad_shard_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--llmperf-shard=5/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*shard '5/2': INDEX must be 0..COUNT-1*"])


def test_durations_from_a_real_results_file(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_suite="""
import pytest
from pytest_llmperf import Workload, llmperf

@pytest.mark.parametrize("n", [1, 2, 3])
@llmperf(min_tps=0.01)
def test_chat(llmperf_bench, llm_engine, n):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=2 * n, requests=n))

def test_plain():
    pass
""")
    llmperf_pytester.runpytest("--llmperf", "--llmperf-json=r.json").assert_outcomes(passed=4)
    durations = durations_from_results(json.loads((llmperf_pytester.path / "r.json").read_text()))
    chats = [f"test_suite.py::test_chat[{n}]" for n in (1, 2, 3)]
    assert sorted(durations) == chats  # test_plain measured nothing: it weighs the median
    assert all(seconds > 0 for seconds in durations.values())

    expected = assign([*chats, "test_suite.py::test_plain"], 2, durations)
    for index in range(2):
        result = llmperf_pytester.runpytest(
            "-rp", "--llmperf", f"--llmperf-shard={index}/2", "--llmperf-shard-durations=r.json")
        ran = {line.split()[1] for line in result.stdout.lines if line.startswith("PASSED ")}
        assert ran == {nodeid for nodeid, shard in expected.items() if shard == index}
