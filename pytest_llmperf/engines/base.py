"""The one small interface every engine implements.

An engine turns a prompt into a stream of timed token-bearing chunks. The load generator
stamps the send time; the engine calls ``on_chunk(t_ns, n_tokens)`` the moment a chunk with
generated tokens arrives (``t_ns`` from ``time.perf_counter_ns``), and returns how many
tokens it produced and where that count came from.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..workload import Prompt, Tokenizer

OnChunk = Callable[[int, int], None]


class EngineError(RuntimeError):
    """The engine cannot be created or used at all (missing extra, bad model, dead server)."""


def import_optional(module: str, name: str, hint: str, sep: str = ":") -> Any:
    """Import an engine's optional package, or EngineError saying it is missing and how to
    install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(f"{name} is not installed ({exc}){sep} {hint}") from None


class RequestError(RuntimeError):
    """One request failed; it is recorded and counted, the run goes on."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Generation:
    """What a finished request reports back."""

    output_tokens: int
    source: str  # "engine" (its own tokenizer/sampler), "usage" (server), "tokenizer", "chunks"
    client_token_count: int | None = None
    text: str = ""


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    ignore_eos: bool = True
    temperature: float = 0.0
    seed: int = 0
    chat: bool = False


class Engine(ABC):
    """An inference engine under test."""

    kind: str = "engine"
    # How many requests it serves at once (None: as many as it is sent).
    max_concurrency: int | None = None
    # True when chunks are stamped on the load generator's event loop (network clients):
    # then event-loop lag distorts the measurement and is reported as a client warning.
    stamps_on_loop: bool = True

    @property
    def tokenizer(self) -> Tokenizer | None:
        return None

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Engine kind, version, model and the settings that change speed (JSON-able)."""

    @abstractmethod
    async def generate(
        self, prompt: Prompt, params: GenerationParams, on_chunk: OnChunk
    ) -> Generation:
        """Run one request; call on_chunk per token-bearing chunk; raise RequestError on failure."""

    def memory_pids(self) -> Sequence[int]:
        """Processes whose resident memory counts as the engine's (default: this one)."""
        return (os.getpid(),)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model or connection."""
