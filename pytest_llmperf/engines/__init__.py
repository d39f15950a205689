"""Engines behind one async streaming interface; heavy imports happen per engine."""

from __future__ import annotations

from ..config import Settings
from ..models import ModelError, resolve_model
from .base import Engine, EngineError, Generation, GenerationParams, RequestError

__all__ = [
    "Engine",
    "EngineError",
    "Generation",
    "GenerationParams",
    "RequestError",
    "create_engine",
]


def create_engine(settings: Settings) -> Engine:
    """The engine the settings name, loaded and ready; EngineError with a reason otherwise."""
    if settings.engine == "llama_cpp":
        from .llama_cpp import (
            LlamaCppEngine,
            LlamaCppSettings,
            import_llama_cpp,
            validate_model_file,
        )
        from .probe import check_native_build

        import_llama_cpp()
        try:
            path = resolve_model(settings.model)
        except ModelError as exc:
            raise EngineError(str(exc)) from None
        validate_model_file(path)
        check_native_build(path)
        return LlamaCppEngine(
            LlamaCppSettings(
                model_path=str(path),
                n_threads=settings.threads,
                n_ctx=settings.n_ctx,
                n_batch=settings.n_batch,
            )
        )
    if settings.engine == "openai":
        from .openai import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    if settings.engine == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine.from_settings(settings)
    if settings.engine == "trtllm":
        from .trtllm import TRTLLMEngine

        return TRTLLMEngine.from_settings(settings)
    raise EngineError(f"unknown engine {settings.engine!r}")
