"""Reasoning and answer phases of a run: time to the first answer token, reasoning tokens and
inter-token latency per phase. Pure functions, no I/O.

A request's stream is split by its record's ``reasoning_chunks``: the leading token-bearing
chunks that carried thinking (``engines/reasoning.py`` marks them) are the reasoning phase,
every later chunk the answer phase. TTFT stays the first chunk of either kind (vLLM's
definition); TTFA (aiperf's TTFO, time to first output token) is the first answer chunk
minus the send time, and equals TTFT for an answer without reasoning. A chunk's ITL gap (from
the chunk before it, per token as in ``run/metrics.py``) belongs to that chunk's phase, so the
gap into the first answer token is the answer's: TTFA - TTFT is the reasoning phase's gaps
plus that one.

The summary's figures (``metric_table.REASONING_KEYS``) are None unless some measured
successful request of the run had reasoning (reasoning chunks, or reasoning tokens in the
server's ``usage``): ``ttfa_{p50,p90,p95,p99,mean,max}_ms`` over the requests that reached an
answer (one that spent its whole budget thinking has no TTFA), ``itl_reasoning_p50/p99_ms``,
``itl_answer_p50/p99_ms``, ``reasoning_tokens_mean`` (per request, those without reasoning
counting 0) and ``reasoning_tokens_total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..metric_table import PERCENTILES, STATS

NS_PER_MS = 1_000_000


class PhasedRecord(Protocol):
    """What this module reads of a ``run.metrics.RequestRecord``."""

    chunk_ns: list[int]
    chunk_tokens: list[int]
    reasoning_chunks: int
    reasoning_tokens: int | None

    @property
    def ttfa_ns(self) -> int | None: ...


def had_reasoning(record: PhasedRecord) -> bool:
    """True when the request's answer streamed thinking (or the server counted some)."""
    return record.reasoning_chunks > 0 or bool(record.reasoning_tokens)


def phase_itl_ms(record: PhasedRecord) -> tuple[list[float], list[float]]:
    """The request's per-token inter-token latencies (ms) of its reasoning phase and of its
    answer phase: a chunk carrying k tokens gives k gaps of gap/k, in the chunk's phase."""
    reasoning: list[float] = []
    answer: list[float] = []
    lead = max(0, record.reasoning_chunks)
    times, tokens = record.chunk_ns, record.chunk_tokens
    for i in range(1, len(times)):
        k = max(1, tokens[i] if i < len(tokens) else 1)
        gap = (times[i] - times[i - 1]) / k / NS_PER_MS
        (reasoning if i < lead else answer).extend([gap] * k)
    return reasoning, answer


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(STATS)
    arr = np.asarray(values, dtype=float)
    out: dict[str, float | None] = {
        f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES),
                                          strict=True)}
    out["mean"] = float(arr.mean())
    out["max"] = float(arr.max())
    return out


def reasoning_summary(ok: Sequence[PhasedRecord]) -> dict[str, float | int | None]:
    """The run's reasoning figures from its measured successful requests (every key None
    when none of them had reasoning)."""
    keys = [*(f"ttfa_{stat}_ms" for stat in STATS), "itl_reasoning_p50_ms",
            "itl_reasoning_p99_ms", "itl_answer_p50_ms", "itl_answer_p99_ms",
            "reasoning_tokens_mean", "reasoning_tokens_total"]
    out: dict[str, float | int | None] = dict.fromkeys(keys)
    if not any(had_reasoning(r) for r in ok):
        return out
    ttfa = [t / NS_PER_MS for r in ok if (t := r.ttfa_ns) is not None]
    for stat, value in _stats(ttfa).items():
        out[f"ttfa_{stat}_ms"] = value
    reasoning: list[float] = []
    answer: list[float] = []
    for r in ok:
        think, rest = phase_itl_ms(r)
        reasoning.extend(think)
        answer.extend(rest)
    for name, series in (("reasoning", reasoning), ("answer", answer)):
        stats = _stats(series)
        out[f"itl_{name}_p50_ms"] = stats["p50"]
        out[f"itl_{name}_p99_ms"] = stats["p99"]
    counts = [r.reasoning_tokens or 0 for r in ok]
    out["reasoning_tokens_total"] = sum(counts)
    out["reasoning_tokens_mean"] = sum(counts) / len(counts)
    return out
