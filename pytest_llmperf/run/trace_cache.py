"""Trace replay, part 3: the prefix-cache hits a trace implies, and the TTFT split by them.

``expected_cached_tokens``: per entry, in replay order, the prompt tokens an ideal prefix
cache would reuse: an infinite cache holding every earlier prompt of the replay, reusing
whole blocks of ``cache_block`` tokens (16: vLLM's default block size, and the oracle's),
at most the prompt's length - 1 (the last token is always computed, as vLLM and the oracle
do). Prompts are built from the trace's blocks (run/trace_prompts.py), so two prompts share
their leading tokens exactly as far as their ``hash_ids`` agree (a block shared in part,
when one of the two ends inside it, for the shorter one's length): the same tokens a real
prefix cache sees, from the trace alone. ``ideal_hit_rate``: their sum over the prompts'
tokens, the figure the server's ``prefix_hit_rate`` (its ``/metrics``) is compared with.

A run's records carry their expected cached tokens (``RequestRecord.trace_cached_tokens``,
``mark_records``), and ``trace_figures`` summarises the measured ones: the ideal hit rate of
the requests sent (``trace_ideal_hit_rate``), and TTFT p50 of the *cached* requests (expected
cached tokens at least half of the prompt) and of the others (*uncached*). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .traces import TraceEntry, trace_entries

if TYPE_CHECKING:
    from .metrics import RequestRecord
    from .workload import Workload

CACHE_BLOCK = 16
NS_PER_MS = 1_000_000
# The summary keys (metric_table.py's trace block), filled by ``trace_figures``.
TRACE_KEYS: tuple[str, ...] = ("trace_ideal_hit_rate", "trace_cached_requests",
                               "ttft_cached_p50_ms", "ttft_uncached_p50_ms")


def expected_cached_tokens(entries: Sequence[TraceEntry], block_size: int,
                           cache_block: int = CACHE_BLOCK) -> list[int]:
    """Per entry, the tokens an ideal cache of ``cache_block``-token blocks reuses
    (module docstring); entries without ``hash_ids`` share nothing (0)."""
    # A trie of hash-id chains: (parent node, hash id) -> (node, longest length seen).
    nodes: dict[tuple[int, int], list[int]] = {}
    out: list[int] = []
    for entry in entries:
        total, hashes = entry.input_length, entry.hash_ids or ()
        n_blocks = min(len(hashes), math.ceil(total / block_size))
        lengths = [min(block_size, total - j * block_size) for j in range(n_blocks)]
        matched, parent = 0, 0
        for h, length in zip(hashes, lengths, strict=False):
            node = nodes.get((parent, h))
            if node is None:
                break
            shared = min(length, node[1])
            matched += shared
            if shared < block_size:
                break
            parent = node[0]
        out.append(min(matched, total - 1) // cache_block * cache_block)
        parent = 0
        for h, length in zip(hashes, lengths, strict=False):
            node = nodes.get((parent, h))
            if node is None:
                node = nodes[(parent, h)] = [len(nodes) + 1, length]
            else:
                node[1] = max(node[1], length)
            parent = node[0]
    return out


def ideal_hit_rate(entries: Sequence[TraceEntry], block_size: int,
                   cache_block: int = CACHE_BLOCK) -> float | None:
    """The trace's ideal prefix hit rate: cached tokens / prompt tokens (None: no tokens)."""
    cached = expected_cached_tokens(entries, block_size, cache_block)
    tokens = sum(e.input_length for e in entries)
    return sum(cached) / tokens if tokens else None


def mark_records(records: Iterable[RequestRecord], workload: Workload) -> None:
    """Give the measured records of a trace replay their expected cached tokens (request
    ``warmup + k`` is the trace's entry k; warm-up requests share nothing: left None)."""
    if not workload.trace:
        return
    cached = expected_cached_tokens(trace_entries(workload), workload.trace_block_size)
    for r in records:
        k = r.index - workload.warmup
        if not r.warmup and 0 <= k < len(cached):
            r.trace_cached_tokens = cached[k]


def is_cached(record: RequestRecord) -> bool:
    """A *cached* request: the trace expects at least half of its prompt in the cache."""
    return (record.trace_cached_tokens or 0) * 2 >= record.prompt_tokens > 0


def trace_figures(records: Sequence[RequestRecord]) -> dict[str, float | int | None]:
    """The trace figures of the measured records that carry an expectation (none: every
    key None): ``trace_ideal_hit_rate`` over the requests sent, ``trace_cached_requests``,
    and ``ttft_cached_p50_ms`` / ``ttft_uncached_p50_ms`` of the successful ones."""
    mine = [r for r in records if not r.warmup and r.trace_cached_tokens is not None]
    out: dict[str, float | int | None] = dict.fromkeys(TRACE_KEYS)
    if not mine:
        return out
    tokens = sum(r.prompt_tokens for r in mine)
    out["trace_ideal_hit_rate"] = (sum(r.trace_cached_tokens or 0 for r in mine) / tokens
                                   if tokens else None)
    out["trace_cached_requests"] = sum(1 for r in mine if is_cached(r))
    for key, want in (("ttft_cached_p50_ms", True), ("ttft_uncached_p50_ms", False)):
        ttfts = [r.ttft_ns for r in mine if r.ok and is_cached(r) == want]
        values = [t for t in ttfts if t is not None]
        out[key] = float(np.percentile(values, 50)) / NS_PER_MS if values else None
    return out
