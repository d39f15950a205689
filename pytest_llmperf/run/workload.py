"""Workloads: what to send (prompts of exact token lengths, or a JSONL file) and when.

Prompt building needs only a tokenizer (``engines.base.Tokenizer``); arrival schedules are
pure. ``Prompt`` and ``Tokenizer`` belong to the engine interface and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .. import limits
from ..engines.base import Prompt, Tokenizer
from ..engines.vocabulary import token_pool
from ..limits import Limit
from ..metric_table import SLO_KEYS
from ..values import is_finite_number, show
from . import datasets as _datasets
from .lengths import LengthError, Lengths, parse_lengths
from .request_params import (
    ParamsError,
    assigned_models,
    check_models,
    check_params,
    ends_early_problem,
)
from .trace_prompts import trace_prompts
from .traces import check_trace_fields, trace_offsets_s
from .workload_error import WorkloadError as WorkloadError  # re-exported: its home


def _whole(name: str, value: Any, minimum: int, limit: Limit | None = None) -> int:
    """A whole number >= minimum (bools are not numbers here), within ``limit``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkloadError(f"{name}={show(value)} must be a whole number >= {minimum}")
    _within(name, value, limit)
    return value


def _within(name: str, value: int | float, limit: Limit | None) -> None:
    problem = limit.problem(name, value) if limit is not None else None
    if problem:
        raise WorkloadError(problem)


