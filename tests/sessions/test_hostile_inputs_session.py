"""Issue 15, classes 6 and 7: odd values from a user or a file are rejected where they enter,
with one line naming the bad value; nothing is reinterpreted and nothing ends in a traceback
from our code.

The edges: ``settings.convert`` (command line, ini file, environment, the engine factory),
``Workload.__post_init__`` and the JSONL prompts reader, ``validate_marker``, and the results
files ``llmperf report --json`` reads (``view.load_results``, ``RequestRecord.from_dict``).

Split by tier from tests/test_hostile_inputs.py: these are its sessions tests; the others are
in tests/unit/test_hostile_inputs.py.
"""

from __future__ import annotations

import pytest
from helpers import no_internal_traceback

# --------------------------------------------------------------------------- real sessions


def test_session_with_an_enormous_threshold_is_a_clean_collection_error(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmperf(ttft_p95_ms=10**400)
        def test_huge(llmperf_bench, llm_engine):
            pass
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "test_huge: ttft_p95_ms=1000" in out and "is not a finite number" in out
    no_internal_traceback(out)


def test_session_with_an_unknown_regression_metric_fails_before_any_benchmark(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmperf(max_regression_pct={"tpot_p50": 5})
        def test_unknown_metric(llmperf_bench, llm_engine):
            raise AssertionError("the benchmark body ran")
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert ("test_unknown_metric: max_regression_pct names unknown metric(s) tpot_p50" in out)
    assert "the benchmark body ran" not in out
    no_internal_traceback(out)


@pytest.mark.parametrize(("option", "fragment"), [
    ("--llmperf-request-timeout=0", "--llmperf-request-timeout: '0' must be > 0"),
    ("--llmperf-alpha=nan", "--llmperf-alpha: 'nan' is not a finite number"),
    ("--llmperf-alpha=0", "--llmperf-alpha: '0' must be between 0 and 0.5"),
])
def test_session_with_a_bad_option_is_one_usage_error_line(
    llmperf_pytester: pytest.Pytester, option: str, fragment: str
) -> None:
    llmperf_pytester.makepyfile("def test_x():\n    pass\n")
    result = llmperf_pytester.runpytest("--llmperf", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"ERROR: pytest-llmperf: {fragment}" + lines[0].split(fragment, 1)[1]]
    no_internal_traceback(err + result.stdout.str())


def test_session_with_a_bad_temperature_fails_the_call_in_one_line(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmperf()
        def test_hot(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, requests=1, warmup=0, input_tokens=8, output_tokens=2,
                          temperature="hot")
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "llmperf: bad workload: Workload.temperature='hot' is not a number" in out
    no_internal_traceback(out)


def test_an_enormous_count_fails_at_once_in_one_line(
    llmperf_pytester: pytest.Pytester,
) -> None:
    """Issue 23: ``Workload(requests=10**30)`` was accepted and then built prompts until the
    machine's memory ran out. Every count has a limit (pytest_llmperf/limits.py), refused
    before anything is built: in the test's own Workload(...), in llmperf_bench's keyword
    arguments, in the marker."""
    llmperf_pytester.makepyfile(test_huge="""
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_requests(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(requests=10**30, warmup=0, input_tokens=8,
                                               output_tokens=2))

        @llmperf()
        def test_kwargs(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, requests=1, warmup=0, concurrency=10**9)
        """, test_marker="""
        from pytest_llmperf import llmperf

        @llmperf(repeats=10**30)
        def test_repeats(llmperf_bench, llm_engine):
            raise AssertionError("the body ran")
        """)
    # A hang guard, not a timing: without the limits the first test never ends.
    result = llmperf_pytester.runpytest_subprocess("--llmperf",
                                                   "--continue-on-collection-errors",
                                                   timeout=120)
    result.assert_outcomes(failed=2, errors=1)
    out = result.stdout.str()
    assert ("test_huge.py:5: llmperf: bad workload: Workload.requests="
            "1000000000000000000000000000000 is above the limit: at most 10,000,000 (every "
            "request's prompt and record are held in memory") in out
    assert ("llmperf: bad workload: Workload.concurrency=1000000000 is above the limit: at "
            "most 100,000 (") in out
    assert ("test_repeats: repeats=1000000000000000000000000000000 is above the limit: at "
            "most 10,000 (") in out
    assert "the body ran" not in out
    no_internal_traceback(out)
