"""Per-request parameters and model mixes: ``Workload(params=...)`` and ``Workload(models=...)``.

Pure logic, no I/O. ``check_params`` validates the fields a workload passes through to every
request (sampling and request fields: ``top_p``, ``stop``, ``seed``, ``response_format``, a
server's own extensions such as vLLM's ``structured_outputs``); the fields the workload itself
owns are refused with the Workload field to use instead. ``check_models`` validates a weighted
mix of model names; ``assigned_models`` deals the names to a run's requests: exact proportions
as far as the count allows (largest remainder), in a seeded shuffle, warm-up and measured
requests dealt separately so that the measured run has the asked proportions.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..engines.base import Engine, UnsupportedError
from ..engines.request_fields import response_schema
from ..values import show

# Fields a request carries that the workload sets itself: what to use instead.
OWNED: dict[str, str] = {
    "model": "Workload.models (a weighted mix of model names) or the engine's model",
    "prompt": "input_tokens, prompts_file or conversations_file (the workload builds prompts)",
    "messages": "chat=True with input_tokens, prompts_file or conversations_file",
    "stream": "nothing: requests are always streamed (the metrics need the chunks)",
    "stream_options": "nothing: usage is always asked for (include_usage)",
    "max_tokens": "Workload.output_tokens",
    "max_completion_tokens": "Workload.output_tokens",
    "min_tokens": "Workload.output_tokens with ignore_eos=True",
    "temperature": "Workload.temperature",
    "ignore_eos": "Workload.ignore_eos",
    "n": "nothing: one answer per request is measured",
    "best_of": "nothing: one answer per request is measured",
}
# Known fields and the check of their value (others pass through unchecked but JSON-able).
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "top_p": (0.0, 1.0), "min_p": (0.0, 1.0), "typical_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0),
    "repetition_penalty": (0.0, 100.0), "repeat_penalty": (0.0, 100.0),
}
MAX_PARAMS_BYTES = 1 << 16  # the params as JSON: 64 KiB at most (a JSON schema fits)
MAX_DEPTH = 32
MAX_MODELS = 64
MAX_MODEL_NAME = 256


class ParamsError(ValueError):
    """A bad ``params`` or ``models`` value; one line naming the field (the Workload turns it
    into a ``WorkloadError``)."""


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, Mapping):
        return max([_depth(v, level + 1) for v in value.values()], default=level + 1)
    if isinstance(value, list | tuple):
        return max([_depth(v, level + 1) for v in value], default=level + 1)
    return level


def _json_able(where: str, value: Any) -> None:
    """Plain JSON: string keys, finite numbers, bounded depth and size."""
    if _depth(value) > MAX_DEPTH:
        raise ParamsError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where} must be plain JSON (dicts with string keys, lists, "
                          f"strings, finite numbers, booleans, null): {exc}") from None
    if len(text.encode()) > MAX_PARAMS_BYTES:
        raise ParamsError(f"{where} is {len(text.encode()):,} bytes as JSON; at most "
                          f"{MAX_PARAMS_BYTES:,}")

    def keys(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise ParamsError(f"{path} has a key {k!r} that is not a string")
                keys(v, f"{path}[{k!r}]")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                keys(v, f"{path}[{i}]")

    keys(value, where)


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamsError(f"{where}={show(value)} must be a finite number")
    return float(value)


def _check_value(key: str, value: Any) -> None:
    where = f"Workload.params[{key!r}]"
    if key in _NUMBER_RANGES:
        low, high = _NUMBER_RANGES[key]
        number = _number(where, value)
        if not low <= number <= high:
            raise ParamsError(f"{where}={value!r} must be between {low:g} and {high:g}")
    elif key == "top_k":
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise ParamsError(f"{where}={show(value)} must be a whole number >= -1 "
                              "(-1 or 0: no top-k)")
    elif key == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise ParamsError(f"{where}={show(value)} must be a whole number >= 0")
    elif key == "stop":
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list | tuple) or not value
                or not all(isinstance(s, str) and s for s in value)):
            raise ParamsError(f"{where}={show(value)} must be a non-empty string or a list "
                              "of them")
    elif key == "response_format":
        try:
            response_schema(value)
        except ValueError as exc:
            raise ParamsError(f"Workload.params['response_format']: {exc}") from None


def check_params(params: Any) -> dict[str, Any]:
    """The workload's per-request fields, checked (ParamsError naming the first bad one)."""
    if not isinstance(params, Mapping):
        raise ParamsError(f"Workload.params={show(params)} must be a dict such as "
                          "{'top_p': 0.9, 'stop': ['\\n\\n']}")
    for key in params:
        if not isinstance(key, str) or not key:
            raise ParamsError(f"Workload.params has a key {key!r} that is not a field name")
        if key in OWNED:
            raise ParamsError(f"Workload.params[{key!r}]: the workload sets {key!r} itself; "
                              f"use {OWNED[key]}")
    _json_able("Workload.params", params)
    for key, value in params.items():
        _check_value(key, value)
    return dict(params)


