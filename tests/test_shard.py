"""Sharding a suite across machines (Kubernetes Indexed Jobs, CI matrices)."""

from __future__ import annotations

import pytest

from pytest_llmperf.shard import ShardError, parse_shard, split


def test_shards_partition_the_suite() -> None:
    nodeids = [f"tests/test_m.py::test_{i}" for i in range(200)]
    seen: list[int] = []
    for index in range(4):
        keep, drop = split(nodeids, index, 4)
        assert sorted(keep + drop) == list(range(200))
        seen += keep
        assert 20 < len(keep) < 80  # roughly balanced
    assert sorted(seen) == list(range(200))  # every test in exactly one shard


@pytest.mark.parametrize("spec", ["3", "a/b", "4/4", "-1/2", "0/0"])
def test_bad_shard_specs(spec: str) -> None:
    with pytest.raises(ShardError):
        parse_shard(spec)


def test_good_shard_spec() -> None:
    assert parse_shard("2/5") == (2, 5)


def test_shard_option_deselects_other_shards(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("\n".join(f"def test_{i}(): pass" for i in range(12)))
    counts = []
    for index in range(3):
        result = pytester.runpytest(f"--llmperf-shard={index}/3")
        outcomes = result.parseoutcomes()
        counts.append(outcomes.get("passed", 0))
        assert outcomes.get("passed", 0) + outcomes.get("deselected", 0) == 12
    assert sum(counts) == 12


def test_bad_shard_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--llmperf-shard=5/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*shard '5/2': INDEX must be 0..COUNT-1*"])