def _number(name: str, value: Any, *, above: float | None = None,
            at_least: float | None = None, unit: str = "", limit: Limit | None = None
            ) -> float:
    """A finite int or float (not a bool) in range: ``> above`` and/or ``>= at_least``, and
    within ``limit``. The one number check of this module's edge (the Workload fields)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkloadError(f"{name}={show(value)} is not a number{unit}")
    if not is_finite_number(value):
        raise WorkloadError(f"{name}={show(value)} is not a finite number{unit}")
    number = float(value)
    if above is not None and not number > above:
        raise WorkloadError(f"{name}={value!r} must be > {above:g}{unit}")
    if at_least is not None and not number >= at_least:
        raise WorkloadError(f"{name}={value!r} must be >= {at_least:g}{unit}")
    _within(name, value, limit)
    return number


@dataclass
class Workload:
    """What a benchmark run sends.

    input_tokens / output_tokens: exact lengths of synthetic prompts and of every answer
    (end-of-generation suppressed), or a distribution each request draws its own length
    from, seeded (``{"dist": "normal", "mean": 128, "std": 32}``, lognormal, uniform,
    empirical: run/lengths.py). dataset / dataset_format / dataset_columns / dataset_split:
    prompts from a local dataset (ShareGPT, JSONL, CSV, Parquet, a saved Hugging Face
    dataset: run/datasets.py), its rows shuffled by the seed. requests: measured requests;
    warmup: requests sent first and not measured. concurrency: closed-loop requests in
    flight. rate: open-loop arrivals per second instead (Poisson, or gamma with
    ``burstiness`` < 1 for bursts), with ``concurrency`` as an optional cap. duration_s: stop
    sending new requests after this long.
    prompts_file: a JSONL file of {"prompt": ..., "output_tokens": ...} lines instead of
    synthetic prompts. shared_prefix_tokens: a common prefix of this many tokens in every
    prompt (for prefix caching). slo: per-request limits in ms ({"ttft_ms", "tpot_ms",
    "e2e_ms"}) for goodput.

    Multi-turn sessions (run/conversation.py), when ``turns`` or ``conversations_file`` is
    given: ``requests`` counts measured sessions, ``warmup`` warm-up sessions, ``concurrency``
    sessions in flight (or, with ``rate``, sessions start at that many per second, capped by
    ``concurrency`` when it is above 1); each of a session's ``turns`` sends the conversation
    so far plus a new user message of ``input_tokens`` tokens (or the next human turn of a
    ShareGPT-style ``conversations_file``), waiting ``think_time_s`` between turns (seconds,
    or [low, high] for a seeded uniform draw).

    Trace replay (run/traces.py), when ``trace`` is given: the first ``requests`` entries of
    the trace file (``trace_format`` "mooncake", "jsonl", "burstgpt" or "azure"; None:
    detected) are sent on their own timestamps divided by ``trace_speedup`` (open loop,
    ``concurrency`` > 1 a cap), each with its prompt and answer lengths; Mooncake ``hash_ids``
    become shared token blocks of ``trace_block_size`` tokens (run/trace_prompts.py).
    params: fields sent with every request as they are (``top_p``, ``stop``, ``seed``,
    ``response_format``, a server's own such as vLLM's ``structured_outputs``); the fields the
    workload sets itself (model, prompt, max_tokens, temperature, ...) are refused, naming the
    field to use. models: a weighted mix of model names ({"adapter-a": 0.7, "base": 0.3}, or a
    list for equal weights): each request's model is dealt from the seed, in exact proportions
    as far as the count allows; the result has per-model summaries (``RunResult.by_model``).
    """

    input_tokens: int | dict[str, Any] = 128
    output_tokens: int | dict[str, Any] = 64
    requests: int = 16
    warmup: int = 1
    concurrency: int = 1
    rate: float | None = None
    arrival: str = "poisson"
    burstiness: float = 1.0
    duration_s: float | None = None
    seed: int = 0
    prompts_file: str | None = None
    shared_prefix_tokens: int = 0
    slo: dict[str, float] = field(default_factory=dict)
    temperature: float = 0.0
    ignore_eos: bool = True
    chat: bool = False
    turns: int | None = None
    think_time_s: float | list[float] = 0.0
    conversations_file: str | None = None
    # Local datasets (issue 24, run/datasets.py): prompts (and answer lengths) from a file.
    dataset: str | None = None
    dataset_format: str | None = None
    dataset_columns: dict[str, str] | None = None
    dataset_split: str | None = None
    # Trace replay (run/traces.py, run/trace_prompts.py): arrivals, lengths and prefix blocks
    # from a trace file instead of the fields above.
    trace: str | None = None
    trace_format: str | None = None
    trace_speedup: float = 1.0
    trace_block_size: int = 512
    # Embeddings (issue 24, item 6): embedding requests (/v1/embeddings) of the prompts instead
    # of generations; output_tokens is unused (run/embeddings.py).
    embeddings: bool = False
    # Per-request parameters and model mixes (run/request_params.py): fields passed through
    # to every request, and a weighted mix of model names (LoRA adapters) dealt by the seed.
    params: dict[str, Any] = field(default_factory=dict)
    models: dict[str, float] | None = None

    def __post_init__(self) -> None:
        """Check every field where it enters: type, finiteness and range, one line naming
        the bad value (``WorkloadError``); nothing is reinterpreted."""
        _ = (self.input_lengths, self.output_lengths)  # numbers or distributions, parsed
        for name, minimum, limit in (
                ("requests", 1, limits.REQUESTS), ("warmup", 0, limits.REQUESTS),
                ("concurrency", 1, limits.CONCURRENCY), ("seed", 0, limits.SEED),
                ("shared_prefix_tokens", 0, limits.TOKENS)):
            _whole(f"Workload.{name}", getattr(self, name), minimum, limit)
        if self.shared_prefix_tokens >= self.input_lengths.minimum:
            shortest = ("input_tokens" if self.input_lengths.fixed
                        else "the shortest input_tokens (the distribution's 'min')")
            raise WorkloadError(
                f"Workload.shared_prefix_tokens={self.shared_prefix_tokens} must be less than "
                f"{shortest}={self.input_lengths.minimum}"
            )
        if self.rate is not None:
            _number("Workload.rate", self.rate, above=0, unit=" (requests/s)",
                    limit=limits.RATE)
        if not isinstance(self.arrival, str) or self.arrival not in ("poisson", "gamma"):
            raise WorkloadError(f"Workload.arrival={self.arrival!r} must be 'poisson' or 'gamma'")
        _number("Workload.burstiness", self.burstiness, above=0)
        if self.duration_s is not None:
            _number("Workload.duration_s", self.duration_s, above=0,
                    limit=limits.DURATION_S)
        _number("Workload.temperature", self.temperature, at_least=0)
        for name in ("ignore_eos", "chat"):
            if not isinstance(getattr(self, name), bool):
                raise WorkloadError(
                    f"Workload.{name}={getattr(self, name)!r} must be True or False")
        if not isinstance(self.slo, Mapping):
            raise WorkloadError(
                f"Workload.slo={self.slo!r} must be a dict such as {{'ttft_ms': 500}}")
        bad = sorted(str(k) for k in set(self.slo) - set(SLO_KEYS))
        if bad:
            raise WorkloadError(
                f"Workload.slo has unknown key(s) {', '.join(bad)}; valid: {', '.join(SLO_KEYS)}"
            )
        for key, value in self.slo.items():
            _number(f"Workload.slo[{key!r}]", value, above=0)
        if self.prompts_file is not None:
            if not isinstance(self.prompts_file, str | os.PathLike):
                raise WorkloadError(
                    f"Workload.prompts_file={self.prompts_file!r} must be a path to a JSONL "
                    "file")
            if not Path(self.prompts_file).is_file():
                raise WorkloadError(f"Workload.prompts_file {str(self.prompts_file)!r} does "
                                    "not exist")
        self._check_multi_turn()
        self._check_dataset()
        check_trace_fields(self)
        self._check_totals()
        self._check_embeddings()
        self._check_request_fields()

    def _check_embeddings(self) -> None:
        """Embeddings (issue 24, item 6): a prompt per request, no chat, no multi-turn, and an
        SLO of whole-request latency only (an embedding has no first token)."""
        if not isinstance(self.embeddings, bool):
            raise WorkloadError(f"Workload.embeddings={self.embeddings!r} must be True or False")
        if not self.embeddings:
            return
        if self.chat:
            raise WorkloadError("Workload.embeddings and chat=True cannot be combined: an "
                                "embedding request sends the prompt as input, not chat messages")
        if self.multi_turn:
            raise WorkloadError("Workload.embeddings does not apply to multi-turn sessions "
                                "(turns / conversations_file)")
        bad = sorted(str(k) for k in self.slo if k != "e2e_ms")
        if bad:
            raise WorkloadError(f"Workload.slo has {', '.join(bad)}: an embedding request has "
                                "no tokens streamed; only 'e2e_ms' applies with embeddings=True")

    def _check_request_fields(self) -> None:
        """``params`` and ``models`` (run/request_params.py), checked as the others are."""
        try:
            self.params = check_params(self.params)
            if self.models is not None:
                self.models = check_models(self.models)
        except ParamsError as exc:
            raise WorkloadError(str(exc)) from None
        problem = ends_early_problem(self.params, self.ignore_eos)
        if problem:
            raise WorkloadError(problem)
        if self.embeddings and (self.params or self.models):
            raise WorkloadError("Workload.params and models are for generations; an embedding "
                                "request (embeddings=True) sends neither")

    def model_of(self, index: int) -> str | None:
        """The model of request ``index`` (warm-up first; multi-turn: of session ``index``)
        in the mix, or None without one (the engine's own model)."""
        names = assigned_models(self.models, self.seed, self.warmup, self.requests)
        return names[index] if names is not None and 0 <= index < len(names) else None

    def _check_totals(self) -> None:
        """What the counts add up to before the run starts: every request's record (a
        session's each turn), and the synthetic prompts' tokens, built up front."""
        turns = self.turns or 1
        total = self.total_requests * turns
        what = "(warmup + requests)" + (" x turns" if self.turns else "")
        values = f"({self.warmup:,} + {self.requests:,})" + (
            f" x {self.turns:,}" if self.turns else "")
        if total > limits.REQUESTS.maximum:
            raise WorkloadError(f"Workload: {what} = {values} = {total:,} requests is above "
                                f"the limit: {limits.REQUESTS.words()}")
        if (self.prompts_file is None and self.conversations_file is None
                and self.dataset is None and not self.trace):
            longest = self.input_lengths.maximum  # a distribution: its largest draw
            name = "input_tokens" if self.input_lengths.fixed else "max input_tokens"
            tokens = total * longest
            if tokens > limits.PROMPT_TOKENS.maximum:
                raise WorkloadError(
                    f"Workload: {what} x {name} = {values} x {longest:,} = "
                    f"{tokens:,} prompt tokens is above the limit: "
                    f"{limits.PROMPT_TOKENS.words()}")

    @cached_property
    def input_lengths(self) -> Lengths:
        """``input_tokens`` parsed: a fixed length or a distribution (run/lengths.py)."""
        return _lengths("Workload.input_tokens", self.input_tokens)

    @cached_property
    def output_lengths(self) -> Lengths:
        """``output_tokens`` parsed: a fixed length or a distribution (run/lengths.py)."""
        return _lengths("Workload.output_tokens", self.output_tokens)

    def _check_dataset(self) -> None:
        """The dataset fields (run/datasets.py), checked as the others are; the file itself
        is read when the prompts are built."""
        if self.dataset is None:
            for name in ("dataset_format", "dataset_columns", "dataset_split"):
                if getattr(self, name) is not None:
                    raise WorkloadError(f"Workload.{name} is for a dataset: give dataset=path")
            return
        if not isinstance(self.dataset, str | os.PathLike):
            raise WorkloadError(f"Workload.dataset={show(self.dataset)} must be a path")
        if not Path(self.dataset).exists():
            raise WorkloadError(f"Workload.dataset {str(self.dataset)!r} does not exist")
        if self.prompts_file is not None or self.multi_turn:
            raise WorkloadError("Workload.dataset cannot be combined with prompts_file or "
                                "multi-turn sessions (turns / conversations_file): give one")
        if self.shared_prefix_tokens:
            raise WorkloadError("Workload.shared_prefix_tokens does not apply to a dataset "
                                "(its prompts are the dataset's own)")
        if self.dataset_format is not None and self.dataset_format not in _datasets.FORMATS:
            raise WorkloadError(f"Workload.dataset_format={show(self.dataset_format)} must be "
                                f"one of: {', '.join(_datasets.FORMATS)}")
        if self.dataset_split is not None and not isinstance(self.dataset_split, str):
            raise WorkloadError(f"Workload.dataset_split={show(self.dataset_split)} must be "
                                "a split's name")
        try:
            _datasets.check_columns(self.dataset_columns)
        except _datasets.DatasetError as exc:
            raise WorkloadError(str(exc)) from None

    def _check_multi_turn(self) -> None:
        """The multi-turn fields (run/conversation.py), checked as the others are."""
        if self.turns is not None:
            _whole("Workload.turns", self.turns, 1, limits.TURNS)
        think = self.think_time_s
        if isinstance(think, list | tuple):
            if len(think) != 2:
                raise WorkloadError(f"Workload.think_time_s={think!r} must be seconds or "
                                    "[low, high] (a seeded uniform draw)")
            low = _number("Workload.think_time_s[0]", think[0], at_least=0, unit=" (s)",
                          limit=limits.THINK_TIME_S)
            high = _number("Workload.think_time_s[1]", think[1], at_least=0, unit=" (s)",
                           limit=limits.THINK_TIME_S)
            if low > high:
                raise WorkloadError(
                    f"Workload.think_time_s={list(think)!r}: low must be <= high")
        else:
            _number("Workload.think_time_s", think, at_least=0, unit=" (s)",
                    limit=limits.THINK_TIME_S)
        if self.conversations_file is not None:
            if not isinstance(self.conversations_file, str | os.PathLike):
                raise WorkloadError(f"Workload.conversations_file={self.conversations_file!r} "
                                    "must be a path to a JSONL file")
            if not Path(self.conversations_file).is_file():
                raise WorkloadError("Workload.conversations_file "
                                    f"{str(self.conversations_file)!r} does not exist")
        if not self.multi_turn:
            if think not in (0, 0.0):
                raise WorkloadError("Workload.think_time_s is for multi-turn sessions: give "
                                    "turns or a conversations_file")
            return
        if self.prompts_file is not None:
            raise WorkloadError("Workload.prompts_file and multi-turn sessions (turns / "
                                "conversations_file) cannot be combined: give one")
        if self.shared_prefix_tokens:
            raise WorkloadError("Workload.shared_prefix_tokens does not apply to multi-turn "
                                "sessions (each session's history is its shared prefix)")

    @property
    def multi_turn(self) -> bool:
        """True for a workload of multi-turn sessions (run/conversation.py)."""
        return self.turns is not None or self.conversations_file is not None

    def to_dict(self) -> dict[str, Any]:
        """The fields as stored with a run (runs compare by ``workload_key``, which leaves
        fields at their defaults out, so baselines saved before a field existed still
        match)."""
        data = asdict(self)
        if isinstance(data.get("dataset"), os.PathLike):  # stored as JSON
            data["dataset"] = os.fspath(data["dataset"])
        return data

    @property
    def total_requests(self) -> int:
        return self.warmup + self.requests


def comparable(workload: Mapping[str, Any]) -> dict[str, Any]:
    """A stored workload (``Workload.to_dict()``) with every field at its default left out,
    the form in which runs of one workload compare equal (the stored gate, the nightly
    history): a run saved before a field was added lacks it, and means its default, so a new
    version of the plugin still finds the baselines an older one saved."""
    defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
                for f in fields(Workload)}
    return {key: value for key, value in workload.items()
            if not (key in defaults and value == defaults[key])}


