"""Workloads: validation, exact-length synthetic prompts, JSONL prompts, arrivals.

Split by tier from tests/test_workload.py: these are its unit tests; the others are in
tests/sessions/test_workload_session.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_llmperf.engines.vocabulary import PLAIN_WORDS, round_trip_ids, token_pool
from pytest_llmperf.run.workload import (
    Workload,
    WorkloadError,
    arrival_offsets_s,
    synthetic_prompts,
)
from pytest_llmperf.testing.oracle import WORDS, WordTokenizer


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"input_tokens": 0}, "input_tokens=0"),
        ({"output_tokens": 2.5}, "output_tokens=2.5"),
        ({"requests": -1}, "requests=-1"),
        ({"concurrency": 0}, "concurrency=0"),
        ({"rate": 0}, "rate=0"),
        ({"arrival": "uniform"}, "arrival='uniform'"),
        ({"slo": {"latency": 1}}, "unknown key"),
        ({"shared_prefix_tokens": 64, "input_tokens": 64}, "shared_prefix_tokens=64"),
        ({"prompts_file": "/nonexistent.jsonl"}, "does not exist"),
    ],
)
def test_bad_workloads_are_named(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(WorkloadError, match=fragment.replace("(", r"\(")):
        Workload(**kwargs)  # type: ignore[arg-type]


def test_poisson_arrivals_are_seeded_and_have_the_asked_rate() -> None:
    w = Workload(rate=50.0, seed=3, requests=2000)
    a, b = arrival_offsets_s(w, 2000), arrival_offsets_s(w, 2000)
    assert a == b and a is not None and a[0] == 0.0
    gaps = np.diff(a)
    assert np.mean(gaps) == pytest.approx(1 / 50, rel=0.1)
    # exponential gaps: coefficient of variation ~ 1; gamma with burstiness 0.25 ~ 2
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, rel=0.15)
    bursty = np.diff(arrival_offsets_s(Workload(rate=50.0, arrival="gamma", burstiness=0.25),
                                       2000) or [])
    assert np.std(bursty) / np.mean(bursty) == pytest.approx(2.0, rel=0.2)
    assert arrival_offsets_s(Workload(), 5) is None


def test_token_pool_finds_words_through_the_tokenizer_alone() -> None:
    """Any tokenizer (here the oracle's word-level one, asked only to tokenize and
    detokenize): first the plain English words it knows, then, with fewer than 16, whole
    words from the vocabulary ids it is given; unknown and special ids never survive."""
    tok = WordTokenizer()
    known = sorted(tok.tokenize(w, add_special=False)[0] for w in set(PLAIN_WORDS) & set(WORDS))
    assert 0 < len(known) < 16
    assert token_pool(tok) == known  # no vocabulary to look further in
    assert token_pool(tok, range(200)) == list(range(2, 2 + len(WORDS)))
    assert round_trip_ids(tok, [0, 1, 5, 5, 7]) == [5, 7]  # <unk> and <s> decode to nothing
    prompts = synthetic_prompts(tok, Workload(input_tokens=33, output_tokens=2, requests=3))
    assert [len(tok.tokenize(p.text)) for p in prompts] == [33] * 4



def test_a_run_stored_before_a_field_existed_compares_with_todays_runs() -> None:
    """A baseline saved by an older pytest-llmperf lacks the Workload fields added since (they
    mean their defaults): the stored gate and the nightly group runs by ``workload_key``,
    which leaves default-valued fields out, so upgrading does not orphan every baseline."""
    from pytest_llmperf.run.workload import comparable, workload_key

    today = Workload(input_tokens=32, output_tokens=8, requests=4).to_dict()
    older = {k: v for k, v in today.items() if k not in ("turns", "think_time_s", "slo",
                                                          "conversations_file")}
    assert workload_key({"workload": older}) == workload_key({"workload": today})
    assert comparable(today) == {"input_tokens": 32, "output_tokens": 8, "requests": 4}
    # A field away from its default still tells workloads apart.
    other = Workload(input_tokens=32, output_tokens=8, requests=4, turns=2).to_dict()
    assert workload_key({"workload": other}) != workload_key({"workload": today})
    assert workload_key({}) == workload_key({"workload": "not a dict"}) == "{}"
