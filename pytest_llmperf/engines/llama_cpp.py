"""The embedded default engine: llama.cpp in-process through llama-cpp-python.

One ``Llama`` context serves one request at a time. Every request starts from an empty KV
cache (so TTFT is a real prefill), suppresses end-of-generation tokens (so it yields exactly
``max_tokens``), samples greedily unless a temperature is given, and stamps each token the
moment the sampler returns it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..run.workload import Prompt
from .base import (
    Engine,
    EngineError,
    Generation,
    GenerationParams,
    OnChunk,
    RequestError,
    import_optional,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from ..settings import Settings

INSTALL_HINT = (
    "install the embedded engine with: pip install 'pytest-llmperf[llama]' "
    "(see the README for the CMAKE_ARGS this machine needs)"
)


def import_llama_cpp() -> Any:
    return import_optional("llama_cpp", "llama-cpp-python", INSTALL_HINT, sep=";")


@dataclass(frozen=True)
class LlamaCppSettings:
    model_path: str
    n_threads: int | None = None
    n_ctx: int = 2048
    n_batch: int = 512
    seed: int = 0
    flash_attn: bool = False


class LlamaCppTokenizer:
    """The model's own tokenizer (text <-> ids), plus the plain word pieces for prompts."""

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        self._llm = llm
        self._llama_cpp = llama_cpp
        self._words: list[int] | None = None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=False))

    def detokenize(self, ids: Sequence[int]) -> str:
        return bytes(self._llm.detokenize(list(ids))).decode("utf-8", errors="replace")

    def word_token_ids(self) -> Sequence[int]:
        if self._words is None:
            lc = self._llama_cpp
            vocab = self._llm._model.vocab
            words = []
            for tid in range(lc.llama_vocab_n_tokens(vocab)):
                if not lc.llama_vocab_get_attr(vocab, tid) & lc.LLAMA_TOKEN_ATTR_NORMAL:
                    continue
                raw = lc.llama_vocab_get_text(vocab, tid)
                try:
                    piece = raw.decode("utf-8")
                except (UnicodeDecodeError, AttributeError):
                    continue
                # SentencePiece marks a leading space with U+2581, byte-level BPE with U+0120.
                word = piece.lstrip("\u2581\u0120 ")
                if word != piece and 2 <= len(word) <= 10 and word.isascii() and word.isalpha():
                    words.append(tid)
            self._words = words
        return self._words


class LlamaCppLogits:
    """The ``LogitModel`` of a loaded ``Llama``: its KV cache and the last row of logits."""

    def __init__(self, llm: Any, eog: Sequence[int]) -> None:
        self._llm = llm
        self._eog = eog
        self._n_vocab = int(llm.n_vocab())

    def n_ctx(self) -> int:
        return int(self._llm.n_ctx())

    def eog_ids(self) -> Sequence[int]:
        return self._eog

    def reset(self) -> None:
        self._llm.reset()

    def eval(self, ids: Sequence[int]) -> None:
        self._llm.eval(ids)

    def logits(self) -> NDArray[np.float32]:
        import numpy as np

        ptr = self._llm._ctx.get_logits()
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))


def validate_model_file(path: Path) -> None:
    """A readable GGUF file, or EngineError saying what is wrong."""
    if not path.is_file():
        raise EngineError(f"model file not found: {path}")
    if not os.access(path, os.R_OK):
        raise EngineError(f"model file is not readable: {path}")
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise EngineError(f"{path} is not a GGUF file (llama_cpp needs .gguf models)")


