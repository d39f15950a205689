"""The GPU engines (vLLM, TensorRT-LLM) and GPU memory sampling on a machine without them:
clear errors and skips naming what is missing, and nothing reported that was not measured.

Split by tier from tests/test_gpu_engines.py: these are its sessions tests; the others are in
tests/unit/engines/test_gpu_engines.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from pytest_llmperf.run.gpu import GPUSampler


def _installed(name: str) -> bool:
    from pytest_llmperf.installed import installed

    return installed(name)  # a folder named vllm on sys.path is not vLLM


def test_engine_choice_in_a_session_fails_in_one_line(llmperf_pytester: pytest.Pytester
                                                      ) -> None:
    if _installed("vllm"):
        pytest.skip("vLLM is installed here")
    llmperf_pytester.makepyfile(test_v="""
        from pytest_llmperf import llmperf, Workload

        @llmperf(min_tps=1)
        def test_v(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(requests=1))
    """)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-engine=vllm",
                                        "--llmperf-model=Qwen/Qwen2.5-0.5B-Instruct")
    assert result.parseoutcomes() == {"errors": 1}
    result.stdout.fnmatch_lines(["*llmperf: vLLM is not installed*pytest-llmperf?vllm?*"])
    assert "Traceback" not in result.stdout.str() and "vllm.py" not in result.stdout.str()


def test_engine_names_are_accepted_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llmperf-engine=trtllm", "--collect-only")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = pytester.runpytest("--llmperf-engine=sglang")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_cpu_run_has_no_gpu_memory(tiny_model: Path) -> None:
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.run.bench import run_benchmark
    from pytest_llmperf.run.workload import Workload

    engine = LlamaCppEngine(LlamaCppSettings(str(tiny_model), n_threads=1, n_ctx=256))
    try:
        result = run_benchmark(engine, Workload(input_tokens=8, output_tokens=2, requests=1,
                                                warmup=0))
    finally:
        engine.close()
    with GPUSampler() as probe:
        if probe.available:  # pragma: no cover - a GPU machine
            pytest.skip("an NVIDIA GPU is visible here")
    assert "gpu_mem_mb" in result.summary and result.summary["gpu_mem_mb"] is None


def test_example_gpu_suites_skip_in_a_session() -> None:
    import subprocess

    if _installed("vllm") and _installed("tensorrt_llm"):
        pytest.skip("both GPU engines are installed here")
    root = ROOT
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--llmperf", "-q", "-rs", "-p", "no:cacheprovider",
         "example_suites/vllm", "example_suites/trtllm"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 skipped" in proc.stdout
    assert "is not installed: pip install 'pytest-llmperf[" in proc.stdout


def test_memory_counts_a_named_process_with_its_descendants() -> None:
    """A server's workers count with it; this process's other children (another engine's
    server) do not count with it."""
    import os
    import subprocess

    from pytest_llmperf.run.memory import PeakRSS, process_tree

    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
         "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree([parent.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(process_tree([parent.pid])) == 2  # the process and its child
        assert process_tree([os.getpid()]) == [os.getpid()]
        with PeakRSS([parent.pid], interval_s=0.01) as tree, \
                PeakRSS([os.getpid()], interval_s=0.01) as me:
            time.sleep(0.05)
        assert tree.peak > 0 and len(tree.tree) == 2 and me.tree == [os.getpid()]
    finally:
        for pid in process_tree([parent.pid])[1:]:
            os.kill(pid, 9)
        parent.kill()
        parent.wait()
