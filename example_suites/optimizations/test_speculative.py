"""Speculative decoding on vs off, as a paired A/B (``llmperf_bench.compare``), on a workload
where drafting from the prompt pays: each prompt is repetitive text followed by a request to
repeat it (``echo_prompts.jsonl``), so the answer echoes the prompt and n-gram / prompt-lookup
drafts are often right. The answers must keep their exact length, the "on" engine must report
accepted drafts (``spec_accept_rate`` above zero, ``spec_accept_len`` above one; nothing on the
"off" side), and end-to-end latency must drop (the paired interval below zero). The
speedup is printed (``-s``); the "on" engine's own run is then recorded (A/B runs never are)
and held to ``min_spec_accept_rate``.

Run: ``.venv/bin/pytest --llmperf example_suites/optimizations`` (llama.cpp) and
``.venv-vllm/bin/pytest --llmperf example_suites/optimizations`` (vLLM's CPU build).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from pytest_llmperf import Workload, llmperf

OPTIMIZATION = "speculative"  # conftest.ab_engines: which (off, on) engine arguments
ECHO = Workload(prompts_file=str(Path(__file__).with_name("echo_prompts.jsonl")),
                requests=6, warmup=1)
OUTPUT_TOKENS = 48  # every line of echo_prompts.jsonl


def median(runs, key):
    return statistics.median(run.summary[key] for run in runs)


@pytest.mark.parametrize("engine", ["llama_cpp", "vllm"])
@llmperf(gate=["e2e_p50_ms"], max_errors=0, min_spec_accept_rate=0.1)
def test_speculative_decoding_speeds_up_echoes(llmperf_bench, ab_engines, engine):
    off, on = ab_engines
    verdict = llmperf_bench.compare(off, on, ECHO, labels=("spec off", "spec on"))
    e2e = verdict.metric("e2e_p50_ms")
    # The whole confidence interval of the paired change lies below zero: really faster.
    assert e2e.ci_high_pct is not None and e2e.ci_high_pct < 0, e2e.describe()
    for run in (*verdict.runs_a, *verdict.runs_b):
        assert run.summary["output_tokens"] == ECHO.requests * OUTPUT_TOKENS
    accept = [run.summary["spec_accept_rate"] for run in verdict.runs_b]
    length = [run.summary["spec_accept_len"] for run in verdict.runs_b]
    assert all(a is not None and a > 0 for a in accept), accept
    assert all(n is not None and n > 1 for n in length), length
    assert all(run.summary["spec_accept_rate"] is None for run in verdict.runs_a)
    speedup = median(verdict.runs_a, "e2e_p50_ms") / median(verdict.runs_b, "e2e_p50_ms")
    print(f"\n{engine}: speculative decoding speedup {speedup:.2f}x (e2e p50), acceptance "
          f"{statistics.median(accept):.2f}, mean accepted length {statistics.median(length):.2f}"
          f", {verdict.pairs} pairs")
    # The "on" engine's own run, recorded (JSON, JUnit, HTML) and held to min_spec_accept_rate.
    llmperf_bench(on, ECHO)
