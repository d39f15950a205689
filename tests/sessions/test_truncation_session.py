"""An answer shorter than the exact length the workload asked for is an error of its own kind,
``truncated``, on every engine; a server that refuses because prompt + output exceed its
context is a ``context`` error that says so. Both fail the test (unless ``max_errors`` allows
them) and count in every report's errors.

Served: the test oracle cutting answers short (``truncate_at``) and answering as vLLM's server
does when prompt + max_tokens exceed its max_model_len (``clamp_max_tokens``). Embedded: real
llama.cpp on the tiny model with a context too small for prompt + output.

Split by tier from tests/test_truncation.py: these are its sessions tests; the others are in
tests/unit/engines/test_truncation.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import no_internal_traceback

from pytest_llmperf.testing.oracle import OracleServer

Oracle = Callable[..., OracleServer]


SHORT_ANSWERS = """
from pytest_llmperf import Workload, llmperf

W = Workload(input_tokens=6, output_tokens=12, requests=3)


@llmperf(min_tps=1)
def test_exact(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, W)


@llmperf(max_errors=3)
def test_allowed(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, W)
    assert result.errors == 3
    assert {r.error_kind for r in result.samples} == {"truncated"}
    assert [r.output_tokens for r in result.samples] == [5, 5, 5, 5]


@llmperf()
def test_end_of_generation_allowed(llmperf_bench, llm_engine):
    # Without an exact length asked for, a short answer is an answer.
    result = llmperf_bench(llm_engine, Workload(input_tokens=6, output_tokens=12, requests=3,
                                                ignore_eos=False))
    assert result.errors == 0 and result.summary["output_tokens"] == 15
"""


def test_a_server_that_cuts_answers_short_fails_the_test(pytester: pytest.Pytester,
                                                        llmperf_oracle: Oracle) -> None:
    server = llmperf_oracle(ttft_ms=2, itl_ms=1, truncate_at=5)
    pytester.makepyfile(SHORT_ANSWERS)
    out = pytester.path / "out.json"
    res = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}",
                             f"--llmperf-json={out}", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        "*llmperf: 3 of 3 request(s) failed (3 truncated); first error: truncated: "
        "5 of the 12 output tokens "
        "asked for (usage count); 6 prompt + 12 output tokens may not fit the context "
        "(--llmperf-context-len), or the engine stopped early*"])
    no_internal_traceback(res.stdout.str())
    tests = {t["nodeid"].split("::")[-1]: t for t in json.loads(out.read_text())["tests"]}
    for name in ("test_exact", "test_allowed"):
        run = tests[name]["runs"][0]
        assert (run["summary"]["requests"], run["summary"]["errors"]) == (3, 3)
        assert run["summary"]["output_tokens"] == 0  # nothing measured counts as output
        assert [s["error_kind"] for s in run["samples"] if not s["warmup"]] == ["truncated"] * 3
    assert tests["test_exact"]["outcome"] == "failed"


def test_vllms_refusal_when_the_context_is_too_small_says_so(pytester: pytest.Pytester,
                                                              llmperf_oracle: Oracle) -> None:
    # vLLM cuts max_tokens to max_model_len - prompt and then refuses min_tokens above it.
    server = llmperf_oracle(ttft_ms=2, itl_ms=1, max_model_len=20, clamp_max_tokens=True)
    pytester.makepyfile("""
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_long(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=12, output_tokens=16, requests=2))

@llmperf()
def test_fits(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=12, output_tokens=8, requests=2))
""")
    res = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}",
                             "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines([
        "*llmperf: 2 of 2 request(s) failed (2 context); first error: "
        "12 prompt + 16 output tokens do not "
        "fit the server's context; start it with a longer one (--llmperf-context-len) or ask "
        "for fewer tokens (the server said: min_tokens must be less than or equal to "
        "max_tokens=8, got 16.)"])
    no_internal_traceback(res.stdout.str())


EMBEDDED = """
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_too_long(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=200, output_tokens=64, requests=2,
                                       warmup=0))
"""


@pytest.mark.parametrize("option", ["--llmperf-n-ctx=256", "--llmperf-context-len=256"])
def test_embedded_llama_cpp_with_too_small_a_context_fails_the_test(
    llmperf_pytester: pytest.Pytester, tiny_model: Path, option: str
) -> None:
    # The ini gives n_ctx 512; 200 prompt + 64 output tokens do not fit in 256 (llama.cpp
    # rounds a context up to a multiple of 256: 64 would also be 256).
    llmperf_pytester.makepyfile(EMBEDDED)
    out = llmperf_pytester.path / "out.json"
    res = llmperf_pytester.runpytest("--llmperf", option, f"--llmperf-json={out}",
                                     "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(
        ["*llmperf: 2 of 2 request(s) failed (2 context); first error: *200*64*256*"])
    no_internal_traceback(res.stdout.str())
    run = json.loads(out.read_text())["tests"][0]["runs"][0]
    assert run["summary"]["errors"] == 2
    kinds = {s["error_kind"] for s in run["samples"]}
    assert len(kinds) == 1 and kinds.pop().startswith("context"), run["samples"][0]["error"]
