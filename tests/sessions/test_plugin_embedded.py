"""The embedded slice as users use it: real pytest sessions, real markers, real llama.cpp
(the tiny random-weight model from conftest)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import no_internal_traceback

PASSING = """
from pytest_llmperf import Workload, llmperf

@llmperf(ttft_p95_ms=60000, min_tps=0.1)
def test_short_chat(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=24, output_tokens=6, requests=3))
    assert result.errors == 0
"""


def test_marked_tests_are_skipped_without_the_flag(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(PASSING)
    result = llmperf_pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*run with --llmperf*"])


def test_passing_thresholds(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(PASSING)
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*llmperf results*", "*test_short_chat*passed*2/2*"])


def test_failing_thresholds_list_every_failure_in_one_message(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(ttft_p50_ms=0.000001, tpot_p99_ms=0.000001, min_tps=1e12, max_rss_mb=1e9)
        def test_too_strict(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=4, requests=2))
        """
    )
    xml = llmperf_pytester.path / "junit.xml"
    result = llmperf_pytester.runpytest("--llmperf", f"--junitxml={xml}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "3 llmperf threshold(s) failed" in out
    # The one line a CI page shows (JUnit's failure message) names each failed threshold,
    # measured against limit.
    failure = ET.parse(xml).find(".//testcase/failure")
    assert failure is not None
    first_line = failure.get("message", "").splitlines()[0]
    assert re.fullmatch(
        r"Failed: llmperf: min_tps [\d.e+-]+ < 1000000000000(\.0)?; "
        r"tpot_p99_ms [\d.e+-]+ > 1e-06 \(p99 of 2 requests\); "
        r"ttft_p50_ms [\d.e+-]+ > 1e-06",
        first_line,
    ), first_line
    for fragment in ("ttft_p50_ms: measured", "limit <= 1e-06", "tpot_p99_ms: measured",
                     "min_tps: measured", "limit >= 1000000000000"):
        assert fragment in out
    assert "max_rss_mb:" not in out  # it passed
    no_internal_traceback(out)


def test_unknown_keyword_is_a_collection_error_naming_valid_ones(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import llmperf

        @llmperf(ttft_p96_ms=500)
        def test_typo(llmperf_bench, llm_engine):
            pass
        """
    )
    result = llmperf_pytester.runpytest()  # even without --llmperf
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "test_typo: unknown @llmperf keyword(s) ttft_p96_ms" in out
    assert "ttft_p95_ms" in out and "min_tps" in out
    no_internal_traceback(out)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [("ttft_p95_ms=-5", "ttft_p95_ms=-5 is negative"),
     ("min_tps='lots'", "min_tps='lots' is not a number")],
)
def test_bad_limits_are_collection_errors(
    llmperf_pytester: pytest.Pytester, args: str, fragment: str
) -> None:
    llmperf_pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.llmperf({args})
        def test_bad(llmperf_bench, llm_engine):
            pass
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(errors=1)
    assert f"test_bad: {fragment}" in result.stdout.str()


def test_marked_test_that_never_measures_fails(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import llmperf

        @llmperf(min_tps=1)
        def test_forgot(llmperf_bench, llm_engine):
            assert True
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_forgot is marked @llmperf but never called llmperf_bench*"])


def test_exact_token_counts_and_json_schema(
    llmperf_pytester: pytest.Pytester, tmp_path: Path
) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_errors=0)
        def test_counts(llmperf_bench, llm_engine):
            w = Workload(input_tokens=40, output_tokens=9, requests=4, warmup=2)
            result = llmperf_bench(llm_engine, w)
            assert result.summary["output_tokens"] == 4 * 9
            assert result.summary["input_tokens"] == 4 * 40
        """
    )
    out_json = tmp_path / "results.json"
    result = llmperf_pytester.runpytest("--llmperf", f"--llmperf-json={out_json}")
    result.assert_outcomes(passed=1)
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "pytest-llmperf/results" and doc["schema_version"] == 2
    (test,) = doc["tests"]
    assert test["nodeid"].endswith("test_counts") and test["outcome"] == "passed"
    (run,) = test["runs"]
    samples = run["samples"]
    assert len(samples) == 6 and sum(s["warmup"] for s in samples) == 2
    for s in samples:
        assert s["prompt_tokens"] == 40
        assert s["output_tokens"] == 9 and len(s["chunk_ns"]) == 9
        assert s["output_tokens_source"] == "engine"
        assert s["send_ns"] < s["chunk_ns"][0] <= s["chunk_ns"][-1] <= s["done_ns"]
    # The summary can be recomputed from the raw samples.
    measured = [s for s in samples if not s["warmup"]]
    ttfts = sorted((s["chunk_ns"][0] - s["send_ns"]) / 1e6 for s in measured)
    assert run["summary"]["ttft_max_ms"] == pytest.approx(ttfts[-1])
    assert run["summary"]["requests"] == 4 and run["summary"]["errors"] == 0
    assert run["engine"]["kind"] == "llama_cpp" and run["engine"]["model"] == "tiny.gguf"
    assert run["workload"]["output_tokens"] == 9
    assert text_is_sorted_json(out_json.read_text())


def text_is_sorted_json(text: str) -> bool:
    return text == json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n"


def test_metrics_become_junit_properties(
    llmperf_pytester: pytest.Pytester, tmp_path: Path
) -> None:
    llmperf_pytester.makepyfile(PASSING)
    xml = tmp_path / "junit.xml"
    result = llmperf_pytester.runpytest("--llmperf", f"--junitxml={xml}")
    result.assert_outcomes(passed=1)
    case = ET.parse(xml).getroot().find(".//testcase[@name='test_short_chat']")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    for key in ("ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "itl_p50_ms", "e2e_p99_ms",
                "output_tps", "rps", "peak_rss_mb", "requests", "errors"):
        assert key in props, key
    assert props["requests"] == "3" and props["errors"] == "0"
    assert float(props["output_tps"]) > 0


def test_missing_model_file_is_a_clear_error(
    llmperf_pytester: pytest.Pytester, tmp_path: Path
) -> None:
    llmperf_pytester.makepyfile(PASSING)
    missing = tmp_path / "nope.gguf"
    result = llmperf_pytester.runpytest("--llmperf", f"--llmperf-model={missing}")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert f"model '{missing}' not found" in out
    no_internal_traceback(out)


def test_a_file_that_is_not_gguf_is_a_clear_error(
    llmperf_pytester: pytest.Pytester, tmp_path: Path
) -> None:
    llmperf_pytester.makepyfile(PASSING)
    bogus = tmp_path / "weights.bin"
    bogus.write_bytes(b"\x00" * 64)
    result = llmperf_pytester.runpytest("--llmperf", f"--llmperf-model={bogus}")
    result.assert_outcomes(errors=1)
    assert "is not a GGUF file" in result.stdout.str()


def test_settings_precedence_cli_over_ini_over_env(
    llmperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    llmperf_pytester.makepyfile(
        """
        def test_settings(llmperf_settings):
            print("THREADS", llmperf_settings.threads, "CTX", llmperf_settings.n_ctx,
                  "BATCH", llmperf_settings.n_batch)
        """
    )
    monkeypatch.setenv("LLMPERF_N_BATCH", "64")  # only env sets it
    monkeypatch.setenv("LLMPERF_N_CTX", "4096")  # the ini (512) wins over env
    monkeypatch.setenv("LLMPERF_THREADS", "7")  # the ini (1) wins, the CLI (2) wins over both
    result = llmperf_pytester.runpytest("-s", "--llmperf-threads=2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*THREADS 2 CTX 512 BATCH 64*"])


def test_bad_setting_is_a_usage_error(llmperf_pytester: pytest.Pytester,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPERF_N_BATCH", "lots")
    llmperf_pytester.makepyfile(PASSING)
    result = llmperf_pytester.runpytest("--llmperf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*environment variable LLMPERF_N_BATCH: 'lots' is not a valid int*"]
    )


def test_concurrency_beyond_in_process_engine_is_said_clearly(
    llmperf_pytester: pytest.Pytester, tmp_path: Path
) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_errors=0)
        def test_conc(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=3,
                                                        requests=4, concurrency=8))
            assert result.client["concurrency"] == 1
            assert any("concurrency=8" in w for w in result.warnings)
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*serves 1 request(s) at a time*concurrency=8*"])


