"""Workloads: validation, exact-length synthetic prompts, JSONL prompts, arrivals.

Split by tier from tests/test_workload.py: these are its sessions tests; the others are in
tests/unit/run/test_workload.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
from pytest_llmperf.run.workload import (
    Workload,
    WorkloadError,
    build_prompts,
)


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(LlamaCppSettings(model_path=str(tiny_model), n_threads=1, n_ctx=512))
    yield eng
    eng.close()


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

