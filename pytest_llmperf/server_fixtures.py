"""Fixtures for benchmarking a served engine.

- ``llm_server`` (session): the server under test. With ``--llmperf-url`` it is that running
  server (attached, never stopped by us); otherwise the server that ``--llmperf-server RECIPE``
  (default ``llama_cpp``: ``python -m llama_cpp.server`` on ``--llmperf-model``) or
  ``--llmperf-server-cmd`` describes, started once per session on 127.0.0.1 and a free port,
  and stopped at the end. A server that exits or stays unhealthy fails the tests that use it,
  with the tail of its log.
- ``llm_server_engine`` (session): the OpenAI-compatible HTTP engine over ``llm_server``.

``llm_engine`` still follows the options: with ``--llmperf-url`` or ``--llmperf-server`` it is
the HTTP engine too (and with ``--llmperf-server`` it starts and owns a server of its own, so a
suite should use either ``llm_engine`` or these fixtures).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .config import Settings
from .engines.base import EngineError

_SERVER_ERROR = pytest.StashKey[str]()


@dataclass(frozen=True)
class ServerHandle:
    """What ``llm_server`` yields: where the server is, and the process when we started it."""

    url: str
    managed: object | None = None  # servers.ManagedServer when started by the fixture

    @property
    def pid(self) -> int | None:
        proc = getattr(self.managed, "proc", None)
        return proc.pid if proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return getattr(self.managed, "log_path", None)


def _settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("llmperf_settings")


@pytest.fixture(scope="session")
def llm_server(request: pytest.FixtureRequest) -> Iterator[ServerHandle]:
    """The served engine under test: the attached --llmperf-url, or a server started for the
    session (--llmperf-server RECIPE / --llmperf-server-cmd; default: llama_cpp.server)."""
    config = request.config
    if _SERVER_ERROR in config.stash:  # it failed once: fail fast, same message
        pytest.fail(config.stash[_SERVER_ERROR], pytrace=False)
    settings = _settings(request)
    if settings.url:
        yield ServerHandle(url=settings.url.rstrip("/"))
        return
    from .servers import start_server_from_settings

    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    log_dir = cache.mkdir("llmperf-server-logs") if cache is not None else None
    try:
        server = start_server_from_settings(settings, log_dir=log_dir)
    except EngineError as exc:
        message = f"llmperf: {exc}"
        config.stash[_SERVER_ERROR] = message
        pytest.fail(message, pytrace=False)
    try:
        yield ServerHandle(url=server.url, managed=server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llm_server_engine(request: pytest.FixtureRequest, llm_server: ServerHandle) -> Iterator[object]:
    """The OpenAI-compatible HTTP engine over ``llm_server``."""
    from dataclasses import replace

    from .engines.openai import OpenAIEngine

    settings = replace(_settings(request), url=llm_server.url, engine="openai")
    try:
        engine = OpenAIEngine.from_settings(settings, server=llm_server.managed)  # type: ignore[arg-type]
    except EngineError as exc:
        message = f"llmperf: {exc}"
        pytest.fail(message, pytrace=False)
    try:
        yield engine
    finally:
        engine.close()
