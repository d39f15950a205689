"""Engines behind one async streaming interface, found by name in ``registry.py``.

``base.py`` is the interface every engine implements; one module per engine
(``llama_cpp``, ``openai`` over ``http_client``, ``vllm``, ``trtllm``); ``servers.py``
starts and stops engine servers. Importing this package imports no engine.
"""

from __future__ import annotations

from .base import Engine, EngineError, Generation, GenerationParams, RequestError
from .registry import create_engine, engine_names, register_engine

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
