"""Trace replay on a real vLLM (the CPU build, prefix caching on, the tiny model): the hit
rate vLLM's own metrics report follows the trace's offline ideal (run/trace_cache.py), and the
requests the trace expects cached answer their first token sooner than the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.trace_cache import expected_cached_tokens
from pytest_llmperf.run.traces import read_trace
from pytest_llmperf.run.workload import Workload

BLOCK = 256  # a multiple of any block size vLLM's CPU build uses
BLOCKS = 8  # 2048-token prompts: their prefill shows on the tiny model


def write_trace(path: Path, n: int = 16) -> None:
    """Request 0: blocks 0..7; odd requests share its first 7 blocks (1792 tokens, expected
    cached), even ones have blocks of their own (nothing cached). 300 ms apart."""
    rows, next_id = [], BLOCKS
    for k in range(n):
        if k == 0:
            ids = list(range(BLOCKS))
        elif k % 2:
            ids, next_id = [*range(BLOCKS - 1), next_id], next_id + 1
        else:
            ids, next_id = list(range(next_id, next_id + BLOCKS)), next_id + BLOCKS
        rows.append({"timestamp": 300 * k, "input_length": BLOCK * BLOCKS, "output_length": 4,
                     "hash_ids": ids})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_vllm_prefix_cache_follows_the_trace(tiny_hf_model: Path, tmp_path: Path) -> None:
    from pytest_llmperf.engines.vllm import VLLMEngine

    trace = tmp_path / "trace.jsonl"
    write_trace(trace)
    entries = read_trace(trace)
    assert expected_cached_tokens(entries, BLOCK) == [0 if k % 2 == 0 else 1792
                                                      for k in range(16)]
    engine = VLLMEngine(str(tiny_hf_model), max_model_len=4096, engine_args={
        "enforce_eager": True, "enable_prefix_caching": True})
    try:
        wl = Workload(trace=str(trace), requests=16, warmup=1, trace_block_size=BLOCK)
        result = run_benchmark(engine, wl)
    finally:
        engine.close()
    s = result.summary
    print({k: s[k] for k in ("prefix_hit_rate", "trace_ideal_hit_rate", "trace_cached_requests",
                             "ttft_cached_p50_ms", "ttft_uncached_p50_ms")})
    assert s["errors"] == 0 and s["trace_cached_requests"] == 8
    assert s["trace_ideal_hit_rate"] == pytest.approx(8 * 1792 / (16 * 2048))
    assert s["prefix_hit_rate"] == pytest.approx(s["trace_ideal_hit_rate"], abs=0.03)
    assert s["ttft_cached_p50_ms"] < 0.8 * s["ttft_uncached_p50_ms"]


def test_the_tiny_models_tokenizer_reads_the_block_text_back(tiny_hf_model: Path) -> None:
    """What a served vLLM sees: the prompts' text, tokenized by the model's own tokenizer
    (byte-level BPE), gives back exactly the blocks' tokens."""
    from pytest_llmperf.engines.tokenizers import load_hf_tokenizer
    from pytest_llmperf.run.trace_prompts import trace_prompts

    tok = load_hf_tokenizer(tiny_hf_model)
    sample = Path(__file__).parents[2] / "example_suites" / "traces" / "mooncake_sample.jsonl"
    prompts = trace_prompts(tok, Workload(trace=str(sample), requests=48, warmup=1,
                                          trace_block_size=32))
    assert len(prompts) == 49
    for p in prompts:
        assert tuple(tok.tokenize(p.text, add_special=True)) == p.token_ids
        assert len(p.token_ids or ()) == p.input_tokens
