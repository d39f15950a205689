"""Per-request parameters and model mixes on a real vLLM (the CPU build, the tiny random
model; issue 24, item 5):

- structured outputs in-process: requests with a JSON schema (``response_format``, vLLM's
  ``structured_outputs``) run, and every answer parses as JSON matching the schema, which
  the random model does not write without the grammar;
- the same adapter in-process (engine argument ``lora_modules``), a mix measured per model;
- a LoRA adapter made here (``testing.tiny_lora``, PEFT's layout without peft) served by
  ``vllm serve --enable-lora --lora-modules`` (one server for the module, started by the
  plugin from ``--llmperf-server vllm``), a mix of the adapter and the base model measured
  per model, with the adapter's answers different from the base's.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vllm_sessions import ENGINE_ARGS, run_session

from pytest_llmperf.engines.base import GenerationParams, Prompt, UnsupportedError
from pytest_llmperf.engines.vllm import VLLMEngine
from pytest_llmperf.run.bench import _run_coroutine, run_benchmark
from pytest_llmperf.run.workload import Workload

SCHEMA = {"type": "object",
          "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green"]}},
          "required": ["ok", "color"], "additionalProperties": False}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}


def matches(text: str) -> bool:
    data = json.loads(text)
    return (set(data) == {"ok", "color"} and isinstance(data["ok"], bool)
            and data["color"] in ("red", "green"))


def answer(engine: VLLMEngine, text: str, **params: Any) -> str:
    gen = _run_coroutine(engine.generate(
        Prompt(text, None, 0, 96), GenerationParams(max_tokens=96, ignore_eos=False,
                                                    params=params), lambda t, n: None))
    return gen.text


# A random model under a JSON grammar writes whitespace until max_tokens (vLLM allows any by
# default; seen here: "{" and 95 tabs). This vLLM takes disable_any_whitespace from the
# engine's structured_outputs_config only (a request's own is not read by its backends), so
# this module loads one in-process engine of its own: with it, and with a LoRA adapter.


@pytest.fixture(scope="module")
def structured_engine(tiny_hf_model: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMEngine]:
    from vllm.config import StructuredOutputsConfig

    from pytest_llmperf.testing.tiny_lora import make_tiny_lora

    adapter = make_tiny_lora(tiny_hf_model, tmp_path_factory.mktemp("lora") / "adapter-a")
    engine = VLLMEngine(str(tiny_hf_model), engine_args={
        **ENGINE_ARGS,
        "structured_outputs_config": StructuredOutputsConfig(backend="xgrammar",
                                                             disable_any_whitespace=True),
        "lora_modules": f"adapter-a={adapter}", "max_lora_rank": 8})
    try:
        yield engine
    finally:
        engine.close()


def test_structured_outputs_parse_and_match_the_schema(structured_engine: VLLMEngine) -> None:
    engine = structured_engine
    prompts = ("hello world", "the cat sat on the mat", "one two three four")
    for params in ({"response_format": RESPONSE_FORMAT},
                   {"structured_outputs": {"json": SCHEMA}}, {"guided_json": SCHEMA}):
        for text in prompts:
            out = answer(engine, text, **params)
            assert matches(out), (params, out)
    # Any JSON object: its strings are free, so only the opening is certain within 96 tokens.
    assert answer(engine, "hello", response_format={"type": "json_object"}).startswith("{")
    free = [answer(engine, text) for text in prompts]  # no grammar: no JSON
    assert not any(t.lstrip().startswith("{") for t in free), free
    result = run_benchmark(engine, Workload(
        input_tokens=16, output_tokens=96, requests=6, warmup=0, concurrency=3,
        ignore_eos=False, params={"response_format": RESPONSE_FORMAT, "top_p": 0.9}))
    assert result.summary["errors"] == 0
    counts = [r.output_tokens for r in result.samples]
    assert all(c is not None and 5 <= c < 96 for c in counts), counts  # ended by the schema
    print(f"vLLM structured outputs: 6 requests, output tokens {counts}, TTFT p50 "
          f"{result.summary['ttft_p50_ms']:.1f} ms")


def test_an_in_process_lora_mix_is_measured_per_adapter(structured_engine: VLLMEngine
                                                         ) -> None:
    engine = structured_engine
    base = engine.model
    result = run_benchmark(engine, Workload(
        input_tokens=16, output_tokens=8, requests=8, warmup=0, concurrency=2,
        models={"adapter-a": 1, base: 1}))
    assert result.summary["errors"] == 0
    by = result.by_model
    assert (by["adapter-a"]["requests"], by[base]["requests"]) == (4, 4)
    assert by["adapter-a"]["output_tokens"] == by[base]["output_tokens"] == 32
    texts = {m: _run_coroutine(engine.generate(
        Prompt("hello world", None, 0, 12), GenerationParams(max_tokens=12, model=m),
        lambda t, n: None)).text for m in ("adapter-a", base)}
    assert texts["adapter-a"] != texts[base]  # the adapter is applied
    assert engine.info()["settings"]["lora_modules"]["adapter-a"].endswith("adapter-a")
    with pytest.raises(UnsupportedError, match="'adapter-b'"):
        run_benchmark(engine, Workload(input_tokens=8, output_tokens=2, requests=2,
                                       models={"adapter-b": 1, base: 1}))
    print(f"vLLM in-process LoRA mix: adapter-a TTFT p50 {by['adapter-a']['ttft_p50_ms']:.1f}"
          f" ms, base {by[base]['ttft_p50_ms']:.1f} ms")


LORA_SUITE = '''
import json, os
from pathlib import Path
from pytest_llmperf import Workload, llmperf
from pytest_llmperf.engines.base import GenerationParams, Prompt, UnsupportedError


@llmperf(max_errors=0, per_model={"adapter-a": {"max_errors": 0}, "BASE": {"max_errors": 0}})
def test_lora_mix(llmperf_bench, llm_engine):
    base = llm_engine.model
    result = llmperf_bench(llm_engine, Workload(
        input_tokens=16, output_tokens=8, requests=12, warmup=2, concurrency=3,
        models={"adapter-a": 0.75, base: 0.25}))
    texts = {}
    for name in ("adapter-a", base):
        texts[name] = llm_engine_answer(llm_engine, name)
    Path(os.environ["SUITE_INFO"]).write_text(json.dumps({
        "base": base, "by_model": result.by_model, "texts": texts,
        "models": [r.model for r in result.samples if not r.warmup]}))


def llm_engine_answer(engine, model):
    import asyncio
    gen = asyncio.run(engine.generate(Prompt("hello world", None, 0, 12),
                                      GenerationParams(max_tokens=12, model=model),
                                      lambda t, n: None))
    return gen.text
'''


def test_a_lora_adapter_mix_is_measured_per_adapter(tmp_path: Path,
                                                    tiny_hf_model: Path) -> None:
    from pytest_llmperf.testing.tiny_lora import make_tiny_lora

    adapter = make_tiny_lora(tiny_hf_model, tmp_path / "adapter-a", rank=8)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nllmperf_model = {tiny_hf_model}\nllmperf_server_timeout = 400\n")
    # The base model's name is the path the server was given; the marker names it as BASE.
    (tmp_path / "test_lora.py").write_text(
        LORA_SUITE.replace('"BASE"', repr(str(tiny_hf_model))))
    info = tmp_path / "info.json"
    session = run_session(tmp_path, [
        "--llmperf", "-q", "--llmperf-server=vllm", "--llmperf-context-len=512",
        "--llmperf-engine-arg=enforce_eager=true", "--llmperf-engine-arg=enable_lora=true",
        f"--llmperf-engine-arg=lora_modules=adapter-a={adapter}",
        "--llmperf-engine-arg=max_lora_rank=8", "--llmperf-json=r.json"],
        env={"SUITE_INFO": str(info)}, timeout_s=600)
    assert session.returncode == 0, session.output[-6000:]
    data = json.loads(info.read_text())
    base = data["base"]
    assert Counter(data["models"]) == {"adapter-a": 9, base: 3}
    by = data["by_model"]
    assert by["adapter-a"]["requests"] == 9 and by[base]["requests"] == 3
    assert by["adapter-a"]["errors"] == 0 and by[base]["errors"] == 0
    assert by["adapter-a"]["output_tokens"] == 9 * 8 and by[base]["output_tokens"] == 3 * 8
    assert data["texts"]["adapter-a"] != data["texts"][base]  # the adapter is applied
    results = json.loads((tmp_path / "r.json").read_text())
    run = results["tests"][0]["runs"][0]
    assert run["by_model"] == by
    print(f"vLLM LoRA mix ({sys.platform}): adapter-a TTFT p50 "
          f"{by['adapter-a']['ttft_p50_ms']:.1f} ms, base {by[base]['ttft_p50_ms']:.1f} ms")
