"""Sharding a suite across machines (Kubernetes Indexed Jobs, CI matrices).

Split by tier from tests/test_shard.py: these are its unit tests; the others are in
tests/sessions/test_shard_session.py.
"""

from __future__ import annotations

import random

import pytest

from pytest_llmperf import limits
from pytest_llmperf.shard import (
    ShardError,
    assign,
    durations_from_results,
    parse_shard,
    split,
)


def test_shards_partition_the_suite_and_differ_by_at_most_one() -> None:
    nodeids = [f"tests/test_m.py::test_{i}" for i in range(200)]
    seen: list[int] = []
    sizes = []
    for index in range(7):
        keep, drop = split(nodeids, index, 7)
        assert sorted(keep + drop) == list(range(200))
        seen += keep
        sizes.append(len(keep))
    assert sorted(seen) == list(range(200))  # every test in exactly one shard
    assert sorted(sizes) == [28, 28, 28, 29, 29, 29, 29]


def test_ten_tests_over_three_shards_are_4_3_3() -> None:
    # The crc32 split gave 5/4/1 for these.
    nodeids = [f"test_suite.py::test_{i}" for i in range(10)]
    assert [len(split(nodeids, i, 3)[0]) for i in range(3)] == [4, 3, 3]


def test_the_split_does_not_depend_on_collection_order() -> None:
    nodeids = [f"t.py::test_{i}" for i in range(30)]
    shuffled = list(nodeids)
    random.Random(4).shuffle(shuffled)
    assert assign(nodeids, 4) == assign(shuffled, 4)
    durations = {n: float(i % 7) for i, n in enumerate(nodeids)}
    assert assign(nodeids, 4, durations) == assign(shuffled, 4, durations)


def test_durations_balance_longest_first_into_the_least_loaded_shard() -> None:
    durations = {"a": 10.0, "b": 6.0, "c": 5.0, "d": 1.0}
    # a -> 0 (10); b -> 1 (6); c -> 1 (11); d -> 0 (11): 11 s each, where by count
    # (a, c | b, d) it would be 15 s against 7 s.
    assert assign(["a", "b", "c", "d"], 2, durations) == {"a": 0, "b": 1, "c": 1, "d": 0}
    assert assign(["a", "b", "c", "d"], 2) == {"a": 0, "b": 1, "c": 0, "d": 1}


def test_a_test_without_a_duration_weighs_the_median() -> None:
    durations = {"slow": 90.0, "x": 2.0, "y": 4.0}  # median 4
    shards = assign(["slow", "x", "y", "new"], 2, durations)
    # slow -> 0 (90); new (4) and y (4) -> 1 by node id; x (2) -> 1: 10 s against 90 s.
    assert shards == {"slow": 0, "new": 1, "y": 1, "x": 1}


def test_more_shards_than_tests_leaves_the_last_ones_empty() -> None:
    nodeids = [f"t.py::test_{i}" for i in range(10)]
    sizes = [len(split(nodeids, i, 16)[0]) for i in range(16)]
    assert sizes == [1] * 10 + [0] * 6


def test_durations_from_a_results_document() -> None:
    document = {"schema": "pytest-llmperf/results", "tests": [
        {"nodeid": "t.py::a", "runs": [{"summary": {"duration_s": 1.5}},
                                       {"summary": {"duration_s": 2.0}}]},
        {"nodeid": "t.py::b", "duration_s": 7.0, "runs": [{"summary": {"duration_s": 1.0}}]},
        {"nodeid": "t.py::c", "runs": [{"summary": {"duration_s": None}}]},
        {"nodeid": "t.py::d", "runs": [{"summary": {"duration_s": "fast"}}]},
    ]}
    assert durations_from_results(document) == {"t.py::a": 3.5, "t.py::b": 7.0}
    for bad in ({}, [], {"tests": {}}, "x"):
        with pytest.raises(ShardError, match="not a pytest-llmperf results file"):
            durations_from_results(bad)


@pytest.mark.parametrize("spec", ["3", "a/b", "4/4", "-1/2", "0/0"])
def test_bad_shard_specs(spec: str) -> None:
    with pytest.raises(ShardError):
        parse_shard(spec)


def test_good_shard_spec() -> None:
    assert parse_shard("2/5") == (2, 5)


def test_a_shard_count_above_the_maximum_is_refused_naming_it() -> None:
    """Issue 23, item 16: a COUNT read from a results file (``provenance.shard``) sizes the
    merge's list of missing shards: ``1/999999999999`` filled 1.7 GB before a MemoryError."""
    assert limits.SHARDS.maximum == 10_000
    assert parse_shard("9999/10000") == (9999, 10_000)
    for spec in ("0/10001", "1/999999999999"):
        with pytest.raises(ShardError) as info:
            parse_shard(spec)
        count = spec.split("/")[1]
        assert str(info.value) == (f"shard {spec!r}: COUNT={count} is above the limit: at most "
                                   "10,000 (shards of one suite; merging their results files "
                                   "lists the missing ones)")
    with pytest.raises(ShardError, match=r"^shard '0/9999999999999999999999999999999999\.\.\.: "):
        parse_shard("0/" + "9" * 100)