# Fields that end an answer before ``max_tokens`` (a stop string, a grammar that completes):
# they need end-of-generation allowed, else every such answer counts as truncated.
ENDS_EARLY = ("stop", "stop_token_ids", "structured_outputs", "guided_json", "guided_regex",
              "guided_choice", "guided_grammar", "grammar", "json_schema")


def ends_early_problem(params: Mapping[str, Any], ignore_eos: bool) -> str | None:
    """Why ``params`` cannot go with ``ignore_eos=True`` (None when they can)."""
    if not ignore_eos:
        return None
    keys = [k for k in ENDS_EARLY if k in params]
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") != "text":
        keys.append("response_format")
    if not keys:
        return None
    return (f"Workload.params {', '.join(keys)} end(s) answers before output_tokens, and "
            "ignore_eos=True asks for exactly output_tokens: set Workload(ignore_eos=False) "
            "(output_tokens is then the most an answer may have)")


def check_models(models: Any) -> dict[str, float]:
    """A mix of model names: {name: weight} (weights > 0, need not add up to 1) or a list of
    names (equal weights); ParamsError naming the bad entry."""
    if isinstance(models, list | tuple):
        if len(set(models)) != len(models):
            raise ParamsError(f"Workload.models={show(models)} names a model twice")
        models = dict.fromkeys(models, 1.0)
    if not isinstance(models, Mapping) or not models:
        raise ParamsError(f"Workload.models={show(models)} must be a non-empty dict of model "
                          "name -> weight, such as {'adapter-a': 0.7, 'base': 0.3}")
    if len(models) > MAX_MODELS:
        raise ParamsError(f"Workload.models has {len(models)} names; at most {MAX_MODELS}")
    out: dict[str, float] = {}
    for name, weight in models.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_MODEL_NAME:
            raise ParamsError(f"Workload.models: {show(name)} is not a model name (a "
                              f"non-empty string of at most {MAX_MODEL_NAME} characters)")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ParamsError(f"Workload.models: {name!r} has control characters")
        number = _number(f"Workload.models[{name!r}]", weight)
        if number <= 0:
            raise ParamsError(f"Workload.models[{name!r}]={weight!r} must be > 0")
        out[name] = number
    return out


def mix_counts(models: Mapping[str, float], n: int) -> dict[str, int]:
    """How many of ``n`` requests each model gets: its share rounded by largest remainder
    (ties to the name given first), so the counts add up to ``n`` and each is within one of
    its exact share."""
    total = sum(models.values())
    exact = [(name, n * w / total) for name, w in models.items()]
    counts = {name: math.floor(x) for name, x in exact}
    left = n - sum(counts.values())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - math.floor(exact[i][1])), i))
    for i in order[:left]:
        counts[exact[i][0]] += 1
    return counts


def _dealt(models: Mapping[str, float], n: int, seed: int, salt: int) -> list[str]:
    names = [name for name, k in mix_counts(models, n).items() for _ in range(k)]
    rng = np.random.default_rng([seed, 0x6D6978, salt])
    return [names[int(i)] for i in rng.permutation(len(names))]


@functools.lru_cache(maxsize=16)
def _assigned(items: tuple[tuple[str, float], ...], seed: int, warmup: int,
              requests: int) -> tuple[str, ...]:
    models = dict(items)
    return (*_dealt(models, warmup, seed, 0), *_dealt(models, requests, seed, 1))


def assigned_models(models: Mapping[str, float] | None, seed: int, warmup: int,
                    requests: int) -> Sequence[str] | None:
    """Each request's model (warm-up first, then the measured requests), or None without a
    mix. Deterministic for a seed; the measured requests have the proportions of
    ``mix_counts`` exactly."""
    if not models:
        return None
    return _assigned(tuple(models.items()), seed, warmup, requests)


def check_engine(engine: Engine, workload: Any) -> None:
    """Before a run: UnsupportedError (one line) when the engine cannot send the workload's
    ``params`` or its mix of ``models`` (``Engine.request_problem``)."""
    if not workload.params and not workload.models:
        return
    problem = engine.request_problem(workload.params, list(workload.models or ()))
    if problem:
        raise UnsupportedError(problem)
