"""Per-request parameters and model mixes against the oracle (issue 24, item 5): the bodies
the server saw carry the workload's params and the model names in the asked proportions, and
each model's figures follow the oracle's per-model schedule (``model_ttft_ms``); in a pytest
session, ``@llmperf(per_model=...)`` gates a model's own figures, and the JSON results carry
``by_model``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest
from helpers import oracle_bench as bench

from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleServer

TTFT = {"adapter-a": 30.0, "base": 90.0}
ITL_MS = 5.0
PARAMS = {"top_p": 0.9, "top_k": 20, "seed": 11, "presence_penalty": 0.5,
          "response_format": {"type": "json_schema", "json_schema": {
              "name": "x", "schema": {"type": "object"}}},
          "structured_outputs": {"json": {"type": "object"}}}


@pytest.fixture
def oracle(llmperf_oracle: Callable[..., OracleServer]) -> OracleServer:
    return llmperf_oracle(ttft_ms=500, itl_ms=ITL_MS, model_ttft_ms=tuple(TTFT.items()))


def test_bodies_carry_the_params_and_the_mix_and_figures_are_per_model(
        oracle: OracleServer) -> None:
    workload = Workload(input_tokens=8, output_tokens=4, requests=20, warmup=2, concurrency=4,
                        models={"adapter-a": 0.7, "base": 0.3}, params=PARAMS,
                        ignore_eos=False)
    result = bench(oracle, workload)
    assert result.summary["errors"] == 0
    logs = oracle.logs
    assert len(logs) == 22
    for log in logs:  # every request carried every field as given
        assert {k: log.body[k] for k in PARAMS} == PARAMS
        assert log.body["max_tokens"] == 4 and log.body["stream"] is True
    measured = logs[2:]  # the warm-up is sent first, alone
    assert Counter(log.body["model"] for log in measured) == {"adapter-a": 14, "base": 6}
    assert Counter(log.body["model"] for log in logs[:2]) == {"adapter-a": 1, "base": 1}
    # Each record knows its model, the same the server saw for that request.
    assert Counter(r.model for r in result.samples if not r.warmup) == {"adapter-a": 14,
                                                                        "base": 6}
    by = result.by_model
    assert sorted(by) == ["adapter-a", "base"]
    assert (by["adapter-a"]["requests"], by["base"]["requests"]) == (14, 6)
    for model, ttft in TTFT.items():  # the oracle's per-model schedule, measured back
        # (the margin: client overhead on a shared 2-core machine)
        assert ttft <= by[model]["ttft_p50_ms"] < ttft + 40
        assert by[model]["errors"] == 0 and by[model]["output_tokens"] == by[model][
            "requests"] * 4
    assert by["base"]["ttft_p50_ms"] - by["adapter-a"]["ttft_p50_ms"] > 30
    for r in result.samples:  # no request answered before its model's schedule
        assert r.model is not None and r.ttft_ns is not None
        assert r.ttft_ns / 1e6 >= TTFT[r.model]
    # The run's own summary mixes both: its p50 is adapter-a's (70% of the requests).
    assert TTFT["adapter-a"] <= result.summary["ttft_p50_ms"] < TTFT["adapter-a"] + 40
    assert result.to_dict()["by_model"] == by


def test_the_same_seed_sends_the_same_models_in_the_same_order(oracle: OracleServer) -> None:
    workload = Workload(input_tokens=8, output_tokens=2, requests=10, warmup=0,
                        models={"adapter-a": 1, "base": 1}, seed=5)
    bench(oracle, workload)
    first = [log.body["model"] for log in oracle.logs]
    oracle.logs.clear()
    bench(oracle, workload)
    assert [log.body["model"] for log in oracle.logs] == first
    assert Counter(first) == {"adapter-a": 5, "base": 5}


SUITE = """
from pytest_llmperf import Workload, llmperf

MIX = Workload(input_tokens=8, output_tokens=3, requests=10, warmup=0, concurrency=2,
               models={"adapter-a": 0.5, "base": 0.5}, params={"top_p": 0.5})

@llmperf(per_model={"adapter-a": {"ttft_p95_ms": 150}, "base": {"ttft_p95_ms": 150}})
def test_slow_base(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, MIX)

@llmperf(per_model={"adapter-a": {"ttft_p95_ms": 150}, "base": {"ttft_p95_ms": 1000}})
def test_within(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, MIX)
"""


def test_per_model_limits_gate_a_session(pytester: pytest.Pytester,
                                         llmperf_oracle: Callable[..., OracleServer]) -> None:
    # adapter-a answers in 20 ms, base in 300: far on either side of the 150 ms limits.
    oracle = llmperf_oracle(ttft_ms=500, itl_ms=ITL_MS,
                            model_ttft_ms=(("adapter-a", 20.0), ("base", 300.0)))
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                "--llmperf-json=r.json", "--llmperf-markdown=r.md")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*llmperf: per_model[[]base[]].ttft_p95_ms 3* > 150"])
    result.stdout.fnmatch_lines(["model mix test_suite.py::test_slow_base: adapter-a 5 req, "
                                 "TTFT p50 * ms, errors 0; base 5 req, TTFT p50 3* ms, "
                                 "errors 0"])
    data = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in data["tests"]}
    run = tests["test_slow_base"]["runs"][0]
    assert run["by_model"]["base"]["requests"] == 5
    assert run["by_model"]["adapter-a"]["ttft_p95_ms"] < 150 <= 300 <= run["by_model"][
        "base"]["ttft_p95_ms"]
    checks = {c["name"]: c for c in run["client"]["checks"]}
    assert checks["per_model[base].ttft_p95_ms"]["passed"] is False
    assert checks["per_model[adapter-a].ttft_p95_ms"]["passed"] is True
    assert run["workload"]["models"] == {"adapter-a": 0.5, "base": 0.5}
    markdown = (pytester.path / "r.md").read_text()
    assert "| model mix test | model | share |" in markdown
    assert "| `test_slow_base` | `base` | 50% | 5 | 0 |" in markdown


def test_a_bad_per_model_keyword_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite="""
from pytest_llmperf import Workload, llmperf

@llmperf(per_model={"a": {"ttft_p95": 70}})
def test_x(llmperf_bench, llm_engine):
    pass
""")
    result = pytester.runpytest("--llmperf", "--llmperf-url=http://127.0.0.1:9")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*per_model?'a'? has unknown threshold(s) ttft_p95; valid: e2e_max_ms*"])