class LlamaCppEngine(Engine):
    kind = "llama_cpp"
    max_concurrency = 1
    stamps_on_loop = False  # tokens are stamped on the generating thread
    load_s: float

    def __init__(self, settings: LlamaCppSettings) -> None:
        lc = import_llama_cpp()
        path = Path(settings.model_path)
        validate_model_file(path)
        self.settings = settings
        self._lc = lc
        # llama-cpp-python's own default is half the cores; a benchmark wants them all.
        threads = settings.n_threads or os.cpu_count() or 1
        t0 = time.perf_counter()
        try:
            self._llm = lc.Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_batch=settings.n_batch,
                n_ubatch=settings.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=settings.seed,
                flash_attn=settings.flash_attn,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp raises ValueError for any load failure
            raise EngineError(f"llama.cpp could not load {path}: {exc}") from None
        self.load_s = time.perf_counter() - t0
        self._tokenizer = LlamaCppTokenizer(self._llm, lc)
        vocab = self._llm._model.vocab
        n_vocab = lc.llama_vocab_n_tokens(vocab)
        self._eog = [t for t in range(n_vocab) if lc.llama_vocab_is_eog(vocab, t)]
        self._n_vocab = n_vocab
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llmperf-llama"
        )
        self._path = path

    @property
    def tokenizer(self) -> LlamaCppTokenizer:
        return self._tokenizer

    @property
    def has_logits(self) -> bool:
        return True

    @contextlib.contextmanager
    def logit_model(self) -> Iterator[LlamaCppLogits]:
        """The model's logits, with requests held off (one context serves both)."""
        with self._lock:
            yield LlamaCppLogits(self._llm, self._eog)

    def info(self) -> dict[str, Any]:
        meta = dict(self._llm.metadata or {})
        buf = ctypes.create_string_buffer(256)
        self._lc.llama_model_desc(self._llm._model.model, buf, 256)
        return {
            "kind": self.kind,
            "version": getattr(self._lc, "__version__", "unknown"),
            "model": self._path.name,
            "model_path": str(self._path),
            "model_desc": buf.value.decode("utf-8", errors="replace"),
            "model_size_bytes": self._path.stat().st_size,
            "architecture": meta.get("general.architecture"),
            "settings": {
                "n_threads": self._llm.context_params.n_threads,
                "n_ctx": self._llm.n_ctx(),
                "n_batch": self.settings.n_batch,
                "flash_attn": self.settings.flash_attn,
            },
            "load_s": round(self.load_s, 4),
        }

    def _sampler(self, params: GenerationParams) -> Any:
        from llama_cpp import _internals

        sampler = _internals.LlamaSampler()
        if params.ignore_eos and self._eog:
            sampler.add_logit_bias(self._n_vocab, {t: float("-inf") for t in self._eog})
        if params.temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_temp(params.temperature)
            sampler.add_dist(params.seed)
        return sampler

    def _run(self, ids: list[int], params: GenerationParams, on_chunk: OnChunk) -> Generation:
        llm = self._llm
        n_ctx = llm.n_ctx()
        if len(ids) + params.max_tokens > n_ctx:
            raise RequestError(
                "context_overflow",
                f"prompt ({len(ids)}) + output ({params.max_tokens}) tokens exceed "
                f"n_ctx={n_ctx}; raise --llmperf-n-ctx",
            )
        sampler = self._sampler(params)
        vocab = llm._model.vocab
        with self._lock:
            llm.reset()  # n_tokens = 0: eval() drops the whole KV cache, no prefix reuse
            out: list[int] = []
            llm.eval(ids)
            while True:
                token = sampler.sample(llm._ctx, -1)
                on_chunk(time.perf_counter_ns(), 1)
                sampler.accept(token)
                out.append(token)
                if len(out) >= params.max_tokens:
                    break
                if not params.ignore_eos and self._lc.llama_vocab_is_eog(vocab, token):
                    break
                llm.eval([token])
        return Generation(output_tokens=len(out), source="engine",
                          text=self._tokenizer.detokenize(out))

    async def generate(
        self, prompt: Prompt, params: GenerationParams, on_chunk: OnChunk
    ) -> Generation:
        ids = list(prompt.token_ids) if prompt.token_ids is not None else (
            self._tokenizer.tokenize(prompt.text))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, ids, params, on_chunk)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()


def from_settings(settings: Settings) -> LlamaCppEngine:
    """The registry's factory: the model resolved (a path or the packaged model), the file
    checked, the native build probed once for crashes, then loaded."""
    from ..models.packaged import ModelError, resolve_model
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
