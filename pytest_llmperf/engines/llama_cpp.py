"""The embedded default engine: llama.cpp in-process through llama-cpp-python.

One ``Llama`` context serves one request at a time. Every request starts from an empty KV
cache (so TTFT is a real prefill), suppresses end-of-generation tokens (so it yields exactly
``max_tokens``), samples greedily unless a temperature is given, and stamps each token the
moment the sampler returns it.

Engine arguments (``--llmperf-engine-arg KEY=VALUE``, ``engine_args={...}``) are keyword
arguments of ``llama_cpp.Llama(...)`` (``flash_attn``, ``type_k``, ``swa_full``, ...; an unknown
key is an EngineError naming the valid ones), plus two of this engine's own, both real
llama.cpp mechanisms driven the way llama-cpp-python's ``Llama.generate`` drives them:

- ``draft_model=prompt_lookup`` (or ``prompt_lookup:N``, N draft tokens per step, default 10;
  vLLM's ``speculative_config={"method": "ngram", ...}`` is read the same way): speculative
  decoding with llama-cpp-python's ``LlamaPromptLookupDecoding`` draft model. Each step the
  draft proposes up to N tokens found after the latest n-gram's earlier occurrence in the
  prompt or output; the target model evaluates the last token and the draft in one batch, the
  sampler picks a token at each position, and the draft's tokens are kept up to the first one
  the model would not have chosen (plus the model's own token there). The KV cache is cut back
  to what was kept. The output is the one plain decoding gives; the tokens of a step arrive as
  one chunk. Drafted and accepted tokens are counted and read as server metrics
  (``spec_accept_rate``, ``spec_accept_len``).
- ``enable_prefix_caching=true`` (vLLM's name): the KV cache is kept between requests and a
  request reuses the longest token prefix it shares with the previous one (llama.cpp's KV
  sequence removal, as ``Llama.generate`` reuses a prefix); only the rest is prefilled. Reused
  and looked-up prompt tokens are counted (``prefix_hit_rate``).

Embeddings (``Workload(embeddings=True)``, issue 24 item 6): a second ``Llama`` of the same
file with ``embedding=True`` and mean pooling, made at the first embedding request (its batch
is the context, so a whole prompt is one batch, as llama.cpp's embedding mode needs); each
request embeds the prompt's text (``Llama.embed``, not truncated: a prompt longer than the
context fails) and counts its tokens.

Both need llama.cpp's full-size sliding-window cache (``swa_full``: llama-cpp-python's
default, and kept on with them): a model with sliding-window attention (Gemma 3) otherwise
drops the cache entries that a cut back to an earlier position needs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.packaged import ModelError, resolve_model
from . import fingerprint, llama_cpp_params
from .base import (
    Embedded,
    Engine,
    EngineError,
    Generation,
    GenerationParams,
    OnChunk,
    Prompt,
    RequestError,
    import_optional,
)
from .engine_args import check_engine_args
from .probe import check_native_build
from .request_fields import single_model_problem
from .server_metrics import (
    PREFIX_HITS,
    PREFIX_QUERIES,
    SPEC_ACCEPTED,
    SPEC_DRAFT_TOKENS,
    SPEC_DRAFTS,
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
    # Engine arguments (see the module docstring): Llama(...) keywords and this engine's own.
    engine_args: Mapping[str, Any] = field(default_factory=dict)


PROMPT_LOOKUP = "prompt_lookup"
DEFAULT_DRAFT_TOKENS = 10  # LlamaPromptLookupDecoding's own default num_pred_tokens
DEFAULT_NGRAM = 2  # and its max_ngram_size
# This engine's own engine arguments (not Llama(...) keywords), with what they take.
OWN_ARGS = {
    "draft_model": "prompt_lookup or prompt_lookup:N",
    "speculative_config": '{"method": "ngram", "num_speculative_tokens": N, '
                          '"prompt_lookup_max": M}',
    "enable_prefix_caching": "true or false",
}
# Llama(...) keywords the plugin sets from its own settings: key -> the option to use.
RESERVED_ARGS = {
    "model_path": "--llmperf-model",
    "n_ctx": "--llmperf-context-len (or --llmperf-n-ctx)",
    "n_threads": "--llmperf-threads",
    "n_threads_batch": "--llmperf-threads",
    "n_batch": "--llmperf-n-batch",
    "n_ubatch": "--llmperf-n-batch",
    "verbose": "nothing: the engine runs quietly",
    "logits_all": "nothing: the engine asks for the logits it needs",
}


@dataclass(frozen=True)
class Speculation:
    """Prompt-lookup speculative decoding: up to ``num_pred_tokens`` drafted per step from
    n-grams of up to ``max_ngram_size`` tokens."""

    num_pred_tokens: int = DEFAULT_DRAFT_TOKENS
    max_ngram_size: int = DEFAULT_NGRAM


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"llama_cpp engine argument {what}={value!r} must be a whole "
                          "number of at least 1")
    return value


def parse_speculation(args: Mapping[str, Any]) -> Speculation | None:
    """The speculative decoding that ``draft_model`` / ``speculative_config`` ask for (None:
    off); EngineError for anything this engine cannot do."""
    if "draft_model" in args and "speculative_config" in args:
        raise EngineError("llama_cpp engine arguments draft_model and speculative_config "
                          "both ask for speculative decoding: give one")
    draft = args.get("draft_model")
    if draft is not None:
        text = str(draft)
        name, sep, count = text.partition(":")
        if name != PROMPT_LOOKUP or (sep and not count.isdigit()):
            raise EngineError(
                f"llama_cpp engine argument draft_model={text!r}: this engine drafts with "
                f"llama-cpp-python's prompt lookup: use draft_model={PROMPT_LOOKUP} or "
                f"{PROMPT_LOOKUP}:N (N draft tokens per step)")
        n = _positive_int(int(count), "draft_model") if sep else DEFAULT_DRAFT_TOKENS
        return Speculation(num_pred_tokens=n)
    config = args.get("speculative_config")
    if config is None:
        return None
    if not isinstance(config, Mapping) or config.get("method") not in ("ngram", PROMPT_LOOKUP):
        raise EngineError(
            f"llama_cpp engine argument speculative_config={config!r}: this engine drafts "
            'by prompt lookup only: {"method": "ngram", "num_speculative_tokens": N}')
    unknown = sorted(set(config) - {"method", "num_speculative_tokens", "prompt_lookup_max",
                                    "prompt_lookup_min"})
    if unknown:
        raise EngineError(f"llama_cpp engine argument speculative_config: unknown key(s) "
                          f"{', '.join(unknown)} (this engine reads method, "
                          "num_speculative_tokens, prompt_lookup_max)")
    return Speculation(
        num_pred_tokens=_positive_int(config.get("num_speculative_tokens",
                                                 DEFAULT_DRAFT_TOKENS),
                                      "speculative_config.num_speculative_tokens"),
        max_ngram_size=_positive_int(config.get("prompt_lookup_max", DEFAULT_NGRAM),
                                     "speculative_config.prompt_lookup_max"))


def parse_prefix_caching(args: Mapping[str, Any]) -> bool:
    value = args.get("enable_prefix_caching", False)
    if not isinstance(value, bool):
        raise EngineError(f"llama_cpp engine argument enable_prefix_caching={value!r} must be "
                          "true or false")
    return value


def llama_kwargs(args: Mapping[str, Any], llama_cls: Any) -> dict[str, Any]:
    """The engine arguments that are ``Llama(...)`` keywords, checked against the installed
    ``Llama.__init__``; EngineError for a key that is neither one nor this engine's own."""
    import inspect


    params = inspect.signature(llama_cls.__init__).parameters
    valid = [name for name, p in params.items()
             if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    check_engine_args(args, [*valid, *OWN_ARGS], engine="llama_cpp",
                      reserved=RESERVED_ARGS, what="llama_cpp.Llama(...) keywords, and "
                      + "; ".join(f"{k}={v}" for k, v in OWN_ARGS.items()))
    return {k: v for k, v in args.items() if k not in OWN_ARGS}


class LlamaCppTokenizer:
    """The model's own tokenizer (text <-> ids), plus the plain word pieces for prompts."""

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        self._llm = llm
        self._llama_cpp = llama_cpp
        self._words: list[int] | None = None
        self._fingerprint: dict[str, str] | None = None

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

    def fingerprint(self) -> dict[str, str]:
        """``tokenizer_hash`` (every token's text, score and type, in id order) and
        ``chat_template_hash`` (the GGUF's ``tokenizer.chat_template``, named ones included),
        made once (issue 25; ``engines.fingerprint``)."""
        if self._fingerprint is None:
            lc = self._llama_cpp
            vocab = self._llm._model.vocab
            pieces = (b"%s\x00%r:%d" % (lc.llama_vocab_get_text(vocab, t) or b"",
                                          float(lc.llama_vocab_get_score(vocab, t)),
                                          int(lc.llama_vocab_get_attr(vocab, t)))
                      for t in range(lc.llama_vocab_n_tokens(vocab)))
            found = {"tokenizer_hash": fingerprint.vocabulary_hash(pieces)}
            meta = dict(self._llm.metadata or {})
            templates = {k: v for k, v in meta.items()
                         if k.startswith("tokenizer.chat_template")}
            digest = fingerprint.template_hash(
                templates.get("tokenizer.chat_template") if len(templates) <= 1 else templates)
            if digest:
                found["chat_template_hash"] = digest
            self._fingerprint = found
        return dict(self._fingerprint)


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
        args = dict(settings.engine_args)
        extra = llama_kwargs(args, lc.Llama)
        self._speculation = parse_speculation(args)
        self._prefix_caching = parse_prefix_caching(args)
        if self._speculation or self._prefix_caching:
            extra.setdefault("swa_full", True)  # see the module docstring
        self._draft: Any = None
        if self._speculation:
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

            self._draft = LlamaPromptLookupDecoding(
                max_ngram_size=self._speculation.max_ngram_size,
                num_pred_tokens=self._speculation.num_pred_tokens)
        self._extra = extra
        self._stats_lock = threading.Lock()
        self._stats: dict[str, float] = {}
        if self._speculation:
            self._stats.update({SPEC_DRAFTS: 0.0, SPEC_DRAFT_TOKENS: 0.0, SPEC_ACCEPTED: 0.0})
        if self._prefix_caching:
            self._stats.update({PREFIX_QUERIES: 0.0, PREFIX_HITS: 0.0})
        # llama-cpp-python's own default is half the cores; a benchmark wants them all.
        threads = settings.n_threads or os.cpu_count() or 1
        params: dict[str, Any] = {
            "n_ctx": settings.n_ctx, "n_batch": settings.n_batch,
            "n_ubatch": settings.n_batch, "n_threads": threads, "n_threads_batch": threads,
            "seed": settings.seed, "flash_attn": settings.flash_attn}
        params.update(extra)
        t0 = time.perf_counter()
        try:
            self._llm = lc.Llama(model_path=str(path), verbose=False, **params)
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
        self._embedder: Any = None  # embeddings: a Llama with embedding=True, made lazily

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
                "flash_attn": bool(self._extra.get("flash_attn", self.settings.flash_attn)),
                "engine_args": dict(self.settings.engine_args),
                "speculation": (None if self._speculation is None else {
                    "draft_model": PROMPT_LOOKUP,
                    "num_pred_tokens": self._speculation.num_pred_tokens,
                    "max_ngram_size": self._speculation.max_ngram_size}),
                "prefix_caching": self._prefix_caching,
                "swa_full": bool(self._llm.context_params.swa_full),
            },
            "load_s": round(self.load_s, 4),
            # Issue 25: tokenizer and chat template, for the attribution (not the profile).
            **fingerprint.of(self._tokenizer),
        }

    def request_problem(self, params: Mapping[str, Any], models: Sequence[str]) -> str | None:
        """Workload.params: the fields llama_cpp_params maps; a model mix: only this model."""
        if "stop" in params and self._draft is not None:
            return ("Workload.params stop: not applied with draft_model=prompt_lookup (a "
                    "step's tokens arrive together); run without speculation")
        return llama_cpp_params.problem(params) or single_model_problem(
            self.kind, self._path.name, models,
            "benchmark a server for a mix of models or adapters (--llmperf-url, or "
            "--llmperf-server vllm with --enable-lora --lora-modules)")

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The grammar of a JSON schema ({}: any JSON value), made once per schema."""
        import json

        from llama_cpp import llama_grammar

        key = json.dumps(schema, sort_keys=True)
        grammars = self.__dict__.setdefault("_grammars", {})
        if key not in grammars:
            grammars[key] = (llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF,
                                                                     verbose=False)
                             if not schema else
                             llama_grammar.LlamaGrammar.from_json_schema(key, verbose=False))
        return grammars[key]

    def _sampler(self, params: GenerationParams) -> Any:
        """llama-cpp-python's sampler chain (``Llama._init_sampler``) for the request's
        params (``llama_cpp_params``): end-of-generation bias, logit bias, penalties,
        grammar, then greedy at temperature 0, else top-k, typical, top-p, min-p,
        temperature and a seeded draw."""
        from llama_cpp import _internals

        sampler = _internals.LlamaSampler()
        if params.ignore_eos and self._eog:
            sampler.add_logit_bias(self._n_vocab, {t: float("-inf") for t in self._eog})
        plan = llama_cpp_params.plan(params.params)
        if plan.logit_bias:
            sampler.add_logit_bias(self._n_vocab, plan.logit_bias)
        if plan.penalties:
            sampler.add_penalties(self._n_vocab, llama_cpp_params.PENALTY_LAST_N,
                                  plan.repeat_penalty, plan.frequency_penalty,
                                  plan.presence_penalty)
        if plan.json_schema is not None:
            sampler.add_grammar(self._llm._model, self._grammar(plan.json_schema))
        if params.temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(plan.top_k)
            sampler.add_typical(plan.typical_p, 1)
            sampler.add_top_p(plan.top_p, 1)
            sampler.add_min_p(plan.min_p, 1)
            sampler.add_temp(params.temperature)
            sampler.add_dist(plan.seed if plan.seed is not None else params.seed)
        return sampler

    def metrics_snapshot(self, names: Collection[str] | None = None) -> dict[str, float] | None:
        """Drafted and accepted tokens (speculative decoding) and looked-up and reused prompt
        tokens (prefix caching) so far, under the names ``server_metrics`` reads for vLLM's
        counters of the same meaning; None when neither is on."""
        if not self._stats:
            return None
        with self._stats_lock:
            return {k: v for k, v in self._stats.items() if names is None or k in names}

    def _count(self, **moved: float) -> None:
        with self._stats_lock:
            for key, value in moved.items():
                self._stats[_STAT_NAMES[key]] += value

    def _prefill(self, ids: list[int]) -> None:
        """Evaluate the prompt: from an empty KV cache, or with prefix caching from the
        longest prefix it shares with what the cache holds (at least one token is evaluated,
        for fresh logits)."""
        llm = self._llm
        if self._prefix_caching:
            import numpy as np

            n = min(int(llm.n_tokens), len(ids) - 1)
            keep = 0
            if n > 0:
                differ = np.nonzero(llm.input_ids[:n] != np.asarray(ids[:n],
                                                                    dtype=llm.input_ids.dtype))[0]
                keep = int(differ[0]) if differ.size else n
            if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
                llm.n_tokens = keep
            else:
                keep = 0
                llm.reset()
            self._count(queries=len(ids), hits=keep)
            llm.eval(ids[keep:])
            return
        llm.reset()  # n_tokens = 0: eval() drops the whole KV cache, no prefix reuse
        llm.eval(ids)

    def _run(self, ids: list[int], params: GenerationParams, on_chunk: OnChunk) -> Generation:
        llm = self._llm
        n_ctx = llm.n_ctx()
        if len(ids) + params.max_tokens > n_ctx:
            raise RequestError(
                "context",
                f"prompt ({len(ids)}) + output ({params.max_tokens}) tokens exceed "
                f"n_ctx={n_ctx}; raise --llmperf-context-len",
            )
        sampler = self._sampler(params)
        vocab = llm._model.vocab
        stop = tuple(llama_cpp_params.plan(params.params).stop)
        with self._lock:
            out: list[int] = []
            self._prefill(ids)
            if self._draft is not None:
                self._speculate(sampler, params, on_chunk, out)
            else:
                while True:
                    # llama_sampler_sample samples and accepts (penalties and a grammar see
                    # each token once; an accept of our own would feed the grammar twice).
                    token = sampler.sample(llm._ctx, -1)
                    on_chunk(time.perf_counter_ns(), 1)
                    out.append(token)
                    if len(out) >= params.max_tokens:
                        break
                    if not params.ignore_eos and self._lc.llama_vocab_is_eog(vocab, token):
                        break
                    if stop and llama_cpp_params.stopped_at(
                            self._tokenizer.detokenize(out), stop) is not None:
                        break  # a stop string: the answer ends (create_completion's stop)
                    llm.eval([token])
        text = self._tokenizer.detokenize(out)
        cut = llama_cpp_params.stopped_at(text, stop) if stop else None
        return Generation(output_tokens=len(out), source="engine",
                          text=text if cut is None else text[:cut], token_ids=tuple(out))

    def _speculate(self, sampler: Any, params: GenerationParams, on_chunk: OnChunk,
                   out: list[int]) -> None:
        """Decode with the prompt-lookup draft (the module docstring says how); the prompt
        is evaluated, ``out`` receives the tokens."""
        llm = self._llm
        ctx = llm._ctx
        n_ctx = llm.n_ctx()
        vocab = llm._model.vocab

        def done(token: int) -> bool:
            return len(out) >= params.max_tokens or (
                not params.ignore_eos and bool(self._lc.llama_vocab_is_eog(vocab, token)))

        token = sampler.sample(ctx, -1)
        on_chunk(time.perf_counter_ns(), 1)
        out.append(token)
        while not done(token):
            n_past = int(llm.n_tokens)
            llm.input_ids[n_past] = token
            room = min(params.max_tokens - len(out) - 1, n_ctx - n_past - 1)
            draft = [int(t) for t in self._draft(llm.input_ids[:n_past + 1])[:max(room, 0)]]
            if not draft:
                llm.eval([token])
                token = sampler.sample(ctx, -1)
                on_chunk(time.perf_counter_ns(), 1)
                out.append(token)
                continue
            batch = [token, *draft]
            ctx.kv_cache_seq_rm(-1, n_past, -1)
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
            ctx.decode(llm._batch)
            llm.input_ids[n_past:n_past + len(batch)] = batch
            new: list[int] = []
            matched = 0
            for i in range(len(batch)):
                token = sampler.sample(ctx, i)
                new.append(token)
                out.append(token)
                if done(token) or i == len(draft) or token != draft[i]:
                    break
                matched += 1
            # Kept in the cache: the step's first token and the draft tokens confirmed.
            llm.n_tokens = n_past + 1 + matched
            ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
            on_chunk(time.perf_counter_ns(), len(new))
            self._count(drafts=1, drafted=len(draft), accepted=matched)

    async def generate(
        self, prompt: Prompt, params: GenerationParams, on_chunk: OnChunk
    ) -> Generation:
        ids = list(prompt.token_ids) if prompt.token_ids is not None else (
            self._tokenizer.tokenize(prompt.text))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, ids, params, on_chunk)

    # -- embeddings (issue 24, item 6) ---------------------------------------------------

    @property
    def has_embeddings(self) -> bool:
        return True

    async def embed(self, prompt: Prompt) -> Embedded:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_run, prompt)

    def _embedding_llama(self) -> Any:
        """The embedding-mode Llama (made once, on this engine's thread)."""
        if self._embedder is None:
            s = self.settings
            threads = s.n_threads or os.cpu_count() or 1
            try:
                self._embedder = self._lc.Llama(
                    model_path=str(self._path), verbose=False, embedding=True,
                    pooling_type=self._lc.LLAMA_POOLING_TYPE_MEAN, n_ctx=s.n_ctx,
                    n_batch=s.n_ctx, n_ubatch=s.n_ctx, n_threads=threads,
                    n_threads_batch=threads, seed=s.seed)
            except Exception as exc:
                raise RequestError("embedding_model", f"llama.cpp could not load {self._path} "
                                   f"in embedding mode: {exc}") from None
        return self._embedder

    def _embed_run(self, prompt: Prompt) -> Embedded:
        llm = self._embedding_llama()
        with self._lock:
            try:
                vector, count = llm.embed(prompt.text, truncate=False, return_count=True)
            except ValueError as exc:  # longer than the context / the batch
                raise RequestError("context", f"{exc}; raise --llmperf-context-len") from None
            done = time.perf_counter_ns()
        dims = len(vector) if vector and not isinstance(vector[0], list) else 0
        return Embedded(input_tokens=int(count), dimensions=dims, done_ns=done)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for name in ("_embedder", "_llm"):
            llm = getattr(self, name, None)
            if llm is not None:
                llm.close()


_STAT_NAMES = {"drafts": SPEC_DRAFTS, "drafted": SPEC_DRAFT_TOKENS, "accepted": SPEC_ACCEPTED,
               "queries": PREFIX_QUERIES, "hits": PREFIX_HITS}


def from_settings(settings: Settings) -> LlamaCppEngine:
    """The registry's factory: the model resolved (a path or the packaged model), the file
    checked, the native build probed once for crashes, then loaded."""
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
            n_ctx=settings.context_len or settings.n_ctx,
            n_batch=settings.n_batch,
            engine_args=settings.engine_args(),
        )
    )
