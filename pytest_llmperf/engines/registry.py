"""Engine kinds by name: each name maps to a factory ``(Settings) -> Engine``.

The built-in engines are listed as import paths, so nothing heavy is imported until an engine
is made. Another package adds an engine without touching this one, either by implementing
the ``pytest_llmperf_make_engine(settings)`` hook (see ``hookspecs.py``), or, outside pytest,
with ``register_engine(name, factory)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import EngineError

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import Engine

EngineFactory = Callable[["Settings"], "Engine"]

# name -> "module:function" (relative to this package), imported on first use.
_BUILTIN: dict[str, str] = {
    "llama_cpp": ".llama_cpp:from_settings",
    "openai": ".openai:from_settings",
    "vllm": ".vllm:from_settings",
    "trtllm": ".trtllm:from_settings",
}
_REGISTERED: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``--llmperf-engine NAME`` (and ``Settings(engine=NAME)``) use ``factory``."""
    _REGISTERED[name] = factory


def engine_names() -> tuple[str, ...]:
    """Every engine name known to the registry, built-in ones first."""
    return tuple(_BUILTIN) + tuple(n for n in _REGISTERED if n not in _BUILTIN)


def factory_for(name: str) -> EngineFactory:
    if name in _REGISTERED:
        return _REGISTERED[name]
    target = _BUILTIN.get(name)
    if target is None:
        raise EngineError(f"unknown engine {name!r}; known engines: {', '.join(engine_names())}")
    module, _, attr = target.partition(":")
    factory: EngineFactory = getattr(importlib.import_module(module, __package__), attr)
    return factory


def create_engine(settings: Settings) -> Engine:
    """The engine the settings name, loaded and ready; EngineError with a reason otherwise."""
    return factory_for(settings.engine)(settings)
