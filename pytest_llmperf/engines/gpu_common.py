"""What the in-process GPU engines (vLLM, TensorRT-LLM) share: a GPU check, a Hugging Face
tokenizer wrapper, and an event loop of their own.

The engines' async APIs bind background tasks to the event loop they first run on, while
each benchmark run is its own ``asyncio.run``; so every request runs on one long-lived loop
in a daemon thread, and ``generate`` awaits it from whichever loop the load generator uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

from ..run.workload import Prompt
from .base import Engine, EngineError, Generation, GenerationParams, OnChunk, RequestError

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


class HFTokenizer:
    """A transformers tokenizer behind our Tokenizer protocol."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._words: list[int] | None = None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special))

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def word_token_ids(self) -> Sequence[int]:
        if self._words is None:
            special = set(getattr(self._tok, "all_special_ids", []) or [])
            words = []
            for piece, tid in self._tok.get_vocab().items():
                if tid in special:
                    continue
                word = piece.lstrip("\u2581\u0120 ")
                if word != piece and 2 <= len(word) <= 10 and word.isascii() and word.isalpha():
                    words.append(tid)
            self._words = sorted(words)
        return self._words


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

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


async def stream_deltas(
    outputs: AsyncIterator[Any], on_chunk: OnChunk, ids_attr: str, text_attr: str
) -> Generation:
    """Consume a streaming engine's per-step outputs: each step's new tokens are one chunk,
    stamped on arrival. ``ids_attr``/``text_attr`` name the step's delta on ``outputs[0]``."""
    n, parts = 0, []
    async for out in outputs:
        now = time.perf_counter_ns()
        completion = out.outputs[0]
        k = len(getattr(completion, ids_attr))
        if k:
            on_chunk(now, k)
            n += k
        parts.append(getattr(completion, text_attr))
        if out.finished:
            break
    return Generation(output_tokens=n, source="engine", text="".join(parts))


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
    """Why ``engine`` ("vllm" or "trtllm") cannot run here, or None; imports nothing heavy
    beyond torch (only when the engine's package is present)."""
    import importlib.util

    module, extra = {"vllm": ("vllm", "vllm"), "trtllm": ("tensorrt_llm", "trtllm")}[engine]
    if importlib.util.find_spec(module) is None:
        return (f"{module} is not installed: pip install 'pytest-llmperf[{extra}]' on a "
                "machine with an NVIDIA GPU")
    try:
        require_cuda(engine)
    except EngineError as exc:
        return str(exc)
    return None
