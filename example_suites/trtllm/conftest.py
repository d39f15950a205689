"""The TensorRT-LLM suite: skipped, with the reason, without TensorRT-LLM or an NVIDIA GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf.engines import Engine
from pytest_llmperf.engines.gpu_common import missing_for

MODEL = os.environ.get("LLMPERF_TRTLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_for("trtllm")
    here = Path(__file__).parent
    if reason:
        skip = pytest.mark.skip(reason=f"llmperf TensorRT-LLM suite: {reason}")
        for item in items:
            if item.path.is_relative_to(here):  # only this suite's tests
                item.add_marker(skip)


@pytest.fixture(scope="session")
def trtllm_engine(llmperf_settings, llmperf_engine_factory) -> Engine:
    """TensorRT-LLM in-process with $LLMPERF_TRTLLM_MODEL (an HF id or a local checkpoint),
    unless the session already runs trtllm (--llmperf-engine trtllm --llmperf-model ...)."""
    if llmperf_settings.engine == "trtllm":
        return llmperf_engine_factory()
    return llmperf_engine_factory(engine="trtllm", model=MODEL)
