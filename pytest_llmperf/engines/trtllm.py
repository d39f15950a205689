"""TensorRT-LLM in-process on a GPU through its LLM API: ``LLM.generate_async(...,
streaming=True)``, reading each step's ``token_ids_diff`` as one chunk.

Needs the ``trtllm`` extra (NVIDIA's wheel) and an NVIDIA GPU; without either, creating the
engine raises EngineError naming what is missing. ``--llmperf-quantization=fp8`` (or
``int4_awq``, ``w4a16_awq``, ``int8_sq``...) quantizes on load through ModelOpt's QuantConfig;
pre-quantized ModelOpt checkpoints are detected by TensorRT-LLM itself.
"""

from __future__ import annotations

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

INSTALL_HINT = ("pip install 'pytest-llmperf[trtllm]' (NVIDIA's tensorrt_llm wheel) on a "
                "machine with an NVIDIA GPU")
QUANT_ALGOS = {"fp8": "FP8", "int4_awq": "W4A16_AWQ", "w4a16_awq": "W4A16_AWQ",
               "awq": "W4A16_AWQ", "int8_sq": "W8A8_SQ_PER_CHANNEL", "nvfp4": "NVFP4",
               "w4a8_awq": "W4A8_AWQ"}


def import_trtllm() -> Any:
    return import_optional("tensorrt_llm", "TensorRT-LLM", INSTALL_HINT)


class TRTLLMEngine(BackgroundLoopEngine):
    kind = "trtllm"
    label = "TensorRT-LLM"
    max_concurrency = None
    load_s: float

    def __init__(self, model: str, *, quantization: str | None = None, dtype: str = "auto",
                 max_seq_len: int | None = None, **llm_kwargs: Any) -> None:
        trt = import_trtllm()
        self._gpu = require_cuda("trtllm")
        from tensorrt_llm import LLM

        kwargs: dict[str, Any] = {"model": model, "dtype": dtype, **llm_kwargs}
        if max_seq_len:
            kwargs["max_seq_len"] = max_seq_len
        if quantization:
            algo = QUANT_ALGOS.get(quantization.lower())
            if algo is None:
                raise EngineError(
                    f"unknown TensorRT-LLM quantization {quantization!r}; "
                    f"known: {', '.join(sorted(QUANT_ALGOS))}"
                )
            from tensorrt_llm.llmapi import QuantConfig
            from tensorrt_llm.quantization import QuantAlgo

            kwargs["quant_config"] = QuantConfig(quant_algo=getattr(QuantAlgo, algo))
        self.model = model
        self._settings = {k: v for k, v in kwargs.items() if k != "quant_config"}
        self._settings["quantization"] = quantization
        self._loop = BackgroundLoop("llmperf-trtllm")
        t0 = time.perf_counter()
        try:
            self._llm = LLM(**kwargs)
        except Exception as exc:
            self._loop.close()
            raise EngineError(f"TensorRT-LLM could not load {model!r}: {exc}") from None
        self.load_s = time.perf_counter() - t0
        self._version = getattr(trt, "__version__", "unknown")
        from transformers import AutoTokenizer

        self._tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(model))

    @classmethod
    def from_settings(cls, settings: Settings) -> TRTLLMEngine:
        return cls(settings.model, quantization=settings.quantization, dtype=settings.dtype,
                   max_seq_len=settings.n_ctx)

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self._version, "model": self.model,
                "gpu": self._gpu, "settings": dict(self._settings),
                "load_s": round(self.load_s, 4)}

    async def _stream(self, prompt: Prompt, params: GenerationParams,
                      on_chunk: OnChunk) -> Generation:
        from tensorrt_llm import SamplingParams

        extra: dict[str, Any] = {}
        if params.temperature > 0:
            extra["seed"] = params.seed
        sampling = SamplingParams(max_tokens=params.max_tokens, ignore_eos=params.ignore_eos,
                                  temperature=params.temperature, **extra)
        inputs: Any = list(prompt.token_ids) if prompt.token_ids is not None else prompt.text
        outputs = self._llm.generate_async(inputs, sampling, streaming=True)
        return await stream_deltas(outputs, on_chunk, "token_ids_diff", "text_diff")

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None and hasattr(llm, "shutdown"):
            llm.shutdown()
        self._loop.close()


def from_settings(settings: Settings) -> TRTLLMEngine:
    """The registry's factory."""
    return TRTLLMEngine.from_settings(settings)
