"""Splitting a suite across machines: ``--llmperf-shard INDEX/COUNT`` keeps one shard's tests.

Every shard computes the same split from the same collection, with no coordination (a
Kubernetes Indexed Job passes ``$JOB_COMPLETION_INDEX`` as INDEX):

- by count (nothing else known): the node ids, sorted, are dealt round-robin, so shard sizes
  differ by at most one;
- by duration (``--llmperf-shard-durations`` names an earlier ``--llmperf-json`` file): the
  longest test first goes to the least-loaded shard (ties: the lower shard index, then the
  node id); a test the file does not know weighs the median of the known durations.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from . import limits


class ShardError(ValueError):
    """A shard spec that is not INDEX/COUNT with 0 <= INDEX < COUNT (COUNT within
    ``limits.SHARDS``), or a durations file that is not a results file."""


def parse_shard(spec: str) -> tuple[int, int]:
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ShardError(f"shard {_shown(spec)} is not INDEX/COUNT, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"shard {_shown(spec)}: INDEX must be 0..COUNT-1 and COUNT >= 1")
    # A COUNT read from a results file (provenance.shard) sizes the merge's list of missing
    # shards: bounded here, where every shard spec, given or read, is parsed.
    problem = limits.SHARDS.problem("COUNT", count)
    if problem:
        raise ShardError(f"shard {_shown(spec)}: {problem}")
    return index, count


def _shown(spec: str) -> str:
    text = repr(spec)
    return text if len(text) <= 40 else text[:37] + "..."


def assign(nodeids: Sequence[str], count: int,
           durations: Mapping[str, float] | None = None) -> dict[str, int]:
    """The shard of every node id: by recorded duration when ``durations`` knows any of the
    tests, else round-robin over the sorted node ids."""
    ordered = sorted(set(nodeids))
    known = [durations[n] for n in ordered if durations and n in durations]
    if not known:
        return {nodeid: i % count for i, nodeid in enumerate(ordered)}
    assert durations is not None
    median = statistics.median(known)
    weight = {n: durations.get(n, median) for n in ordered}
    loads = [0.0] * count
    sizes = [0] * count
    out: dict[str, int] = {}
    for nodeid in sorted(ordered, key=lambda n: (-weight[n], n)):
        # The least-loaded shard; among equal loads the one with fewer tests, then the lowest.
        shard = min(range(count), key=lambda s: (loads[s], sizes[s], s))
        out[nodeid] = shard
        loads[shard] += weight[nodeid]
        sizes[shard] += 1
    return out


def split(nodeids: Sequence[str], index: int, count: int,
          durations: Mapping[str, float] | None = None) -> tuple[list[int], list[int]]:
    """Positions of the tests kept and deselected by shard ``index`` of ``count``."""
    shard_of = assign(nodeids, count, durations)
    keep: list[int] = []
    drop: list[int] = []
    for i, nodeid in enumerate(nodeids):
        (keep if shard_of[nodeid] == index else drop).append(i)
    return keep, drop


def durations_from_results(document: Any) -> dict[str, float]:
    """Seconds per node id from a results document (``--llmperf-json``, or a merged one from
    ``llmperf report --json``): a test's ``duration_s`` when recorded, else the sum of its
    runs' measured ``summary.duration_s``. Tests with neither are left out (they weigh the
    median). ShardError when the document is not a results file."""
    tests = document.get("tests") if isinstance(document, dict) else None
    if not isinstance(tests, list):
        raise ShardError("is not a pytest-llmperf results file (no \"tests\" list)")
    out: dict[str, float] = {}
    for test in tests:
        if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str):
            continue
        seconds = _number(test.get("duration_s"))
        if seconds is None:
            parts = [_number((run.get("summary") or {}).get("duration_s"))
                     for run in test.get("runs") or [] if isinstance(run, dict)]
            known = [p for p in parts if p is not None]
            seconds = sum(known) if known else None
        if seconds is not None:
            out[test["nodeid"]] = out.get(test["nodeid"], 0.0) + seconds
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 and value == value and value != float("inf") else None


def empty_line(index: int, count: int, total: int) -> str:
    return (f"llmperf: shard {index}/{count} has no tests "
            f"({total} tests over {count} shards)")
