"""Shared fixtures. From the package's opt-in test plugin: ``tiny_model`` (a tiny random-weight
GGUF that real llama.cpp loads in milliseconds), ``llmperf_oracle`` and ``llmperf_pytester``.
Here: ``oracle``, ``isolated_cache`` (``LLMPERF_CACHE_DIR`` in the test's temporary directory)
and ``served_repo`` (a repository whose two commits serve at two speeds). Shared helpers (not
fixtures) are in ``tests/helpers.py``.

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
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

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


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``LLMPERF_CACHE_DIR`` set to ``<tmp_path>/cache`` (a module applies it to each of its
    tests with ``pytestmark = pytest.mark.usefixtures("isolated_cache")``)."""
    monkeypatch.setenv("LLMPERF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """For ``llmperf compare --served`` (``helpers.compare_served``): c1, the server answers at
    5 ms per token; c2: at 10 ms."""
    from helpers import AB_SERVER, AB_TEST_FILE, git

    root = tmp_path_factory.mktemp("served") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "serve.py").write_text(textwrap.dedent(AB_SERVER))
    (root / "test_served.py").write_text(textwrap.dedent(AB_TEST_FILE))
    for itl, message in ((5, "c1: 5 ms per token"), (10, "c2: the server got slower")):
        (root / "itl.json").write_text(json.dumps({"itl_ms": itl}))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", message)
    return root
