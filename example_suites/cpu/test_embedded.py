"""The embedded example suite: the real Gemma 3 270M Q4_K_M on llama.cpp, on a CPU.

Run it with ``pytest --llmperf example_suites/cpu``. Limits are loose enough for a 2-core
laptop or CI runner; tighten them for your own hardware.
"""

from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p95_ms=2000, min_tps=5)
def test_short_chat(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=64, output_tokens=32, requests=8))
    assert result.errors == 0
    assert result.summary["output_tokens"] == 8 * 32  # exactly output_tokens per request


@llmperf(ttft_p50_ms=4000, tpot_p50_ms=200, max_rss_mb=4096)
def test_long_prompt_prefill(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=512, output_tokens=16, requests=4))
    assert result.errors == 0


@llmperf(min_goodput=0.9)
def test_goodput_under_slo(llmperf_bench, llm_engine):
    workload = Workload(input_tokens=128, output_tokens=32, requests=6,
                        slo={"ttft_ms": 3000, "tpot_ms": 250})
    result = llmperf_bench(llm_engine, workload)
    assert result.errors == 0
