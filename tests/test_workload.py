"""Workloads: validation, exact-length synthetic prompts, JSONL prompts, arrivals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
from pytest_llmperf.engines.vocabulary import PLAIN_WORDS, round_trip_ids, token_pool
from pytest_llmperf.run.workload import (
    Workload,
    WorkloadError,
    arrival_offsets_s,
    build_prompts,
    synthetic_prompts,
)
from pytest_llmperf.testing.oracle import WORDS, WordTokenizer


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(LlamaCppSettings(model_path=str(tiny_model), n_threads=1, n_ctx=512))
    yield eng
    eng.close()


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


@pytest.mark.parametrize("n", [2, 17, 64, 300])
def test_synthetic_prompts_have_exact_token_length(engine: LlamaCppEngine, n: int) -> None:
    prompts = build_prompts(engine.tokenizer, Workload(input_tokens=n, requests=5, warmup=1))
    assert len(prompts) == 6
    for p in prompts:
        assert p.input_tokens == n
        assert p.token_ids is not None and len(p.token_ids) == n
        # The text itself re-tokenizes to exactly n tokens (what a server would count).
        assert len(engine.tokenizer.tokenize(p.text)) == n


def test_prompts_are_deterministic_per_seed_and_differ_per_request(engine: LlamaCppEngine) -> None:
    a = build_prompts(engine.tokenizer, Workload(input_tokens=32, requests=4, seed=1))
    b = build_prompts(engine.tokenizer, Workload(input_tokens=32, requests=4, seed=1))
    c = build_prompts(engine.tokenizer, Workload(input_tokens=32, requests=4, seed=2))
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in a] != [p.text for p in c]
    assert len({p.text for p in a}) == len(a)
    # Only BOS is shared at the start: no request can reuse another's KV cache prefix.
    firsts = {p.token_ids[1] for p in a if p.token_ids}
    assert len(firsts) > 1


def test_shared_prefix_is_common_to_every_prompt(engine: LlamaCppEngine) -> None:
    w = Workload(input_tokens=48, shared_prefix_tokens=16, requests=3)
    prompts = build_prompts(engine.tokenizer, w)
    heads = {p.token_ids[:17] for p in prompts if p.token_ids}  # BOS + 16 shared tokens
    assert len(heads) == 1
    assert all(p.input_tokens == 48 for p in prompts)


def test_jsonl_prompts_cycle_and_count_tokens(engine: LlamaCppEngine, tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(
        json.dumps({"prompt": "the quick brown fox", "output_tokens": 3}) + "\n\n"
        + json.dumps({"prompt": "over the lazy dog"}) + "\n"
    )
    prompts = build_prompts(engine.tokenizer, Workload(prompts_file=str(f), requests=3,
                                                       warmup=0, output_tokens=7))
    assert [p.text for p in prompts] == ["the quick brown fox", "over the lazy dog",
                                         "the quick brown fox"]
    assert [p.output_tokens for p in prompts] == [3, 7, 3]
    assert prompts[0].input_tokens == len(engine.tokenizer.tokenize("the quick brown fox"))


def test_bad_jsonl_names_file_and_line(engine: LlamaCppEngine, tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "ok"}\n{"text": 1}\n')
    with pytest.raises(WorkloadError, match=r"bad.jsonl:2"):
        build_prompts(engine.tokenizer, Workload(prompts_file=str(f), requests=2))


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

