"""vLLM in-process on one GPU: latency at low load, throughput under concurrency, and the
speed / quality of FP16 against an FP8 (or AWQ/GPTQ checkpoint) variant of the same model.

Run: ``LLMPERF_VLLM_MODEL=Qwen/Qwen2.5-0.5B-Instruct pytest --llmperf example_suites/vllm``;
compare formats with ``--llmperf-engine=vllm --llmperf-model=<hf id>
--llmperf-quant-formats=fp16,fp8 --llmperf-gpu-memory-utilization=0.4`` (or
``awq=/path/to/awq-checkpoint``): the format under test and its fp16 reference are both
loaded, so each may take only part of the GPU. Not run here (no GPU on the machine that wrote
it): it skips with the reason where vLLM or the GPU is missing.
"""

from __future__ import annotations

from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p95_ms=200, max_errors=0)
def test_single_stream_latency(llmperf_bench, vllm_engine):
    llmperf_bench(vllm_engine, Workload(input_tokens=256, output_tokens=128, requests=16))


@llmperf(min_tps=1000, max_errors=0)
def test_batched_throughput(llmperf_bench, vllm_engine):
    result = llmperf_bench(vllm_engine, Workload(input_tokens=512, output_tokens=128,
                                                 concurrency=32, requests=128, warmup=4))
    assert result.summary["gpu_mem_mb"] is None or result.summary["gpu_mem_mb"] > 0


@llmperf(max_errors=0, max_accuracy_drop=0.05)
def test_format_speed_vs_quality(llmperf_bench, llmperf_accuracy, quantized_engine):
    llmperf_bench(quantized_engine, Workload(input_tokens=256, output_tokens=64,
                                             concurrency=8, requests=32))
    # Generation task: vLLM gives no logits here, so no multiple choice.
    llmperf_accuracy(quantized_engine, "llmperf_arith", reference="fp16")
