"""Embeddings (issue 24, item 6) on vLLM's CPU build with a tiny pooling model made locally:
the tiny random-weight Llama (``testing.tiny_hf_model``) run by vLLM's pooling runner, which
converts it to an embedding model (``runner=pooling``), in-process (``AsyncLLM.encode``) and
served (``vllm serve --runner pooling``, ``/v1/embeddings``) in a whole pytest session.

One engine start each: the in-process engine is made once for the module; the served test
starts its server once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from vllm_sessions import run_session

from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload

if TYPE_CHECKING:
    from pytest_llmperf.engines.vllm import VLLMEngine

POOLING_ARGS = {"enforce_eager": True, "runner": "pooling"}


@pytest.fixture(scope="module")
def pooling_engine(tiny_hf_model: Path) -> Iterator[VLLMEngine]:
    from pytest_llmperf.engines.vllm import VLLMEngine

    engine = VLLMEngine(str(tiny_hf_model), max_model_len=512, engine_args=POOLING_ARGS)
    try:
        yield engine
    finally:
        engine.close()


def test_in_process_embeddings(pooling_engine: VLLMEngine) -> None:
    assert pooling_engine.has_embeddings and pooling_engine.embeddings_problem() is None
    for n in (16, 128):
        result = run_benchmark(pooling_engine, Workload(embeddings=True, input_tokens=n,
                                                        requests=8, concurrency=4))
        s = result.summary
        assert s["errors"] == 0 and s["requests"] == 8, result.samples
        assert [r.prompt_tokens for r in result.samples] == [n] * 9  # vLLM's own count
        assert all(r.embedding and r.chunk_tokens == [0] for r in result.samples)
        for key in ("ttft_p50_ms", "tpot_p50_ms", "itl_p50_ms", "output_tps"):
            assert s[key] is None, key
        assert s["e2e_p50_ms"] > 0 and s["rps"] > 0
        assert s["input_tps"] == pytest.approx(s["rps"] * n)
        print(f"\nvLLM CPU in-process, tiny Llama as a pooling model, {n}-token inputs at "
              f"concurrency 4: E2E p50 {s['e2e_p50_ms']:.1f} ms, {s['rps']:.1f} req/s, "
              f"{s['input_tps']:.0f} input tok/s")
    # The pooling engine does not generate: each generation request is a counted error.
    gen = run_benchmark(pooling_engine, Workload(input_tokens=16, output_tokens=4, requests=2))
    assert gen.summary["errors"] == 2
    assert "does not support generation" in (gen.samples[-1].error or "")


SUITE = '''
import json, os
from pathlib import Path
from pytest_llmperf import Workload, llmperf


@llmperf(e2e_p95_ms=60000, min_rps=0.1)
def test_embed(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(embeddings=True, input_tokens=32,
                                                concurrency=2, requests=6))
    assert result.errors == 0
    Path(os.environ["SUITE_INFO"]).write_text(json.dumps(
        {"engine": llm_engine.info(), "summary": result.summary}, default=str))


@llmperf(e2e_p50_ms=0.001)
def test_embed_too_strict(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(embeddings=True, input_tokens=32, requests=2))
'''


def test_served_embeddings_session(tmp_path: Path, tiny_hf_model: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\n"
        f"llmperf_model = {tiny_hf_model}\n"
        "llmperf_engine_arg = enforce_eager=true; runner=pooling\n"
        "llmperf_server_timeout = 500\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    info = tmp_path / "info.json"
    session = run_session(tmp_path, ["--llmperf", "-q", "--llmperf-server=vllm",
                                     "--llmperf-context-len=512", "--llmperf-markdown=r.md"],
                          env={"SUITE_INFO": str(info)}, timeout_s=580)
    assert "1 failed, 1 passed" in session.output, session.output[-6000:]
    assert "llmperf: e2e_p50_ms " in session.output
    data = json.loads(info.read_text())
    assert "--runner pooling" in data["engine"]["server"]["command"]
    s = data["summary"]
    assert s["ttft_p50_ms"] is None and s["output_tps"] is None and s["e2e_p50_ms"] > 0
    assert s["input_tokens"] == 6 * 32  # the server's usage.prompt_tokens
    assert "E2E p50 ms" in (tmp_path / "r.md").read_text()
    print(f"\nvLLM CPU served (/v1/embeddings), 32-token inputs at concurrency 2: E2E p50 "
          f"{s['e2e_p50_ms']:.1f} ms, {s['rps']:.1f} req/s")
