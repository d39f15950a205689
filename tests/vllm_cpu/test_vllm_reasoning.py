"""Reasoning and answer phases on a real vLLM (the CPU build): a served tiny Llama whose
tokenizer has DeepSeek-R1's think tokens and whose chat template opens the answer with
``<think>`` (``tiny_hf_model.make_tiny_llama(think=True)``), with vLLM's ``deepseek_r1``
reasoning parser. The weights are random, so the model never ends its thinking by itself:
vLLM's thinking budget (``--reasoning-config``, the request's ``thinking_token_budget``)
forces ``</think>`` after a few tokens, and the rest of the answer is content. The stream then
carries ``reasoning`` deltas, then ``content`` deltas; the client must split them.

vLLM 0.32 reports ``usage.completion_tokens_details.reasoning_tokens`` = 0 here (it counts only
the tokens after a ``<think>`` it generated, and this template puts ``<think>`` in the prompt):
the engine does not believe a count below the reasoning chunks it saw, and counts them with
the local tokenizer instead.
"""

from __future__ import annotations

import json
import shlex

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.engines.servers import build_server
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.settings import Settings
from pytest_llmperf.testing.tiny_hf_model import make_tiny_llama

BUDGET = 6  # thinking tokens before vLLM forces </think>


def test_served_vllm_reasoning_deltas_are_split_and_ttfa_follows_ttft() -> None:
    model = make_tiny_llama(think=True)
    config = json.dumps({"reasoning_parser": "deepseek_r1"})
    settings = Settings(
        engine="openai", server="vllm", model=str(model), context_len=512,
        engine_arg=json.dumps({"enforce_eager": True}),
        server_args=f"--reasoning-parser deepseek_r1 --reasoning-config {shlex.quote(config)}")
    server = build_server(settings).start(timeout_s=400)
    try:
        engine = OpenAIEngine(server.url, chat=True, tokenizer=str(model),
                              extra_body={"thinking_token_budget": BUDGET})
        try:
            result = run_benchmark(engine, Workload(input_tokens=16, output_tokens=24,
                                                    requests=4, concurrency=2, warmup=1,
                                                    chat=True))
        finally:
            engine.close()
    finally:
        server.stop()
    s = result.summary
    assert s["errors"] == 0, [r.error for r in result.samples]
    measured = [r for r in result.samples if not r.warmup]
    for r in measured:
        # Thinking first (a chunk may carry two tokens), then the answer.
        assert 1 <= r.reasoning_chunks <= BUDGET < len(r.chunk_ns), r
        assert r.ttft_ns is not None and r.ttfa_ns is not None
        # Chunks read together share their arrival time: TTFA can equal TTFT on a busy client.
        assert r.ttfa_ns >= r.ttft_ns
        assert r.answer_ns == r.chunk_ns[r.reasoning_chunks]
        assert r.reasoning_tokens_source == "tokenizer"
        assert r.reasoning_tokens is not None and r.reasoning_tokens >= 1
        assert r.output_tokens == 24 and r.output_tokens_source == "usage"
    assert s["ttfa_p50_ms"] >= s["ttft_p50_ms"]
    assert s["itl_reasoning_p50_ms"] is not None and s["itl_answer_p50_ms"] is not None
    assert s["reasoning_tokens_total"] == sum(r.reasoning_tokens or 0 for r in measured)
    print(f"served vLLM deepseek_r1, budget {BUDGET}: TTFT p50 {s['ttft_p50_ms']:.1f} ms, "
          f"TTFA p50 {s['ttfa_p50_ms']:.1f} ms, reasoning chunks "
          f"{[r.reasoning_chunks for r in measured]}, reasoning tokens "
          f"{[r.reasoning_tokens for r in measured]}, ITL reasoning/answer p50 "
          f"{s['itl_reasoning_p50_ms']:.1f}/{s['itl_answer_p50_ms']:.1f} ms")
