"""An opt-in pytest plugin with test helpers of known behaviour (as pytest ships ``pytester``):
``pytest -p pytest_llmperf.testing.plugin``, or in a ``conftest.py``:
``pytest_plugins = ["pytest_llmperf.testing.plugin"]``.

- ``tiny_model`` (session): the path of a tiny random-weight llama GGUF that real llama.cpp loads
  in milliseconds (needs the ``llama`` extra; skips without it).
- ``llmperf_oracle``: ``llmperf_oracle(ttft_ms=50, itl_ms=10)`` starts the known-schedule
  streaming server (``oracle.OracleServer``) on 127.0.0.1 and returns it (``.url``, ``.logs``);
  every server started is stopped at the end of the test.
- ``llmperf_pytester``: ``pytester`` (needs ``-p pytester``) whose sessions use ``tiny_model``
  through their ini file, for testing suites and plugins built on pytest-llmperf.

Loading this plugin imports every module of pytest-llmperf (and so numpy and scipy) up front:
pytester's in-process sessions drop the modules first imported inside them, and numpy's C
extensions cannot be loaded twice in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pytest_llmperf

from .oracle import OracleConfig, OracleServer
from .tiny_model import write_tiny_gguf


def pytest_configure(config: pytest.Config) -> None:
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(pytest_llmperf.__path__, "pytest_llmperf."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny llama-architecture GGUF (2 layers, 256 wide, ~400-token SPM vocab)."""
    pytest.importorskip("llama_cpp", reason="the embedded engine needs the 'llama' extra")
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture
def llmperf_oracle() -> Iterator[Callable[..., OracleServer]]:
    """``llmperf_oracle(**OracleConfig fields)``: a started oracle server, stopped after the
    test."""
    started: list[OracleServer] = []

    def start(**config: Any) -> OracleServer:
        server = OracleServer(OracleConfig(**config))
        server.__enter__()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.__exit__(None, None, None)


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
