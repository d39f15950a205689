"""Embeddings (issue 24, item 6): the workload's checks, an embedding request's record, the
summary of an embeddings run (E2E, requests/s and input tokens/s; TTFT, TPOT, ITL and output
tokens/s None), the answer's check, the report columns and the gate's default metrics.

In-process fake engines only; the oracle and real engines are in
tests/sessions/test_embeddings_session.py, tests/e2e/test_embeddings_e2e.py and
tests/vllm_cpu/test_vllm_embeddings.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pytest_llmperf.engines.base import (
    Embedded,
    Engine,
    EngineError,
    Generation,
    GenerationParams,
    OnChunk,
    Prompt,
    RequestError,
)
from pytest_llmperf.engines.embeddings import parse_answer, request_body
from pytest_llmperf.metric_table import (
    EMBEDDING_GATED,
    MARKDOWN_METRICS,
    TABLE_METRICS,
    is_embeddings,
    with_optional,
)
from pytest_llmperf.run.embeddings import send_embedding
from pytest_llmperf.run.loadgen import run_load
from pytest_llmperf.run.metrics import NS_PER_MS, RequestRecord, summarize
from pytest_llmperf.run.workload import Workload, WorkloadError, build_prompts
from pytest_llmperf.testing.oracle import WordTokenizer
from pytest_llmperf.verdict.gate import embeddings_gated, gated_metrics
from pytest_llmperf.verdict.thresholds import Thresholds, evaluate

EMBED_MS = 20.0


class FakeEmbedder(Engine):
    """Answers an embedding request ``EMBED_MS`` later (+ ``per_token_ms`` per input token);
    every ``fail_every``-th request (from 1) fails."""

    kind = "fake"

    def __init__(self, per_token_ms: float = 0.0, fail_every: int = 0,
                 embeddings: bool = True) -> None:
        self.per_token_ms = per_token_ms
        self.fail_every = fail_every
        self.embeddings = embeddings
        self.calls = 0
        self.tok = WordTokenizer()

    @property
    def tokenizer(self) -> WordTokenizer:
        return self.tok

    @property
    def has_embeddings(self) -> bool:
        return self.embeddings

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind}

    async def generate(self, prompt: Prompt, params: GenerationParams,
                       on_chunk: OnChunk) -> Generation:
        raise AssertionError("an embeddings workload must not generate")

    async def embed(self, prompt: Prompt) -> Embedded:
        self.calls += 1
        await asyncio.sleep((EMBED_MS + self.per_token_ms * prompt.input_tokens) / 1e3)
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RequestError("http_500", "HTTP 500: injected")
        return Embedded(input_tokens=prompt.input_tokens, dimensions=4)


def run(engine: Engine, workload: Workload) -> list[RequestRecord]:
    prompts = build_prompts(engine.tokenizer, workload)
    return asyncio.run(run_load(engine, prompts, workload)).records


# -- the workload ------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"embeddings": 1}, "Workload.embeddings=1 must be True or False"),
    ({"chat": True}, "Workload.embeddings and chat=True cannot be combined"),
    ({"turns": 2}, "Workload.embeddings does not apply to multi-turn sessions"),
    ({"slo": {"ttft_ms": 10}}, "Workload.slo has ttft_ms: an embedding request has no tokens"),
])
def test_the_workload_refuses_what_embeddings_cannot_do(kwargs: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(WorkloadError) as info:
        Workload(**{"embeddings": True, **kwargs})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_the_workload_field_is_stored_and_off_by_default() -> None:
    assert Workload().embeddings is False
    assert Workload(embeddings=True, slo={"e2e_ms": 50}).to_dict()["embeddings"] is True


# -- one request's record ----------------------------------------------------------------


def test_a_record_is_one_zero_token_chunk_at_the_answer() -> None:
    record = RequestRecord(index=0, prompt_tokens=3)
    prompt = Prompt("alpha bravo", (1, 2, 3), 3, 64)

    class Counting(FakeEmbedder):
        async def embed(self, prompt: Prompt) -> Embedded:
            await asyncio.sleep(EMBED_MS / 1e3)
            return Embedded(input_tokens=7, dimensions=4)  # the server's own count

    asyncio.run(send_embedding(Counting(), prompt, record, 0))
    assert record.ok and record.embedding and record.error is None
    assert record.chunk_tokens == [0] and record.output_tokens == 0
    assert record.prompt_tokens == 7
    assert record.ttft_ns is None and record.tpot_ns is None and record.itl_ns() == []
    assert record.e2e_ns is not None and record.e2e_ns >= EMBED_MS * NS_PER_MS
    assert record.done_ns is not None and record.done_ns >= record.chunk_ns[0]
    # It survives a results file.
    again = RequestRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and again.ttft_ns is None


def test_an_answer_without_a_vector_and_a_failure_are_errors() -> None:
    class Empty(FakeEmbedder):
        async def embed(self, prompt: Prompt) -> Embedded:
            return Embedded(input_tokens=3, dimensions=0)

    prompt = Prompt("alpha", (1, 2), 2, 1)
    empty = RequestRecord(index=0, prompt_tokens=2)
    asyncio.run(send_embedding(Empty(), prompt, empty, 0))
    assert not empty.ok and empty.error_kind == "empty"
    failed = RequestRecord(index=0, prompt_tokens=2)
    asyncio.run(send_embedding(FakeEmbedder(fail_every=1), prompt, failed, 0))
    assert not failed.ok and failed.error_kind == "http_500" and failed.chunk_ns == []


# -- a run and its summary ---------------------------------------------------------------


def test_a_run_measures_the_engines_latency_and_leaves_token_metrics_none() -> None:
    wl = Workload(embeddings=True, input_tokens=40, requests=12, warmup=1, concurrency=3)
    engine = FakeEmbedder(per_token_ms=0.25)
    records = run(engine, wl)
    assert engine.calls == 13
    s = summarize(records)
    expected = EMBED_MS + 0.25 * 40  # 30 ms a request
    assert s["requests"] == 12 and s["errors"] == 0
    assert expected <= s["e2e_p50_ms"] < expected + 15
    assert expected <= s["e2e_max_ms"] < expected + 40
    for key in ("ttft_p50_ms", "ttft_max_ms", "tpot_p50_ms", "itl_p50_ms", "itl_mean_ms",
                "output_tps", "energy_j_per_token"):
        assert s[key] is None, key
    assert s["output_tokens"] == 0 and s["input_tokens"] == 12 * 40
    # 3 at a time, ~30 ms each: ~100 requests/s, 40 tokens each.
    assert 50 < s["rps"] <= 3 / (expected / 1e3) * 1.05
    assert s["input_tps"] == pytest.approx(s["rps"] * 40)
    assert is_embeddings(s)


def test_errors_are_counted_and_a_threshold_on_e2e_judges_the_run() -> None:
    wl = Workload(embeddings=True, input_tokens=8, requests=8, warmup=0)
    s = summarize(run(FakeEmbedder(fail_every=4), wl))
    assert s["requests"] == 8 and s["errors"] == 2
    passed = evaluate({"e2e_p95_ms": 1000, "min_rps": 1}, s)
    failed = evaluate({"e2e_p95_ms": 1, "ttft_p95_ms": 1000}, s)
    assert all(c.passed for c in passed)
    by_name = {c.name: c for c in failed}
    assert not by_name["e2e_p95_ms"].passed and by_name["e2e_p95_ms"].measured is not None
    # A TTFT threshold on an embeddings run measures nothing: it fails, "not measured".
    assert not by_name["ttft_p95_ms"].passed and by_name["ttft_p95_ms"].measured is None


def test_an_engine_without_embeddings_is_one_line() -> None:
    wl = Workload(embeddings=True, input_tokens=8, requests=2)
    with pytest.raises(EngineError) as info:
        run(FakeEmbedder(embeddings=False), wl)
    assert str(info.value) == ("Workload(embeddings=True): the 'fake' engine does not serve "
                               "embeddings")


def test_a_slo_on_e2e_gives_goodput() -> None:
    wl = Workload(embeddings=True, input_tokens=8, requests=6, warmup=0,
                  slo={"e2e_ms": EMBED_MS + 200})
    s = summarize(run(FakeEmbedder(), wl), slo=wl.slo)
    assert s["goodput"] == 1.0
    assert summarize(run(FakeEmbedder(), wl), slo={"e2e_ms": 1})["goodput"] == 0.0


# -- the OpenAI-compatible answer --------------------------------------------------------


def test_the_request_body_and_a_good_answer() -> None:
    prompt = Prompt("alpha bravo", (1, 2, 3), 3, 16)
    assert request_body("m", prompt, {"dimensions": 8}) == {
        "model": "m", "input": "alpha bravo", "dimensions": 8}
    raw = json.dumps({"data": [{"embedding": [0.1, -0.2, 3]}],
                      "usage": {"prompt_tokens": 5}}).encode()
    got = parse_answer(raw, prompt, done_ns=9, sent_ns=4)
    assert got == Embedded(input_tokens=5, dimensions=3, done_ns=9, sent_ns=4)
    # No usage: the prompt's own count.
    assert parse_answer(b'{"data": [{"embedding": [1.0]}]}', prompt).input_tokens == 3


@pytest.mark.parametrize(("raw", "words"), [
    (b"not json", "not JSON"),
    (b'{"object": "list"}', 'no "data" list'),
    (b'{"data": []}', 'no "data" list'),
    (b'{"data": [{"embedding": []}]}', "not a non-empty list of finite numbers"),
    (b'{"data": [{"embedding": [1, NaN]}]}', "not a non-empty list of finite numbers"),
    (b'{"data": [{"embedding": [true]}]}', "not a non-empty list of finite numbers"),
])
def test_a_bad_answer_is_a_malformed_request_error(raw: bytes, words: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_answer(raw, Prompt("a", None, 1, 1))
    assert info.value.kind == "malformed" and words in str(info.value)


# -- reports and gate --------------------------------------------------------------------


def test_the_tables_add_the_embedding_columns_only_for_an_embeddings_run() -> None:
    generation = {"ttft_p50_ms": 5.0, "e2e_p50_ms": 50.0}
    embedding = {"ttft_p50_ms": None, "e2e_p50_ms": 30.0}
    assert not is_embeddings(generation) and is_embeddings(embedding)
    assert not is_embeddings({"ttft_p50_ms": None, "e2e_p50_ms": None})  # nothing measured
    assert with_optional(MARKDOWN_METRICS, [generation]) == MARKDOWN_METRICS
    keys = [k for k, _ in with_optional(MARKDOWN_METRICS, [generation, embedding])]
    assert keys[-4:] == ["e2e_p50_ms", "e2e_p95_ms", "input_tps", "rps"]
    table = [k for k, _ in with_optional(TABLE_METRICS, [embedding])]
    assert table.count("e2e_p50_ms") == 1 and table.count("rps") == 1
    assert table[-2:] == ["e2e_p95_ms", "input_tps"]


def test_the_gate_gates_e2e_and_input_throughput_of_embeddings_runs() -> None:
    runs = [{"ttft_p50_ms": None, "e2e_p50_ms": 30.0}] * 2
    plain = Thresholds.of({})
    gated, watched = embeddings_gated(plain, *gated_metrics(plain), runs)
    assert gated == list(EMBEDDING_GATED) == ["e2e_p50_ms", "input_tps"]
    assert "e2e_p50_ms" not in watched and "e2e_p95_ms" in watched
    # A generation run, or a marker that names its gate, keeps what it had.
    mixed = [*runs, {"ttft_p50_ms": 5.0, "e2e_p50_ms": 50.0}]
    assert embeddings_gated(plain, *gated_metrics(plain), mixed)[0] == gated_metrics(plain)[0]
    named = Thresholds.of({"gate": ["rps"]})
    assert embeddings_gated(named, *gated_metrics(named), runs)[0] == ["rps"]
    # A per-metric tolerance adds its metric, as for generations.
    tol = Thresholds.of({"max_regression_pct": {"e2e_p95_ms": 10}})
    assert embeddings_gated(tol, *gated_metrics(tol), runs)[0] == [
        "e2e_p50_ms", "input_tps", "e2e_p95_ms"]


def test_only_a_request_latency_slo_judges_embeddings() -> None:
    from pytest_llmperf.run.embeddings import slo_problem

    assert slo_problem({"e2e_ms": 100}) is None
    assert slo_problem({"e2e_p95_ms": 100, "e2e_ms": 50}) is None
    assert slo_problem(None) == (
        "an embeddings workload has no TTFT or TPOT, which the default SLO bounds: give "
        "slo={'e2e_ms': ...} or E2E percentiles such as e2e_p95_ms")
    assert "(tpot_ms, ttft_p95_ms)" in (slo_problem({"ttft_p95_ms": 1, "tpot_ms": 2}) or "")


def test_interleaved_ab_of_two_embedding_engines() -> None:
    from pytest_llmperf.run.loadgen import run_interleaved_load

    wl = Workload(embeddings=True, input_tokens=10, requests=4, warmup=1)
    a, b = FakeEmbedder(), FakeEmbedder(per_token_ms=2.0)  # B: 20 ms more per request
    prompts = build_prompts(a.tokenizer, wl)
    ra, rb = asyncio.run(run_interleaved_load((a, b), (prompts, prompts), wl))
    assert a.calls == b.calls == 5
    sa, sb = summarize(ra.records), summarize(rb.records)
    assert sa["errors"] == sb["errors"] == 0
    assert sb["e2e_p50_ms"] - sa["e2e_p50_ms"] == pytest.approx(20, abs=8)
    assert sa["ttft_p50_ms"] is None and sb["output_tps"] is None
    with pytest.raises(EngineError, match="does not serve embeddings"):
        asyncio.run(run_interleaved_load((a, FakeEmbedder(embeddings=False)),
                                         (prompts, prompts), wl))


def test_a_lagging_client_is_warned_against_the_request_latency() -> None:
    from pytest_llmperf.run.bench import client_warnings
    from pytest_llmperf.run.metrics import RunResult

    result = RunResult(summary={"ttft_p50_ms": None, "e2e_p50_ms": 20.0}, samples=[],
                       client={"loop_lag_p99_ms": 30.0})
    assert client_warnings(result) == [
        "the load generator fell behind: event-loop lag / send delay p99 30.0 ms against an "
        "E2E p50 of 20.0 ms; latencies include client overhead"]


def test_vllm_serves_embeddings_only_with_its_pooling_runner() -> None:
    """The capability read from the engine's model config (no vLLM needed to check it)."""
    from types import SimpleNamespace

    from pytest_llmperf.engines.vllm import VLLMEngine
    from pytest_llmperf.run.embeddings import embeddings_problem

    engine = VLLMEngine.__new__(VLLMEngine)
    engine.model = "/models/tiny-llama"
    engine._engine = SimpleNamespace(model_config=SimpleNamespace(runner_type="generate"))
    assert not engine.has_embeddings
    assert embeddings_problem(engine) == (
        "the vLLM engine runs tiny-llama with the generate runner; embeddings need vLLM's "
        "pooling runner: --llmperf-engine-arg runner=pooling")
    engine._engine = SimpleNamespace(model_config=SimpleNamespace(runner_type="pooling"))
    assert engine.has_embeddings and embeddings_problem(engine) is None
    del engine._engine  # as after close(): nothing to ask
    assert not engine.has_embeddings