def prompts_digest(prompts: Iterable[Prompt]) -> str:
    """A short digest of the requests a run sends, in order: each prompt's text, its token ids
    when built by us, and the output length asked (``Prompt``); stored with the run
    (``client.prompts_digest``) so that a comparison sees a changed dataset, trace or
    tokenizer (verdict/attribution.py)."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(json.dumps([p.text, list(p.token_ids) if p.token_ids is not None else None,
                             p.output_tokens,
                             [list(m) for m in p.messages] if p.messages else None],
                            separators=(",", ":")).encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()[:16]


def workload_key(run: Mapping[str, Any]) -> str:
    """The key under which a stored run's workload compares: its ``comparable`` form as sorted
    JSON (the stored gate and the nightly's series group runs by it)."""
    workload = run.get("workload")
    return json.dumps(comparable(workload if isinstance(workload, Mapping) else {}),
                      sort_keys=True, default=str)


def _lengths(name: str, value: Any) -> Lengths:
    try:
        return parse_lengths(name, value)
    except LengthError as exc:
        raise WorkloadError(str(exc)) from None


# The random streams of the drawn lengths (run/lengths.py), apart from the prompts' words.
INPUT_STREAM = 1_299_709
OUTPUT_STREAM = 1_299_721


def fit_text(
    tok: Tokenizer,
    rng: np.random.Generator,
    pool: np.ndarray,
    prefix_ids: list[int],
    n_suffix: int,
    n_special: int,
) -> tuple[str, list[int]]:
    """Text = decode(prefix + random suffix) whose tokenization has exactly the asked length."""
    target = len(prefix_ids) + n_suffix
    suffix = [int(t) for t in rng.choice(pool, size=n_suffix)]
    # A leading space would make SentencePiece tokenizers add a separate space token.
    text = tok.detokenize(prefix_ids + suffix).lstrip()
    for _ in range(32):
        ids = tok.tokenize(text, add_special=False)
        if len(ids) == target:
            return text, tok.tokenize(text, add_special=True)
        if len(ids) > target:
            ids = ids[:target]
        else:
            ids = ids + [int(t) for t in rng.choice(pool, size=target - len(ids))]
        text = tok.detokenize(ids).lstrip()
    ids = tok.tokenize(text, add_special=True)
    raise WorkloadError(
        f"could not build a prompt of exactly {target + n_special} tokens "
        f"(the tokenizer keeps giving {len(ids)})"
    )


def synthetic_prompts(tok: Tokenizer, workload: Workload) -> list[Prompt]:
    """Deterministic prompts (for a seed) of exactly ``input_tokens`` tokens, BOS included.

    Every request gets different random words, so no request can hit a prefix cache beyond
    the shared prefix asked for.
    """
    n_special = len(tok.tokenize("", add_special=True))
    n = workload.total_requests
    in_lens = workload.input_lengths.draw(n, workload.seed, INPUT_STREAM)
    out_lens = workload.output_lengths.draw(n, workload.seed, OUTPUT_STREAM)
    if min(in_lens) - n_special < 1:
        i = in_lens.index(min(in_lens))
        which = "" if workload.input_lengths.fixed else f" (request {i}'s draw)"
        raise WorkloadError(
            f"input_tokens={in_lens[i]}{which} leaves no room for text after the "
            f"{n_special} special token(s) the tokenizer adds"
            + ("" if workload.input_lengths.fixed else "; raise the distribution's 'min'")
        )
    words = list(tok.word_token_ids())
    if not words:  # a vocabulary without marked word pieces: find some through the tokenizer
        words = token_pool(tok)
    pool = np.asarray(words, dtype=np.int64)
    if pool.size == 0:
        raise WorkloadError(
            "the tokenizer offers no tokens that survive a round trip through text, so prompts "
            "of an exact length cannot be built; give a prompts_file instead")
    prefix_ids: list[int] = []
    if workload.shared_prefix_tokens:
        rng = np.random.default_rng([workload.seed, 2**31 - 1])
        _, with_special = fit_text(tok, rng, pool, [], workload.shared_prefix_tokens, n_special)
        prefix_ids = with_special[n_special:]
    prompts = []
    for i in range(n):
        rng = np.random.default_rng([workload.seed, i])
        n_text = in_lens[i] - n_special
        if n_text <= len(prefix_ids):
            raise WorkloadError(
                f"input_tokens={in_lens[i]} (request {i}'s draw) leaves no room after the "
                f"{len(prefix_ids)}-token shared prefix and {n_special} special token(s); "
                "raise the distribution's 'min'")
        text, ids = fit_text(tok, rng, pool, prefix_ids, n_text - len(prefix_ids), n_special)
        prompts.append(Prompt(text, tuple(ids), len(ids), out_lens[i]))
    return prompts


def jsonl_prompts(tok: Tokenizer | None, workload: Workload) -> list[Prompt]:
    """Prompts from a JSONL file: one {"prompt": str, "output_tokens": int?} per line.

    Lines are used in order and cycled when more requests than lines are asked for. The
    file must be UTF-8; a line that is not, or is not such an object, is a WorkloadError
    naming the file and the line.
    """
    assert workload.prompts_file is not None
    path = Path(workload.prompts_file)
    items: list[tuple[str, int | None]] = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise WorkloadError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("prompt"), str):
            raise WorkloadError(f'{path}:{lineno}: expected an object with a "prompt" string')
        out = data.get("output_tokens", data.get("max_tokens"))
        items.append((data["prompt"], None if out is None else
                      _whole(f"{path}:{lineno}: output_tokens", out, 1)))
    if not items:
        raise WorkloadError(f"{path}: no prompts in file")
    # A line without its own output length takes the workload's (drawn per request).
    out_lens = workload.output_lengths.draw(workload.total_requests, workload.seed,
                                            OUTPUT_STREAM)
    prompts = []
    for i in range(workload.total_requests):
        text, out = items[i % len(items)]
        ids = tuple(tok.tokenize(text, add_special=True)) if tok is not None else None
        prompts.append(Prompt(text, ids, len(ids) if ids is not None else 0,
                              out if out is not None else out_lens[i]))
    return prompts


