"""vLLM in-process on a GPU: ``AsyncLLM`` (the V1 engine; ``AsyncLLMEngine`` on older
releases) with DELTA streaming, so every step's new tokens arrive as one chunk.

Needs the ``vllm`` extra and an NVIDIA GPU; without either, creating the engine raises
EngineError naming what is missing (the plugin turns that into one readable failure, and the
example suite skips). Quantized checkpoints: ``--llmperf-quantization=awq|gptq|fp8|...``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from ..run.workload import Prompt
from ..settings import Settings
from .base import EngineError, Generation, GenerationParams, OnChunk, import_optional
from .gpu_common import (
    BackgroundLoop,
    BackgroundLoopEngine,
    HFTokenizer,
    require_cuda,
    stream_deltas,
)

INSTALL_HINT = "pip install 'pytest-llmperf[vllm]' on a machine with an NVIDIA GPU"


def import_vllm() -> Any:
    return import_optional("vllm", "vLLM", INSTALL_HINT)


class VLLMEngine(BackgroundLoopEngine):
    kind = "vllm"
    label = "vLLM"
    max_concurrency = None
    load_s: float

    def __init__(self, model: str, *, quantization: str | None = None, dtype: str = "auto",
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 seed: int = 0, **engine_kwargs: Any) -> None:
        vllm = import_vllm()
        self._gpu = require_cuda("vllm")
        from vllm.engine.arg_utils import AsyncEngineArgs

        try:
            from vllm.v1.engine.async_llm import AsyncLLM as engine_cls
        except ImportError:  # releases before the V1 engine
            from vllm import AsyncLLMEngine as engine_cls

        self.model = model
        self._settings = {"quantization": quantization, "dtype": dtype,
                          "max_model_len": max_model_len,
                          "gpu_memory_utilization": gpu_memory_utilization, **engine_kwargs}
        args = AsyncEngineArgs(model=model, quantization=quantization, dtype=dtype,
                               max_model_len=max_model_len, seed=seed,
                               gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)
        self._loop = BackgroundLoop("llmperf-vllm")
        t0 = time.perf_counter()
        try:
            self._engine = engine_cls.from_engine_args(args)
        except Exception as exc:
            self._loop.close()
            raise EngineError(f"vLLM could not load {model!r}: {exc}") from None
        self.load_s = time.perf_counter() - t0
        self._version = getattr(vllm, "__version__", "unknown")
        from transformers import AutoTokenizer

        self._tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(model))
        self._ids = itertools.count()

    @classmethod
    def from_settings(cls, settings: Settings) -> VLLMEngine:
        return cls(settings.model, quantization=settings.quantization, dtype=settings.dtype,
                   max_model_len=settings.n_ctx,
                   gpu_memory_utilization=settings.gpu_memory_utilization)

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self._version, "model": self.model,
                "gpu": self._gpu, "settings": dict(self._settings),
                "load_s": round(self.load_s, 4)}

    async def _stream(self, prompt: Prompt, params: GenerationParams,
                      on_chunk: OnChunk) -> Generation:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        sampling = SamplingParams(
            max_tokens=params.max_tokens, ignore_eos=params.ignore_eos,
            temperature=params.temperature, seed=params.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        inputs: Any = ({"prompt_token_ids": list(prompt.token_ids)}
                       if prompt.token_ids is not None else prompt.text)
        # DELTA output: token_ids and text hold only this step's new tokens.
        outputs = self._engine.generate(inputs, sampling, f"llmperf-{next(self._ids)}")
        return await stream_deltas(outputs, on_chunk, "token_ids", "text")

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()
        self._loop.close()


def from_settings(settings: Settings) -> VLLMEngine:
    """The registry's factory."""
    return VLLMEngine.from_settings(settings)
