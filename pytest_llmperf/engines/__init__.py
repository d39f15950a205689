"""Engines behind one async streaming interface, found by name in ``registry.py``.

``base.py`` is the interface every engine implements; one module per engine
(``llama_cpp``, ``openai`` over ``http_client``, ``vllm``, ``trtllm``); ``servers.py``
starts and stops engine servers. Importing this package imports no engine, and the names
below are imported on first use (the plugin reads the registry on every pytest run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Engine, EngineError, Generation, GenerationParams, RequestError
    from .registry import create_engine, engine_names, register_engine

_WHERE = {"Engine": ".base", "EngineError": ".base", "Generation": ".base",
          "GenerationParams": ".base", "RequestError": ".base", "create_engine": ".registry",
          "engine_names": ".registry", "register_engine": ".registry"}

__all__ = [
    "Engine",
    "EngineError",
    "Generation",
    "GenerationParams",
    "RequestError",
    "create_engine",
    "engine_names",
    "register_engine",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
