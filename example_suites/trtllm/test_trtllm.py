"""TensorRT-LLM in-process (its LLM API, PyTorch backend) on one GPU: latency at low load and
throughput under concurrency.

Run: ``LLMPERF_TRTLLM_MODEL=Qwen/Qwen2.5-0.5B-Instruct pytest --llmperf example_suites/trtllm``.
Quantized: point ``LLMPERF_TRTLLM_MODEL`` at a pre-quantized ModelOpt checkpoint (e.g.
``nvidia/Llama-3.1-8B-Instruct-FP8``); TensorRT-LLM's PyTorch backend reads the format from
the checkpoint and does not quantize on load. ``--llmperf-context-len`` sets ``max_seq_len``;
other ``LLM(...)`` arguments go through ``--llmperf-engine-arg KEY=VALUE`` (for example
``max_batch_size=64`` or ``kv_cache_config='{"free_gpu_memory_fraction": 0.5}'``).

Never executed by this project (no GPU in CI): the adapter is checked against TensorRT-LLM's
source only, see docs/engines-verified.md.
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
