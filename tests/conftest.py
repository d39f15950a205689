"""Shared fixtures: a tiny random-weight GGUF model that real llama.cpp loads in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.tiny_model import write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny llama-architecture GGUF (2 layers, 256 wide, ~400-token SPM vocab)."""
    pytest.importorskip("llama_cpp", reason="the embedded engine needs the 'llama' extra")
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture
def llmperf_pytester(
    pytester: pytest.Pytester, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A pytester whose sessions use the tiny model by default (through the ini file)."""
    # Sessions under test must not append to the real CI job's summary page.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeini(
        f"""
        [pytest]
        llmperf_model = {tiny_model}
        llmperf_threads = 1
        llmperf_n_ctx = 512
        """
    )
    return pytester
