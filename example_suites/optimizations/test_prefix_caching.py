"""Prefix caching on vs off, as a paired A/B (``llmperf_bench.compare``): every request
shares a long prefix (a system prompt, a document) and differs only in its last tokens.
With the cache on, only those last tokens are prefilled, so TTFT must drop, and the engine
must say it found the prefix (``prefix_hit_rate`` above zero on the "on" side, absent or zero
on the "off" side). The "on" engine's own run is then recorded and held to
``min_prefix_hit_rate`` (A/B runs are never recorded as the test's runs).

Run: ``.venv/bin/pytest --llmperf example_suites/optimizations`` (llama.cpp) and
``.venv-vllm/bin/pytest --llmperf example_suites/optimizations`` (vLLM's CPU build).
"""

from __future__ import annotations

import statistics

import pytest

from pytest_llmperf import Workload, llmperf

OPTIMIZATION = "prefix_caching"  # conftest.ab_engines: which (off, on) engine arguments

# Requests share all but their last 32 prompt tokens and are sent one at a time, so a request
# of the "on" engine always finds the previous one's prefix in its cache. 512 tokens for
# llama.cpp on Gemma (about a second of prefill on 2 cores); vLLM's tiny test model prefills
# 512 tokens in a few milliseconds, where a step's fixed cost hides the saving from a 5-pair
# interval on a fast machine (measured: -32.8%, interval -48.0% .. -13.2%), so 2048 there.
SHARED = {
    "llama_cpp": Workload(input_tokens=512, shared_prefix_tokens=480, output_tokens=4,
                          requests=4, warmup=1),
    "vllm": Workload(input_tokens=2048, shared_prefix_tokens=2016, output_tokens=4,
                     requests=4, warmup=1),
}


def median(runs, key):
    return statistics.median(run.summary[key] for run in runs)


@pytest.mark.parametrize("engine", ["llama_cpp", "vllm"])
@llmperf(gate=["ttft_p50_ms"], max_errors=0, min_prefix_hit_rate=0.5)
def test_prefix_caching_cuts_ttft(llmperf_bench, ab_engines, engine):
    off, on = ab_engines
    workload = SHARED[engine]
    verdict = llmperf_bench.compare(off, on, workload, labels=("cache off", "cache on"))
    ttft = verdict.metric("ttft_p50_ms")
    # The whole confidence interval of the paired change lies below -20%: a real drop.
    assert ttft.ci_high_pct is not None and ttft.ci_high_pct < -20, ttft.describe()
    hit_on = [run.summary["prefix_hit_rate"] for run in verdict.runs_b]
    hit_off = [run.summary["prefix_hit_rate"] for run in verdict.runs_a]
    # All but 32 tokens shared; the warm-up's own request may miss (counters include it).
    assert all(h is not None and h > 0.5 for h in hit_on), hit_on
    assert all(not h for h in hit_off), hit_off
    for run in (*verdict.runs_a, *verdict.runs_b):
        assert run.summary["output_tokens"] == workload.requests * workload.output_tokens
    print(f"\n{engine}: TTFT p50 {median(verdict.runs_a, 'ttft_p50_ms'):.1f} ms with the "
          f"prefix cache off, {median(verdict.runs_b, 'ttft_p50_ms'):.1f} ms on "
          f"({ttft.change_pct:+.1f}%, interval {ttft.ci_low_pct:+.1f}% .. "
          f"{ttft.ci_high_pct:+.1f}%); hit rate {statistics.median(hit_on):.3f} on, "
          f"{hit_off[0]} off; {verdict.pairs} pairs")
    # The "on" engine's own run, recorded (JSON, JUnit, HTML) and held to min_prefix_hit_rate.
    llmperf_bench(on, workload)
