"""The vLLM suite: skipped, with the reason, on a machine without vLLM or an NVIDIA GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf.engines import Engine
from pytest_llmperf.engines.gpu_common import missing_for

MODEL = os.environ.get("LLMPERF_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_for("vllm")
    here = Path(__file__).parent
    if reason:
        skip = pytest.mark.skip(reason=f"llmperf vLLM suite: {reason}")
        for item in items:
            if item.path.is_relative_to(here):  # only this suite's tests
                item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm_engine(llmperf_settings, llmperf_engine_factory) -> Engine:
    """vLLM in-process with $LLMPERF_VLLM_MODEL (an HF id or a local checkpoint), unless the
    session already runs vllm (--llmperf-engine vllm --llmperf-model ...)."""
    if llmperf_settings.engine == "vllm":
        return llmperf_engine_factory()
    return llmperf_engine_factory(engine="vllm", model=MODEL)