def test_a_short_run_in_a_log_shows_no_progress_and_the_dots_stay(
        llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(PASSING)
    # In a subprocess, so the line would go where a user sees it (around pytest's capture);
    # not a terminal, and the run takes seconds (< report/progress.SLOW_S): no progress line,
    # pytest's own line of dots intact (tests/sessions/test_progress_session.py: the others).
    result = llmperf_pytester.runpytest_subprocess("--llmperf")
    assert "[llmperf]" not in result.stdout.str()
    result.stdout.fnmatch_lines(["test_a_short_run_in_a_log_shows_no_progress_and_the_dots_stay"
                                 ".py . *"])


def test_request_too_long_for_context_is_recorded_not_crashed(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_errors=0)
        def test_overflow(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=500, output_tokens=100,
                                                        requests=2, warmup=0))
            assert result.errors == 2
            assert "exceed n_ctx=512" in result.samples[0].error
        """
    )
    result = llmperf_pytester.runpytest("--llmperf", "-W", "ignore::pytest.PytestWarning")
    result.assert_outcomes(failed=1)  # the max_errors=0 threshold, after the asserts passed
    out = result.stdout.str()
    assert "max_errors: measured 2, limit <= 0" in out
    assert "every request failed" in out


def test_bad_workload_is_one_clean_failure(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(
        """
        from pytest_llmperf import llmperf

        @llmperf(max_errors=0)
        def test_bad(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, input_tokens=0)
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "llmperf: bad workload: Workload.input_tokens=0 must be a whole number >= 1" in out
    assert "During handling of the above exception" not in out
    no_internal_traceback(out)
