"""Workload.params on the embedded llama.cpp engine (the tiny random-weight model): a JSON
schema's grammar makes every answer parse and match the schema, a stop string ends answers
where it appears, sampling fields run, penalties and the grammar see each token once; fields
it has no mapping for and a model mix are refused before the run, in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.engines.base import GenerationParams, Prompt, UnsupportedError
from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
from pytest_llmperf.run.bench import _run_coroutine, run_benchmark
from pytest_llmperf.run.workload import Workload

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"},
                                           "b": {"type": "boolean"}},
          "required": ["a", "b"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "ab", "schema": SCHEMA}}


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(LlamaCppSettings(model_path=str(tiny_model), n_threads=1, n_ctx=512))
    yield eng
    eng.close()


def answer(engine: LlamaCppEngine, text: str, max_tokens: int, **params: object) -> str:
    gen = _run_coroutine(engine.generate(
        Prompt(text, None, 0, max_tokens),
        GenerationParams(max_tokens=max_tokens, ignore_eos=False, params=params),
        lambda t, n: None))
    return gen.text


def test_json_schema_answers_parse_and_match(engine: LlamaCppEngine) -> None:
    for text in ("alpha beta", "one two three", "x"):
        data = json.loads(answer(engine, text, 96, response_format=JSON_SCHEMA))
        assert set(data) == {"a", "b"}
        assert isinstance(data["a"], int) and isinstance(data["b"], bool)
    # Any JSON (a greedy answer of this model that closes within the budget).
    assert isinstance(json.loads(answer(engine, "hello world", 64,
                                        response_format={"type": "json_object"})), dict)
    # Without the grammar the random model writes no JSON.
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer(engine, "alpha beta", 24))


def test_a_stop_string_ends_the_answer(engine: LlamaCppEngine) -> None:
    free = answer(engine, "hello world", 24)
    stop = free[6:8]
    assert stop and free.find(stop) >= 6
    cut = answer(engine, "hello world", 24, stop=[stop])
    assert cut == free[:free.find(stop)]


def test_a_run_with_params_and_the_refusals(engine: LlamaCppEngine) -> None:
    result = run_benchmark(engine, Workload(
        input_tokens=16, output_tokens=6, requests=3, warmup=0, temperature=0.8,
        params={"top_k": 5, "top_p": 0.8, "min_p": 0.1, "seed": 3, "presence_penalty": 0.5,
                "repeat_penalty": 1.2}))
    assert result.summary["errors"] == 0 and result.summary["output_tokens"] == 18
    with pytest.raises(UnsupportedError) as err:
        run_benchmark(engine, Workload(input_tokens=16, output_tokens=4, requests=2,
                                       models={"adapter-a": 1, "base": 1}))
    assert "serves one model" in str(err.value) and "'adapter-a', 'base'" in str(err.value)
    with pytest.raises(UnsupportedError, match="cannot apply mirostat_tau; it maps"):
        run_benchmark(engine, Workload(input_tokens=16, output_tokens=4, requests=2,
                                       params={"mirostat_tau": 5.0}))
