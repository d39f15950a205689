"""Outputs in the same test (issue 25, item 4) on a real vLLM (the CPU build, the tiny model):
the in-process engine fingerprints the token ids of each step, and two greedy runs of the same
workload, one request at a time, give the same answers."""

from __future__ import annotations

from pytest_llmperf.engines.vllm import VLLMEngine
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.verdict.outputs import compare


def test_greedy_answers_are_fingerprinted_by_token_ids(vllm_engine: VLLMEngine) -> None:
    wl = Workload(input_tokens=16, output_tokens=10, requests=3, warmup=0, seed=3)
    runs = [run_benchmark(vllm_engine, wl).to_dict() for _ in range(2)]
    samples = runs[0]["samples"]
    assert {s["output_basis"] for s in samples} == {"tokens"}
    assert [s["output_units"] for s in samples] == [10] * 3
    found = compare([runs[0]], [runs[1]])
    print(f"\nvLLM CPU, concurrency 1: {found.describe()}")
    assert (found.compared, found.changed) == (3, 0)
