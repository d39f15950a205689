"""A test oracle engine in-process: its first token comes ``first_ms`` after the send, then
one token every ``gap_ms``, one token per chunk, so a measured TTFT or ITL must equal the
schedule (within the event loop's timer resolution). Tests add it the way a third-party
plugin adds an engine (the ``pytest_llmperf_make_engine`` hook in a conftest) to see which
engine, made with which settings, served a test, and when engines are closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..engines.base import Engine, Generation, GenerationParams, OnChunk, Prompt
from .oracle import WordTokenizer

# A conftest that offers the engine as ``--llmperf-engine schedule`` (the model setting is its
# first-token delay in ms), one token a millisecond, the way a third-party plugin would.
CONFTEST = """
from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def pytest_llmperf_engine_names():
    return ["schedule"]


def pytest_llmperf_make_engine(settings):
    if settings.engine == "schedule":
        return ScheduleEngine(float(settings.model), gap_ms=1.0)
    return None
"""


class ScheduleEngine(Engine):
    max_concurrency = 1
    stamps_on_loop = False

    def __init__(self, first_ms: float, *, gap_ms: float = 2.0, kind: str = "schedule",
                 info: Mapping[str, Any] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.first_ms, self.gap_ms, self.kind = first_ms, gap_ms, kind
        self._info = {"model": kind, "first_ms": first_ms, **(info or {})}
        self._on_close = on_close
        self._tok = WordTokenizer()

    @property
    def tokenizer(self) -> WordTokenizer:
        return self._tok

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._info}

    async def generate(self, prompt: Prompt, params: GenerationParams,
                       on_chunk: OnChunk) -> Generation:
        await asyncio.sleep(self.first_ms / 1000)
        on_chunk(time.perf_counter_ns(), 1)
        for _ in range(params.max_tokens - 1):
            await asyncio.sleep(self.gap_ms / 1000)
            on_chunk(time.perf_counter_ns(), 1)
        return Generation(output_tokens=params.max_tokens, source="engine")

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
