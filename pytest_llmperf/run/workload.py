"""Workloads: what to send (prompts of exact token lengths, or a JSONL file) and when.

Prompt building needs only a tokenizer (``engines.base.Tokenizer``); arrival schedules are
pure. ``Prompt`` and ``Tokenizer`` belong to the engine interface and are re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import limits
from ..engines.base import Prompt, Tokenizer
from ..engines.vocabulary import token_pool
from ..limits import Limit
from ..metric_table import SLO_KEYS
from ..values import is_finite_number, show
from .request_params import (
    ParamsError,
    assigned_models,
    check_models,
    check_params,
    ends_early_problem,
)


class WorkloadError(ValueError):
    """A workload that cannot be run as asked."""


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
    (end-of-generation suppressed). requests: measured requests; warmup: requests sent first
    and not measured. concurrency: closed-loop requests in flight. rate: open-loop arrivals
    per second instead (Poisson, or gamma with ``burstiness`` < 1 for bursts), with
    ``concurrency`` as an optional cap. duration_s: stop sending new requests after this long.
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

    params: fields sent with every request as they are (``top_p``, ``stop``, ``seed``,
    ``response_format``, a server's own such as vLLM's ``structured_outputs``); the fields the
    workload sets itself (model, prompt, max_tokens, temperature, ...) are refused, naming the
    field to use. models: a weighted mix of model names ({"adapter-a": 0.7, "base": 0.3}, or a
    list for equal weights): each request's model is dealt from the seed, in exact proportions
    as far as the count allows; the result has per-model summaries (``RunResult.by_model``).
    """

    input_tokens: int = 128
    output_tokens: int = 64
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
    # Per-request parameters and model mixes (run/request_params.py): fields passed through
    # to every request, and a weighted mix of model names (LoRA adapters) dealt by the seed.
    params: dict[str, Any] = field(default_factory=dict)
    models: dict[str, float] | None = None

    def __post_init__(self) -> None:
        """Check every field where it enters: type, finiteness and range, one line naming
        the bad value (``WorkloadError``); nothing is reinterpreted."""
        for name, minimum, limit in (
                ("input_tokens", 1, limits.TOKENS), ("output_tokens", 1, limits.TOKENS),
                ("requests", 1, limits.REQUESTS), ("warmup", 0, limits.REQUESTS),
                ("concurrency", 1, limits.CONCURRENCY), ("seed", 0, limits.SEED),
                ("shared_prefix_tokens", 0, limits.TOKENS)):
            _whole(f"Workload.{name}", getattr(self, name), minimum, limit)
        if self.shared_prefix_tokens >= self.input_tokens:
            raise WorkloadError(
                f"Workload.shared_prefix_tokens={self.shared_prefix_tokens} must be less than "
                f"input_tokens={self.input_tokens}"
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
        self._check_totals()
        self._check_request_fields()

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
        if self.prompts_file is None and self.conversations_file is None:
            tokens = total * self.input_tokens
            if tokens > limits.PROMPT_TOKENS.maximum:
                raise WorkloadError(
                    f"Workload: {what} x input_tokens = {values} x {self.input_tokens:,} = "
                    f"{tokens:,} prompt tokens is above the limit: "
                    f"{limits.PROMPT_TOKENS.words()}")

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
        return asdict(self)

    @property
    def total_requests(self) -> int:
        return self.warmup + self.requests


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
    n_text = workload.input_tokens - n_special
    if n_text < 1:
        raise WorkloadError(
            f"input_tokens={workload.input_tokens} leaves no room for text after the "
            f"{n_special} special token(s) the tokenizer adds"
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
    for i in range(workload.total_requests):
        rng = np.random.default_rng([workload.seed, i])
        text, ids = fit_text(tok, rng, pool, prefix_ids, n_text - len(prefix_ids), n_special)
        prompts.append(Prompt(text, tuple(ids), len(ids), workload.output_tokens))
    return prompts


def jsonl_prompts(tok: Tokenizer | None, workload: Workload) -> list[Prompt]:
    """Prompts from a JSONL file: one {"prompt": str, "output_tokens": int?} per line.

    Lines are used in order and cycled when more requests than lines are asked for. The
    file must be UTF-8; a line that is not, or is not such an object, is a WorkloadError
    naming the file and the line.
    """
    assert workload.prompts_file is not None
    path = Path(workload.prompts_file)
    items: list[tuple[str, int]] = []
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
        out = data.get("output_tokens", data.get("max_tokens", workload.output_tokens))
        items.append((data["prompt"], _whole(f"{path}:{lineno}: output_tokens", out, 1)))
    if not items:
        raise WorkloadError(f"{path}: no prompts in file")
    prompts = []
    for i in range(workload.total_requests):
        text, out = items[i % len(items)]
        ids = tuple(tok.tokenize(text, add_special=True)) if tok is not None else None
        prompts.append(Prompt(text, ids, len(ids) if ids is not None else 0, out))
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
    if workload.prompts_file:
        return jsonl_prompts(tok, workload)
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
    if workload.rate is None:
        return None
    rng = np.random.default_rng([workload.seed, 7919])
    shape = 1.0 if workload.arrival == "poisson" else float(workload.burstiness)
    gaps = rng.gamma(shape, 1.0 / (workload.rate * shape), size=n)
    return [float(x) for x in np.cumsum(gaps) - gaps[0]]
