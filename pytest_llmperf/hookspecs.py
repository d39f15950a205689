"""Hooks other packages implement to extend pytest-llmperf (registered by ``plugin.py``).

Example, in a plugin or a ``conftest.py``::

    def pytest_llmperf_engine_names():
        return ["my_engine"]

    def pytest_llmperf_make_engine(settings):
        if settings.engine == "my_engine":
            return MyEngine(settings.model)   # a pytest_llmperf.engines.Engine
        return None                           # not mine: the next implementation decides
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .engines.base import Engine
    from .settings import Settings


@pytest.hookspec(firstresult=True)
def pytest_llmperf_make_engine(settings: Settings) -> Engine | None:
    """Make the engine ``settings`` describe, or return None to leave it to others.

    The first non-None result is used; the built-in engines (``engines/registry.py``) are
    the last implementation. Raise ``pytest_llmperf.engines.EngineError`` with a reason
    when the engine cannot be made: the tests that use it fail with that one line.
    """


@pytest.hookspec
def pytest_llmperf_engine_names() -> list[str]:
    """Engine names this plugin adds, so ``--llmperf-engine NAME`` accepts them."""
    raise NotImplementedError
