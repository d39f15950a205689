"""Splitting a suite across machines: ``--llmperf-shard INDEX/COUNT`` keeps one shard's tests.

A test belongs to shard ``crc32(nodeid) % COUNT``: stable across machines and runs, no
coordination needed (a Kubernetes Indexed Job passes ``$JOB_COMPLETION_INDEX`` as INDEX).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class ShardError(ValueError):
    """A shard spec that is not INDEX/COUNT with 0 <= INDEX < COUNT."""


def parse_shard(spec: str) -> tuple[int, int]:
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ShardError(f"shard {spec!r} is not INDEX/COUNT, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"shard {spec!r}: INDEX must be 0..COUNT-1 and COUNT >= 1")
    return index, count


def shard_of(nodeid: str, count: int) -> int:
    return zlib.crc32(nodeid.encode("utf-8")) % count


def split(nodeids: Sequence[str], index: int, count: int) -> tuple[list[int], list[int]]:
    """Positions of the tests kept and deselected by shard ``index`` of ``count``."""
    keep: list[int] = []
    drop: list[int] = []
    for i, nodeid in enumerate(nodeids):
        (keep if shard_of(nodeid, count) == index else drop).append(i)
    return keep, drop
