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
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

OnChunk = Callable[[int, int], None]


@dataclass(frozen=True)
class Prompt:
    """One request's prompt, as the workload built it (``run/workload.py``)."""

    text: str
    token_ids: tuple[int, ...] | None  # the exact tokens (with BOS) when built by us
    input_tokens: int
    output_tokens: int
    # A multi-turn prompt as chat messages ((role, content), ...): engines with a chat
    # endpoint send these; completion engines send ``text`` (run/conversation.py).
    messages: tuple[tuple[str, str], ...] | None = None


class TextTokenizer(Protocol):
    """What building prompts needs from any tokenizer: text to ids and back."""

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...

    def detokenize(self, ids: Sequence[int]) -> str: ...


class Tokenizer(TextTokenizer, Protocol):
    """An engine's tokenizer (``Engine.tokenizer``): exact-length prompts are built with it."""

    def word_token_ids(self) -> Sequence[int]:
        """Ids of plain word pieces, safe to draw random text from (may be empty: then
        ``run.workload.token_pool`` finds some through the tokenizer itself)."""
        ...


class EngineError(RuntimeError):
    """The engine cannot be created or used at all (missing extra, bad model, dead server)."""


def import_optional(module: str, name: str, hint: str, sep: str = ":") -> Any:
    """Import an engine's optional package, or EngineError saying it is missing and how to
    install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(f"{name} is not installed ({exc}){sep} {hint}") from None


class UnsupportedError(EngineError):
    """The engine cannot do this at all (a capability it does not have)."""


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
    text: str = ""  # the answer's text (a reasoning model's thinking left out)
    # Reasoning and answer phases (issue 24): a stream whose chunks carried thinking
    # (engines/reasoning.py): its leading reasoning chunks, reasoning tokens and their source
    # ("usage", "tokenizer", "chunks"); 0 and None for an answer without reasoning.
    reasoning_chunks: int = 0
    reasoning_tokens: int | None = None
    reasoning_tokens_source: str | None = None

    # Outputs fingerprint (issue 25): the sampled output token ids, where the engine has them
    # (in-process engines); None: only ``text`` is known (servers stream text).
    token_ids: tuple[int, ...] | None = None


# Embeddings (issue 24, item 6): what one /v1/embeddings-style request reports back.
@dataclass(frozen=True)
class Embedded:
    """A finished embedding request: the input tokens the engine counted (the server's
    ``usage.prompt_tokens``, else the prompt's own count), the vector's dimension, when the
    answer was complete and when the request's bytes left (perf_counter_ns; None: the load
    generator's own stamps, at the call and at its return)."""

    input_tokens: int
    dimensions: int
    done_ns: int | None = None
    sent_ns: int | None = None


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    ignore_eos: bool = True
    temperature: float = 0.0
    seed: int = 0
    chat: bool = False
    # Per-request parameters and model mixes (Workload.params / Workload.models): fields
    # passed through to the request, and this request's model (None: the engine's own).
    params: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None


class LogitModel(Protocol):
    """Step-by-step access to a model's next-token logits, for scoring (log-likelihoods of
    continuations, greedy decoding): evaluate token ids into the KV cache, read the logits at
    the last position."""

    def n_ctx(self) -> int:
        """The context size in tokens."""
        ...

    def eog_ids(self) -> Sequence[int]:
        """The end-of-generation token ids."""
        ...

    def reset(self) -> None:
        """Empty the KV cache."""
        ...

    def eval(self, ids: Sequence[int]) -> None:
        """Evaluate ``ids`` after what the KV cache holds."""
        ...

    def logits(self) -> NDArray[np.float32]:
        """The raw logits of the last evaluated position, one per vocabulary entry."""
        ...


class Engine(ABC):
    """An inference engine under test.

    Besides ``info`` and ``generate``, an engine may have capabilities that other parts use
    through these methods, never through its class or private attributes: a ``tokenizer``
    (exact-length prompts), its model's logits (``has_logits`` / ``logit_model``, for
    multiple-choice accuracy), ``load_s``, ``memory_pids``, a ``run_context`` and its
    server's metrics (``metrics_snapshot``).
    """

    kind: str = "engine"
    # How many requests it serves at once (None: as many as it is sent).
    max_concurrency: int | None = None
    # True when chunks are stamped on the load generator's event loop (network clients):
    # then event-loop lag distorts the measurement and is reported as a client warning.
    stamps_on_loop: bool = True
    # Seconds the engine took to load its model (None: not measured by this engine, e.g. a
    # server that was already running).
    load_s: float | None = None

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The model's tokenizer, when the engine can tokenize locally or through its server
        (None: prompts cannot be built to exact token lengths)."""
        return None

    @property
    def has_logits(self) -> bool:
        """True when ``logit_model()`` works: the engine exposes its model's logits."""
        return False

    def logit_model(self) -> AbstractContextManager[LogitModel]:
        """Exclusive access to the model's logits while the context is held (requests wait);
        UnsupportedError when the engine exposes none (``has_logits`` is False)."""
        raise UnsupportedError(
            f"the {self.kind!r} engine does not expose its model's logits"
        )

    # Embeddings (issue 24, item 6).
    @property
    def has_embeddings(self) -> bool:
        """True when ``embed()`` works: the engine serves embeddings (a pooling model)."""
        return False

    def embeddings_problem(self) -> str | None:
        """Why this engine cannot serve embeddings, in one line (None when it can)."""
        if self.has_embeddings:
            return None
        return f"the {self.kind!r} engine does not serve embeddings"

    async def embed(self, prompt: Prompt) -> Embedded:
        """One embedding request for ``prompt`` (not streamed): RequestError on failure;
        UnsupportedError when the engine serves none (``has_embeddings`` False)."""
        raise UnsupportedError(self.embeddings_problem()
                               or f"the {self.kind!r} engine does not serve embeddings")

    def run_context(self) -> AbstractAsyncContextManager[None]:
        """Entered around each run on the run's own event loop, for per-run resources such
        as a connection pool (default: nothing to open)."""
        return nullcontext()

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Engine kind, version, model and the settings that change speed (JSON-able)."""

    @abstractmethod
    async def generate(
        self, prompt: Prompt, params: GenerationParams, on_chunk: OnChunk
    ) -> Generation:
        """Run one request; call on_chunk per token-bearing chunk; raise RequestError on failure."""

    def request_problem(self, params: Mapping[str, Any], models: Sequence[str]) -> str | None:
        """Why this engine cannot send a workload's per-request ``params`` or its mix of
        ``models`` (one line), checked before a run; None when it can. The default: it can
        do neither (an engine that applies them says so by overriding this), so that no
        field is silently dropped."""
        what = [w for w, given in (("Workload.params", params), ("Workload.models", models))
                if given]
        return (f"the {self.kind} engine does not apply {' or '.join(what)}; use an engine "
                "that does (openai, llama_cpp, vllm)")

    def metrics_snapshot(self, names: Collection[str] | None = None) -> dict[str, float] | None:
        """The engine's Prometheus metrics now, as ``engines.server_metrics`` reads them
        (``{name: value}``: counters summed, gauges at their largest over label sets), only
        ``names`` when given; None when it has none or they cannot be read (never an error:
        the run goes on without server metrics). Taken before and after each run and sampled
        during it (``server_metrics.ServerMetricsSampler``). Default: None."""
        return None

    def memory_pids(self) -> Sequence[int]:
        """Processes whose resident memory counts as the engine's (default: this one)."""
        return (os.getpid(),)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model or connection."""