# The random stream of a dataset's row order (a seeded shuffle).
DATASET_STREAM = 1_299_743


def dataset_prompts(tok: Tokenizer | None, workload: Workload) -> list[Prompt]:
    """Prompts from a local dataset (run/datasets.py): its rows shuffled by the seed (the
    same rows in the same order for a seed), cycled when more requests than rows are asked
    for. The asked output length: the row's number, else its answer's token count (with the
    engine's tokenizer; without one, the workload's output_tokens), else the workload's
    output_tokens (drawn per request)."""
    assert workload.dataset is not None
    try:
        rows = _datasets.read_rows(workload.dataset, workload.dataset_format,
                                   workload.dataset_columns, workload.dataset_split)
    except _datasets.DatasetError as exc:
        raise WorkloadError(str(exc)) from None
    n = workload.total_requests
    order = np.random.default_rng([workload.seed, DATASET_STREAM]).permutation(len(rows))
    out_lens = workload.output_lengths.draw(n, workload.seed, OUTPUT_STREAM)
    answer_tokens: dict[int, int] = {}
    prompts = []
    for i in range(n):
        k = int(order[i % len(rows)])
        row = rows[k]
        out = row.output_tokens
        if out is None and row.answer is not None and tok is not None:
            if k not in answer_tokens:
                answer_tokens[k] = len(tok.tokenize(row.answer, add_special=False))
            out = answer_tokens[k] or None  # an empty answer: the workload's length
        ids = tuple(tok.tokenize(row.prompt, add_special=True)) if tok is not None else None
        prompts.append(Prompt(row.prompt, ids, len(ids) if ids is not None else 0,
                              out if out is not None else out_lens[i]))
    return prompts


