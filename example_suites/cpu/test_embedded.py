"""The embedded example suite: the real Gemma 3 270M Q4_K_M on llama.cpp, on a CPU.

Run it with ``pytest --llmperf example_suites/cpu``. The limits are loose on purpose: this
suite must pass on a busy 2-core CI runner (measured there: TTFT p50 0.25-0.9 s for 64 prompt
tokens, 1.8-5.6 s for 512, 12-22 output tokens/s). Tighten them for your own hardware, and use
stored baselines to catch regressions smaller than that.
"""

from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p95_ms=8000, min_tps=2)
def test_short_chat(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=64, output_tokens=32, requests=8))
    assert result.errors == 0
    assert result.summary["output_tokens"] == 8 * 32  # exactly output_tokens per request


@llmperf(ttft_p50_ms=20000, tpot_p50_ms=500, max_rss_mb=4096)
def test_long_prompt_prefill(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=512, output_tokens=16, requests=4))
    assert result.errors == 0


@llmperf(min_goodput=0.8)
def test_goodput_under_slo(llmperf_bench, llm_engine):
    workload = Workload(input_tokens=128, output_tokens=32, requests=6,
                        slo={"ttft_ms": 10000, "tpot_ms": 500})
    result = llmperf_bench(llm_engine, workload)
    assert result.errors == 0


@llmperf(e2e_p95_ms=30000, max_errors=0)
def test_real_prompts_from_jsonl(llmperf_bench, llm_engine):
    """Real prompts of varying length from a JSONL file (one object per line)."""
    from pathlib import Path

    prompts = Path(__file__).with_name("prompts.jsonl")
    result = llmperf_bench(llm_engine, Workload(prompts_file=str(prompts), requests=5))
    assert result.summary["output_tokens"] == 48 + 32 + 48 + 24 + 40
