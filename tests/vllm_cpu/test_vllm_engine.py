"""The in-process vLLM engine against a real vLLM (the CPU build here), on a tiny model:
streaming, exact counts, batching, the device it reports, engine settings, memory of its
process tree."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psutil
import pytest

from pytest_llmperf.engines import EngineError
from pytest_llmperf.engines.base import GenerationParams, Prompt
from pytest_llmperf.engines.vllm import VLLMEngine, quantization_methods, vllm_quantization
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload


def test_engine_streams_timed_chunks(vllm_engine: VLLMEngine) -> None:
    chunks: list[tuple[int, int]] = []
    ids = vllm_engine.tokenizer.tokenize("The quick brown fox")
    gen = asyncio.run(vllm_engine.generate(
        Prompt("The quick brown fox", tuple(ids), len(ids), 12), GenerationParams(max_tokens=12),
        lambda t, k: chunks.append((t, k))))
    assert gen.output_tokens == 12 and gen.source == "engine"
    assert sum(k for _, k in chunks) == 12 and len(chunks) >= 2
    assert [t for t, _ in chunks] == sorted(t for t, _ in chunks)


def test_cpu_is_a_device_not_an_error(vllm_engine: VLLMEngine) -> None:
    from vllm.platforms import current_platform

    info = vllm_engine.info()
    assert info["device"] == ("cpu" if current_platform.device_type == "cpu"
                              else info["gpu"])
    if info["device"] == "cpu":
        assert info["gpu"] is None
        assert info["settings"]["cpu_kvcache_space_gb"]
    assert info["settings"]["engine_args"] == {"enforce_eager": True}
    assert info["settings"]["effective_max_model_len"] == 4096  # the model's own
    from pytest_llmperf.engines.gpu_common import missing_for

    assert missing_for("vllm") is None


def test_output_counts_are_exact_with_ignore_eos(vllm_engine: VLLMEngine) -> None:
    result = run_benchmark(vllm_engine, Workload(input_tokens=24, output_tokens=17,
                                                 concurrency=3, requests=6, warmup=0))
    assert result.summary["errors"] == 0
    records = [r for r in result.samples if not r.warmup]
    assert [r.output_tokens for r in records] == [17] * 6
    assert all(r.prompt_tokens == 24 for r in records)
    assert all(sum(r.chunk_tokens) == 17 for r in records)


def test_concurrency_batches(vllm_engine: VLLMEngine) -> None:
    tps = {}
    for concurrency in (1, 4):
        result = run_benchmark(vllm_engine, Workload(
            input_tokens=32, output_tokens=64, concurrency=concurrency, requests=8, warmup=1))
        assert result.summary["errors"] == 0
        tps[concurrency] = result.summary["output_tps"]
        print(f"vllm {vllm_engine.info()['device']}: concurrency {concurrency}: "
              f"{tps[concurrency]:.0f} output tok/s, TTFT p50 "
              f"{result.summary['ttft_p50_ms']:.1f} ms", file=sys.stderr)
    assert tps[4] > tps[1] * 1.3, tps


def test_peak_rss_counts_the_engine_process_tree(vllm_engine: VLLMEngine) -> None:
    result = run_benchmark(vllm_engine, Workload(input_tokens=16, output_tokens=8,
                                                 requests=2, warmup=0))
    own_mb = psutil.Process(os.getpid()).memory_info().rss / 2**20
    assert len(vllm_engine.memory_pids()) >= 2, "vLLM's EngineCore runs in a child process"
    print(f"peak RSS {result.summary['peak_rss_mb']:.0f} MB (pytest alone {own_mb:.0f} MB)",
          file=sys.stderr)
    assert result.summary["peak_rss_mb"] > own_mb + 300


def test_unknown_engine_argument_is_named_with_the_valid_ones(tiny_hf_model: Path) -> None:
    with pytest.raises(EngineError, match=r"unknown vLLM engine argument max_num_seq "
                                          r"\(did you mean max_num_seqs.*valid.*enforce_eager"):
        VLLMEngine(str(tiny_hf_model), engine_args={"max_num_seq": 8})
    with pytest.raises(EngineError, match="'max_model_len' is set by the plugin; use "
                                          "--llmperf-context-len"):
        VLLMEngine(str(tiny_hf_model), engine_args={"max_model_len": 8})


def test_quantization_names_map_to_the_installed_vllm(tiny_hf_model: Path) -> None:
    methods = quantization_methods()
    model = str(tiny_hf_model)
    if "fp8_per_tensor" in methods:  # current vLLM: "fp8" online is deprecated
        assert vllm_quantization("fp8", model, methods) == "fp8_per_tensor"
    assert vllm_quantization("awq", model, methods) == "awq"
    assert vllm_quantization(None, model, methods) is None
    with pytest.raises(EngineError, match=r"no quantization 'q9'; valid: .*awq.*gptq"):
        vllm_quantization("q9", model, methods)
    with pytest.raises(EngineError, match="no quantization 'q9'"):
        VLLMEngine(model, quantization="q9")