def read_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 text (a byte-order mark is allowed); WorkloadError naming
    the line of the first byte that is not UTF-8, or why the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read the prompts file ({exc.strerror or exc})"
                            ) from None
    try:
        return data.decode("utf-8-sig").split("\n")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise WorkloadError(
            f"{path}:{lineno}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the prompts file as UTF-8"
        ) from None


def build_prompts(tok: Tokenizer | None, workload: Workload) -> list[Prompt]:
    if workload.multi_turn:  # built turn by turn from the answers (run/conversation.py)
        return []
    if workload.trace:  # its lengths and prefix blocks (run/trace_prompts.py)
        return trace_prompts(tok, workload)
    if workload.prompts_file:
        return jsonl_prompts(tok, workload)
    if workload.dataset is not None:
        return dataset_prompts(tok, workload)
    if tok is None:
        raise WorkloadError(
            "synthetic prompts of an exact token length need the engine's tokenizer, "
            "and this engine has none; give a prompts_file instead"
        )
    return synthetic_prompts(tok, workload)


def arrival_offsets_s(workload: Workload, n: int) -> list[float] | None:
    """Open-loop send times in seconds from the start, or None for closed loop.

    Inter-arrival gaps are gamma distributed with shape ``burstiness`` and mean 1/rate
    (shape 1 is a Poisson process), seeded, as in vLLM's serving benchmark.
    """
    if workload.trace is not None:  # the trace's own timestamps (run/traces.py)
        return trace_offsets_s(workload, n)
    if workload.rate is None:
        return None
    rng = np.random.default_rng([workload.seed, 7919])
    shape = 1.0 if workload.arrival == "poisson" else float(workload.burstiness)
    gaps = rng.gamma(shape, 1.0 / (workload.rate * shape), size=n)
    return [float(x) for x in np.cumsum(gaps) - gaps[0]]
