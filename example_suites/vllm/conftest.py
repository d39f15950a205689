"""The vLLM suite: skipped, with the reason, on a machine without vLLM or an NVIDIA GPU."""

from __future__ import annotations

import dataclasses
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
def vllm_engine(request: pytest.FixtureRequest) -> Engine:
    """vLLM in-process with $LLMPERF_VLLM_MODEL (an HF id or a local checkpoint)."""
    from pytest_llmperf.plugin import STATE, get_engine

    state = request.config.stash[STATE]
    settings = state.settings
    if settings.engine != "vllm":
        settings = dataclasses.replace(settings, engine="vllm", model=MODEL)
    return get_engine(state, settings)
