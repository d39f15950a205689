"""A server that dies during a capacity search (issue 23, class 1).

Failed requests are errors, not goodput below the target: the oracle that stops answering
mid-search (``OracleConfig.die_after``) must fail the test with one line naming how many
requests failed at which rate, not pass it with a capacity bracketed under the rate it died at.
"""

from __future__ import annotations

import pytest
from helpers import no_internal_traceback

from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

TEST = """
from pytest_llmperf import Workload, llmperf

WL = Workload(input_tokens=4, output_tokens=4, requests=8, warmup=0, seed=1,
              arrival="gamma", burstiness=50.0)

@llmperf()
def test_capacity(llmperf_bench, llm_engine):
    llmperf_bench.capacity(llm_engine, WL, slo={"e2e_ms": 2000}, goodput=0.9,
                           start_rps=4.0, max_rps=16.0, rel_tol=0.5)
"""


def test_server_dying_mid_search_fails_the_test(pytester: pytest.Pytester) -> None:
    # 8 requests at 4/s pass; the server dies after 12, halfway through the 8/s step.
    with OracleServer(OracleConfig(ttft_ms=20, itl_ms=5, die_after=12)) as server:
        pytester.makepyfile(TEST)
        result = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*llmperf: capacity: 4 of 8 request(s) failed at 8 req/s*the search stopped*"])
    no_internal_traceback(result.stdout.str())
    assert "req/s in [" not in result.stdout.str()  # no capacity is stated
