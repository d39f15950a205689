"""Per-request parameters and model mixes (issue 24, item 5): Workload(params=, models=)
validated where they enter, the mix dealt in exact proportions from the seed, the engines'
mappings (OpenAI body, llama.cpp sampler plan, vLLM SamplingParams), per-model summaries and
per-model marker limits."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pytest_llmperf.engines import llama_cpp_params, vllm_params
from pytest_llmperf.engines.base import GenerationParams, Prompt
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.engines.request_fields import response_schema
from pytest_llmperf.run.metrics import RequestRecord, RunResult, summarize
from pytest_llmperf.run.model_metrics import by_model
from pytest_llmperf.run.request_params import assigned_models, mix_counts
from pytest_llmperf.run.workload import Workload, WorkloadError
from pytest_llmperf.testing.oracle import WordTokenizer
from pytest_llmperf.verdict.per_model import per_model_checks
from pytest_llmperf.verdict.thresholds import MarkerError, validate_marker

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(("key", "field"), [
    ("model", "Workload.models"), ("max_tokens", "Workload.output_tokens"),
    ("temperature", "Workload.temperature"), ("prompt", "input_tokens"),
    ("messages", "chat=True"), ("stream", "always streamed"), ("n", "one answer"),
    ("ignore_eos", "Workload.ignore_eos"), ("min_tokens", "Workload.output_tokens"),
])
def test_fields_the_workload_owns_are_refused_naming_the_field_to_use(key: str,
                                                                       field: str) -> None:
    with pytest.raises(WorkloadError) as err:
        Workload(params={key: 1})
    text = str(err.value)
    assert "\n" not in text and f"Workload.params[{key!r}]" in text and field in text


@pytest.mark.parametrize(("params", "words"), [
    ({"top_p": 1.5}, "top_p']=1.5 must be between 0 and 1"),
    ({"top_p": "high"}, "must be a finite number"),
    ({"top_k": 2.5}, "top_k']=2.5 must be a whole number >= -1"),
    ({"seed": -1}, "seed']=-1 must be a whole number >= 0"),
    ({"presence_penalty": 3}, "between -2 and 2"),
    ({"x": float("nan")}, "must be plain JSON"),
    ({"x": {1: 2}}, "not a string"),
    ({"x": object()}, "must be plain JSON"),
    ({"response_format": {"type": "yaml"}}, "one of text, json_object, json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {}}}, "OpenAI's shape"),
    ({"x": "a" * 70_000}, "at most 65,536"),
])
def test_bad_params_are_one_line_naming_the_field(params: dict[str, Any], words: str) -> None:
    with pytest.raises(WorkloadError) as err:
        Workload(params=params, ignore_eos=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_params_that_end_answers_early_need_ignore_eos_false() -> None:
    for params in ({"stop": ["\n"]}, {"response_format": JSON_SCHEMA},
                   {"structured_outputs": {"json": SCHEMA}}, {"guided_regex": "a+"}):
        with pytest.raises(WorkloadError, match="set Workload\\(ignore_eos=False\\)"):
            Workload(params=params)
        assert Workload(params=params, ignore_eos=False).params == params
    # Sampling fields and a plain-text response format go with exact lengths.
    assert Workload(params={"top_p": 0.9, "seed": 3, "response_format": {"type": "text"},
                            "vendor_field": {"a": [1, None, True]}}).params["seed"] == 3
    with pytest.raises(WorkloadError, match="must be a dict"):
        Workload(params=[("top_p", 0.9)])  # type: ignore[arg-type]


def test_response_schema_reads_openai_shapes() -> None:
    assert response_schema(JSON_SCHEMA) == SCHEMA
    assert response_schema({"type": "json_object"}) == {}
    assert response_schema({"type": "text"}) is None


# --------------------------------------------------------------------------- model mixes


def test_mix_counts_are_exact_as_far_as_the_count_allows() -> None:
    assert mix_counts({"a": 0.7, "b": 0.3}, 10) == {"a": 7, "b": 3}
    assert mix_counts({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert mix_counts({"a": 2, "b": 1}, 1000) == {"a": 667, "b": 333}
    assert mix_counts({"a": 0.7, "b": 0.3}, 0) == {"a": 0, "b": 0}
    for n in range(1, 60):
        counts = mix_counts({"x": 0.5, "y": 0.25, "z": 0.25}, n)
        assert sum(counts.values()) == n
        assert abs(counts["x"] - n * 0.5) < 1 and abs(counts["y"] - n * 0.25) < 1


def test_each_request_gets_its_model_from_the_seed() -> None:
    w = Workload(requests=100, warmup=3, models={"adapter-a": 0.7, "base": 0.3})
    models = [w.model_of(i) for i in range(w.total_requests)]
    assert Counter(models[3:]) == {"adapter-a": 70, "base": 30}  # the measured requests
    assert Counter(models[:3]) == {"adapter-a": 2, "base": 1}  # warm-up dealt on its own
    again = Workload(requests=100, warmup=3, models={"adapter-a": 0.7, "base": 0.3})
    assert [again.model_of(i) for i in range(103)] == models  # deterministic for a seed
    other = Workload(requests=100, warmup=3, models={"adapter-a": 0.7, "base": 0.3}, seed=1)
    shuffled = [other.model_of(i) for i in range(103)]
    assert shuffled != models and Counter(shuffled[3:]) == Counter(models[3:])
    assert models[3:13] != ["adapter-a"] * 10  # shuffled, not in blocks
    assert Workload().model_of(0) is None and w.model_of(103) is None
    assert assigned_models(None, 0, 1, 2) is None


def test_a_list_of_models_means_equal_weights_and_bad_mixes_are_refused() -> None:
    w = Workload(requests=4, warmup=0, models=["a", "b"])  # type: ignore[arg-type]
    assert w.models == {"a": 1.0, "b": 1.0}
    assert Counter(w.model_of(i) for i in range(4)) == {"a": 2, "b": 2}
    for models, words in (({}, "non-empty dict"), ({"a": 0}, "must be > 0"),
                          ({"a": -1.0}, "must be > 0"), ({"": 1}, "is not a model name"),
                          ({"a\nb": 1}, "control characters"), (["a", "a"], "twice"),
                          ({"a": True}, "finite number"), ("a", "non-empty dict")):
        with pytest.raises(WorkloadError, match=words):
            Workload(models=models)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- engines


def test_openai_body_carries_the_params_and_the_requests_model() -> None:
    engine = OpenAIEngine("http://127.0.0.1:9", model="base", tokenizer=WordTokenizer(),
                          extra_body={"top_p": 0.5})
    prompt = Prompt("alpha bravo", None, 3, 4)
    params = GenerationParams(max_tokens=4, ignore_eos=False,
                              params={"top_p": 0.9, "top_k": 5, "response_format": JSON_SCHEMA},
                              model="adapter-a")
    body = engine.body(prompt, params, chat=False)
    assert body["model"] == "adapter-a" and body["top_k"] == 5
    assert body["response_format"] == JSON_SCHEMA
    assert body["top_p"] == 0.5  # the engine's extra_body has the last word
    assert body["max_tokens"] == 4 and body["stream"] is True
    plain = engine.body(prompt, GenerationParams(max_tokens=4), chat=False)
    assert plain["model"] == "base" and "top_k" not in plain


def test_llama_cpp_maps_create_completion_fields_and_refuses_others() -> None:
    plan = llama_cpp_params.plan({"top_k": 5, "top_p": 0.8, "stop": "\n", "seed": 7,
                                  "presence_penalty": 0.5, "logit_bias": {"12": -5},
                                  "response_format": JSON_SCHEMA})
    assert (plan.top_k, plan.top_p, plan.stop, plan.seed) == (5, 0.8, ("\n",), 7)
    assert plan.penalties and plan.logit_bias == {12: -5.0} and plan.json_schema == SCHEMA
    assert not llama_cpp_params.plan({}).penalties
    assert llama_cpp_params.problem({"top_p": 0.9, "stop": ["x"]}) is None
    problem = llama_cpp_params.problem({"top_p": 0.9, "structured_outputs": {}, "guided_json": 1})
    assert problem is not None and "cannot apply guided_json, structured_outputs" in problem
    assert llama_cpp_params.stopped_at("ab\ncd", ("\n", "c")) == 2
    assert llama_cpp_params.stopped_at("abcd", ("x",)) is None


def test_vllm_maps_onto_sampling_params_and_structured_outputs() -> None:
    kwargs, structured = vllm_params.sampling_kwargs(
        {"top_p": 0.9, "repeat_penalty": 1.1, "logit_bias": {"3": 1}, "stop": ["}"],
         "response_format": JSON_SCHEMA})
    assert kwargs == {"top_p": 0.9, "repetition_penalty": 1.1, "logit_bias": {3: 1.0},
                      "stop": ["}"]}
    assert structured == {"json": SCHEMA}
    assert vllm_params.sampling_kwargs({"response_format": {"type": "json_object"}})[1] == {
        "json_object": True}
    assert vllm_params.sampling_kwargs({"guided_regex": "a+"})[1] == {"regex": "a+"}
    assert vllm_params.sampling_kwargs({"structured_outputs": {"choice": ["x"]}})[1] == {
        "choice": ["x"]}
    assert vllm_params.sampling_kwargs({"response_format": {"type": "text"}}) == ({}, None)
    two = vllm_params.problem({"response_format": JSON_SCHEMA, "guided_json": SCHEMA})
    assert two is not None and "give one" in two
    odd = vllm_params.problem({"mirostat_tau": 5})
    assert odd is not None and "cannot apply mirostat_tau" in odd


# --------------------------------------------------------------------------- per-model figures


def _record(i: int, model: str | None, ttft_ms: float, *, warmup: bool = False,
            error: str | None = None) -> RequestRecord:
    send = i * 1_000_000_000
    chunks = [] if error else [send + int(ttft_ms * 1e6) + k * 10_000_000 for k in range(4)]
    return RequestRecord(index=i, prompt_tokens=8, warmup=warmup, send_ns=send,
                         chunk_ns=chunks, chunk_tokens=[1] * len(chunks), output_tokens=4,
                         error=error, model=model)


def test_by_model_is_each_models_own_summary() -> None:
    records = [_record(0, "a", 999, warmup=True)]
    records += [_record(i, "a", 100 + i) for i in range(1, 8)]
    records += [_record(i, "b", 300 + i) for i in range(8, 11)]
    records.append(_record(11, "b", 0, error="boom"))
    out = by_model(records)
    assert sorted(out) == ["a", "b"]
    assert out["a"] == summarize([r for r in records if r.model == "a"])
    assert out["a"]["requests"] == 7 and out["b"]["requests"] == 4
    assert out["b"]["errors"] == 1
    assert out["a"]["ttft_p50_ms"] == pytest.approx(104.0)
    assert out["b"]["ttft_p50_ms"] == pytest.approx(309.0)
    assert by_model([_record(0, None, 5)]) == {}
    run = RunResult(summary=summarize(records), samples=records, by_model=out)
    back = RunResult.from_dict(run.to_dict())
    assert back.by_model == out and back.samples[3].model == "a"
    assert "by_model" not in RunResult(summary={}, samples=[]).to_dict()


def test_per_model_marker_limits() -> None:
    marker = validate_marker((), {"per_model": {"a": {"ttft_p95_ms": 200}, "b": {
        "ttft_p95_ms": 200, "max_errors": 0}}, "ttft_p95_ms": 1000})
    records = [_record(i, "a", 100 + i) for i in range(7)] + [
        _record(i, "b", 300 + i) for i in range(7, 10)]
    checks = {c.name: c for c in per_model_checks(marker, by_model(records))}
    assert set(checks) == {"per_model[a].ttft_p95_ms", "per_model[b].ttft_p95_ms",
                           "per_model[b].max_errors"}
    assert checks["per_model[a].ttft_p95_ms"].passed
    failed = checks["per_model[b].ttft_p95_ms"]
    assert not failed.passed and failed.measured == pytest.approx(308.9)
    assert failed.short() == "per_model[b].ttft_p95_ms 308.9 > 200"
    assert checks["per_model[b].max_errors"].passed
    missing = per_model_checks({"per_model": {"c": {"min_rps": 1}}}, by_model(records))
    assert [(c.name, c.measured, c.passed) for c in missing] == [
        ("per_model[c].min_rps", None, False)]  # a model never sent to cannot pass
    assert per_model_checks({"ttft_p95_ms": 1}, {}) == []
    for bad, words in (({"a": {"ttft_p96_ms": 1}}, "unknown threshold"),
                       ({"a": 5}, "must be a dict of thresholds"), ([], "must be a dict"),
                       ({"a": {"min_goodput": 2}}, "fraction"),
                       ({"a": {"ttft_p95_ms": -1}}, "negative")):
        with pytest.raises(MarkerError, match=words):
            validate_marker((), {"per_model": bad})



def test_an_engine_that_does_not_say_it_applies_them_refuses_before_the_run() -> None:
    from pytest_llmperf.engines.base import UnsupportedError
    from pytest_llmperf.run.request_params import check_engine
    from pytest_llmperf.testing.schedule_engine import ScheduleEngine

    engine = ScheduleEngine(5.0)
    check_engine(engine, Workload())  # nothing asked: nothing to refuse
    with pytest.raises(UnsupportedError) as err:
        check_engine(engine, Workload(params={"top_p": 0.5}, models={"a": 1}))
    assert str(err.value) == (f"the {engine.kind} engine does not apply Workload.params or "
                              "Workload.models; use an engine that does (openai, llama_cpp, "
                              "vllm)")
    openai = OpenAIEngine("http://127.0.0.1:9", model="m", tokenizer=WordTokenizer())
    check_engine(openai, Workload(params={"top_p": 0.5}, models={"a": 1}))


def test_vllm_lora_modules_engine_argument() -> None:
    assert vllm_params.lora_modules(None) == {}
    assert vllm_params.lora_modules("a=/x b=/y") == {"a": "/x", "b": "/y"}
    assert vllm_params.lora_modules(["a=/x=1"]) == {"a": "/x=1"}
    assert vllm_params.lora_modules({"a": "/x"}) == {"a": "/x"}
    for bad in ("a", "=/x", "a=", 5, {"a": 1}):
        with pytest.raises(ValueError, match="lora_modules"):
            vllm_params.lora_modules(bad)


def test_embeddings_take_neither_params_nor_a_mix() -> None:
    for extra in ({"params": {"top_p": 0.5}}, {"models": {"a": 1}}):
        with pytest.raises(WorkloadError, match="an embedding request"):
            Workload(embeddings=True, **extra)  # type: ignore[arg-type]
