"""TensorRT-LLM in-process on a GPU through its LLM API (``tensorrt_llm.LLM``, the PyTorch
backend, the default since 1.0): ``LLM.generate_async(..., streaming=True)``, reading each
step's ``outputs[0].token_ids_diff`` as one chunk.

Needs the ``trtllm`` extra (NVIDIA's wheel) and an NVIDIA GPU; without either, creating the
engine raises EngineError naming what is missing.

- ``--llmperf-context-len N`` becomes ``LLM(max_seq_len=N)`` (prompt plus output); unset, the
  model's own limit.
- ``--llmperf-engine-arg KEY=VALUE`` passes any ``LLM(...)`` argument (a ``TorchLlmArgs``
  field: ``max_batch_size``, ``max_num_tokens``, ``kv_cache_config``, ``tensor_parallel_size``,
  ``enable_chunked_prefill``, ``speculative_config``, ...). Dicts are converted to TensorRT-LLM's
  config classes exactly as ``trtllm-serve --extra_llm_api_options FILE.yaml`` converts them.
  Unknown keys fail at once, naming the valid ones.
- Quantization: the PyTorch backend does not quantize on load (``LLM(quant_config=...)`` is a
  TensorRT-backend argument and is rejected). Run a pre-quantized ModelOpt checkpoint instead
  (e.g. ``--llmperf-model nvidia/Llama-3.1-8B-Instruct-FP8``): TensorRT-LLM reads its format
  from the checkpoint's ``hf_quant_config.json``. ``--llmperf-quantization`` is refused with
  that advice; an FP8 KV cache is ``--llmperf-engine-arg kv_cache_config='{"dtype": "fp8"}'``.

Checked against the TensorRT-LLM source, never executed here: see docs/engines-verified.md.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

from ..settings import Settings
from . import fingerprint
from .base import EngineError, Generation, GenerationParams, OnChunk, Prompt, import_optional
from .engine_args import check_engine_args as shared_check
from .gpu_common import (
    BackgroundLoop,
    BackgroundLoopEngine,
    HFTokenizer,
    require_cuda,
    stream_deltas,
)

INSTALL_HINT = ("pip install 'pytest-llmperf[trtllm]' (NVIDIA's tensorrt_llm wheel) on a "
                "machine with an NVIDIA GPU")

# LLM(...) arguments the plugin sets from its own settings: an engine arg may not set them too.
RESERVED_ARGS = {
    "model": "--llmperf-model",
    "dtype": "--llmperf-dtype",
    "max_seq_len": "--llmperf-context-len",
    "backend": "nothing: the trtllm engine runs tensorrt_llm.LLM, the PyTorch backend",
}


def import_trtllm() -> Any:
    return import_optional("tensorrt_llm", "TensorRT-LLM", INSTALL_HINT)


def quantization_refusal(quantization: str | None) -> str | None:
    """Why ``--llmperf-quantization`` cannot be honoured by the trtllm engine, or None."""
    if not quantization:
        return None
    return (
        f"the trtllm engine cannot quantize on load (--llmperf-quantization={quantization}): "
        "TensorRT-LLM's PyTorch backend rejects LLM(quant_config=...); pass a pre-quantized "
        "ModelOpt checkpoint as --llmperf-model (e.g. nvidia/Llama-3.1-8B-Instruct-FP8; "
        "its hf_quant_config.json selects the format) and leave --llmperf-quantization unset"
    )


def check_engine_args(args: Mapping[str, Any], valid: Collection[str] | None = None) -> None:
    """EngineError unless every key of ``args`` may be passed to ``LLM(...)``: none of the
    RESERVED_ARGS, and (when ``valid``, the installed version's argument names, is known) each
    one of ``valid``."""
    shared_check(args, valid, engine="TensorRT-LLM", reserved=RESERVED_ARGS,
                 what="TorchLlmArgs")


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """``SamplingParams(...)`` keyword arguments for one request (field names as in
    tensorrt_llm/sampling_params.py: max_tokens defaults to 32 there, so it is always set)."""
    kwargs: dict[str, Any] = {"max_tokens": params.max_tokens, "ignore_eos": params.ignore_eos,
                              "temperature": params.temperature}
    if params.temperature > 0:
        kwargs["seed"] = params.seed
    return kwargs


def prompt_input(prompt: Prompt) -> Any:
    """The prompt as ``generate_async`` takes it: a TokensPrompt dict when token ids are known
    (tokenized by the plugin, so sent as is), else the text."""
    if prompt.token_ids is not None:
        return {"prompt_token_ids": list(prompt.token_ids)}
    return prompt.text


async def stream_request(llm: Any, sampling_params_cls: Callable[..., Any], prompt: Prompt,
                         params: GenerationParams, on_chunk: OnChunk) -> Generation:
    """One streamed request on the running event loop. ``generate_async`` must be called with
    a running loop (its result then reads an asyncio queue); iterating it yields the same
    RequestOutput after each step, ``outputs[0].token_ids_diff`` holding that step's tokens."""
    sampling = sampling_params_cls(**sampling_kwargs(params))
    outputs: AsyncIterator[Any] = llm.generate_async(prompt_input(prompt), sampling,
                                                     streaming=True)
    return await stream_deltas(outputs, on_chunk, "token_ids_diff", "text_diff")


def _valid_llm_args() -> frozenset[str] | None:
    """The installed ``LLM(...)`` argument names (TorchLlmArgs fields), if they can be read."""
    try:
        from tensorrt_llm.llmapi import TorchLlmArgs
    except ImportError:
        return None
    fields = getattr(TorchLlmArgs, "model_fields", None)
    return frozenset(fields) if fields else None


def _convert_engine_args(args: dict[str, Any]) -> dict[str, Any]:
    """Dict values to TensorRT-LLM's config classes, as trtllm-serve does with its YAML."""
    for module in ("tensorrt_llm.llmapi.llm_utils", "tensorrt_llm.llmapi.llm_args"):
        try:
            update = importlib.import_module(module).update_llm_args_with_extra_dict
        except (ImportError, AttributeError):
            continue
        return dict(update({}, dict(args)))
    return dict(args)


class TRTLLMEngine(BackgroundLoopEngine):
    kind = "trtllm"
    label = "TensorRT-LLM"
    max_concurrency = None
    load_s: float

    def __init__(self, model: str, *, quantization: str | None = None, dtype: str = "auto",
                 max_seq_len: int | None = None,
                 engine_args: Mapping[str, Any] | None = None) -> None:
        refusal = quantization_refusal(quantization)
        if refusal:
            raise EngineError(refusal)
        args = dict(engine_args or {})
        check_engine_args(args)
        trt = import_trtllm()
        self._gpu = require_cuda("trtllm")
        check_engine_args(args, _valid_llm_args())
        from tensorrt_llm import LLM, SamplingParams

        self._sampling_params_cls = SamplingParams
        try:
            kwargs = _convert_engine_args(args)
        except Exception as exc:
            raise EngineError(f"bad TensorRT-LLM engine argument: {exc}") from None
        kwargs.update(model=model, dtype=dtype)
        if max_seq_len:
            kwargs["max_seq_len"] = max_seq_len
        self.model = model
        self._settings: dict[str, Any] = {"dtype": dtype, "max_seq_len": max_seq_len,
                                          "engine_args": args}
        self._loop = BackgroundLoop("llmperf-trtllm")
        t0 = time.perf_counter()
        try:
            self._llm = LLM(**kwargs)
        except Exception as exc:
            self._loop.close()
            raise EngineError(f"TensorRT-LLM could not load {model!r}: {exc}") from None
        self.load_s = time.perf_counter() - t0
        self._version = getattr(trt, "__version__", "unknown")
        # The LLM's own tokenizer (a TransformersTokenizer wrapping the HF one; honours a
        # tokenizer= engine arg); None with skip_tokenizer_init.
        tok = getattr(self._llm, "tokenizer", None)
        hf = getattr(tok, "tokenizer", tok)
        if hf is None:
            from transformers import AutoTokenizer

            hf = AutoTokenizer.from_pretrained(str(args.get("tokenizer") or model))
        self._tokenizer = HFTokenizer(hf)

    @classmethod
    def from_settings(cls, settings: Settings) -> TRTLLMEngine:
        return cls(settings.model, quantization=settings.quantization, dtype=settings.dtype,
                   max_seq_len=settings.context_len, engine_args=settings.engine_args())

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self._version, "model": self.model,
                "gpu": self._gpu, "settings": dict(self._settings),
                "load_s": round(self.load_s, 4),
                # Issue 25: tokenizer and chat template, for the attribution (not the profile).
                **fingerprint.of(self._tokenizer)}

    async def _stream(self, prompt: Prompt, params: GenerationParams,
                      on_chunk: OnChunk) -> Generation:
        return await stream_request(self._llm, self._sampling_params_cls, prompt, params,
                                    on_chunk)

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        try:
            if llm is not None:
                llm.shutdown()  # BaseLLM.shutdown: the executor, then the MPI session
        finally:
            self._loop.close()


def from_settings(settings: Settings) -> TRTLLMEngine:
    """The registry's factory."""
    return TRTLLMEngine.from_settings(settings)
