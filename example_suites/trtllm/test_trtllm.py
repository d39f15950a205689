"""TensorRT-LLM in-process (its LLM API, PyTorch backend) on one GPU: latency at low load and
throughput under concurrency.

Run: ``LLMPERF_TRTLLM_MODEL=Qwen/Qwen2.5-0.5B-Instruct pytest --llmperf example_suites/trtllm``
(``--llmperf-quantization=fp8`` quantizes on load through ModelOpt).
"""

from __future__ import annotations

from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p95_ms=200, max_errors=0)
def test_single_stream_latency(llmperf_bench, trtllm_engine):
    llmperf_bench(trtllm_engine, Workload(input_tokens=256, output_tokens=128, requests=16))


@llmperf(min_tps=1000, max_errors=0)
def test_batched_throughput(llmperf_bench, trtllm_engine):
    llmperf_bench(trtllm_engine, Workload(input_tokens=512, output_tokens=128,
                                          concurrency=32, requests=128, warmup=4))
