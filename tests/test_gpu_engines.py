"""The GPU engines (vLLM, TensorRT-LLM) and GPU memory sampling on a machine without them:
clear errors and skips naming what is missing, and nothing reported that was not measured."""

from __future__ import annotations

import asyncio
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.engines import EngineError, create_engine
from pytest_llmperf.engines.gpu_common import BackgroundLoop, require_cuda
from pytest_llmperf.run.gpu import GPUSampler
from pytest_llmperf.settings import Settings


def _installed(name: str) -> bool:
    from pytest_llmperf.installed import installed

    return installed(name)  # a folder named vllm on sys.path is not vLLM


@pytest.mark.parametrize(("engine", "module", "message"), [
    ("vllm", "vllm", r"vLLM is not installed .*pip install 'pytest-llmperf\[vllm\]'"),
    ("trtllm", "tensorrt_llm",
     r"TensorRT-LLM is not installed .*pip install 'pytest-llmperf\[trtllm\]'"),
])
def test_missing_engine_package_is_named(engine: str, module: str, message: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as on a machine without it
    with pytest.raises(EngineError, match=message):
        create_engine(Settings(engine=engine, model="Qwen/Qwen2.5-0.5B-Instruct"))


def test_missing_torch_or_gpu_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(EngineError, match="torch is not installed"):
        require_cuda("vllm")
    no_gpu = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", no_gpu)
    with pytest.raises(EngineError, match=r"needs an NVIDIA GPU, and none is visible"):
        require_cuda("trtllm")


def _stub_vllm(monkeypatch: pytest.MonkeyPatch, platform: Any) -> None:
    """A vllm package whose platform is ``platform`` (as vLLM's CPU build or a GPU build
    reports it), found by find_spec as an installed one is."""
    import importlib.util

    real = importlib.util.find_spec
    installed = types.SimpleNamespace(origin="/site-packages/vllm/__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: installed if name == "vllm" else real(name, *a))
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = platform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)


def test_vllm_on_a_cpu_is_a_device_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmperf.engines.gpu_common import missing_for, vllm_device

    no_gpu = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", no_gpu)  # CUDA is not asked for
    _stub_vllm(monkeypatch, types.SimpleNamespace(device_type="cpu",
                                                  is_unspecified=lambda: False))
    assert vllm_device() == "cpu"
    assert missing_for("vllm") is None
    assert missing_for("trtllm") is not None  # TensorRT-LLM keeps its CUDA requirement
    gpu = types.SimpleNamespace(device_type="cuda", is_unspecified=lambda: False,
                                get_device_name=lambda i=0: "NVIDIA H200")
    _stub_vllm(monkeypatch, gpu)
    assert vllm_device() == "NVIDIA H200"
    _stub_vllm(monkeypatch, types.SimpleNamespace(device_type="", is_unspecified=lambda: True))
    assert "vLLM found no platform" in (missing_for("vllm") or "")


def test_a_broken_vllm_install_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmperf.engines.gpu_common import missing_for

    _stub_vllm(monkeypatch, None)
    monkeypatch.setitem(sys.modules, "vllm.platforms", None)  # import fails
    assert (missing_for("vllm") or "").startswith("vllm is installed but does not import")


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


def test_gpu_sampler_without_nvml_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with GPUSampler(interval_s=0.01) as gpu:
        pass
    assert not gpu.available and gpu.peak_mem_mb is None and gpu.mean_util_pct is None
    assert "nvidia-ml-py is not installed" in gpu.reason


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


class _StubNVML:
    """The few NVML calls the sampler makes, to check its arithmetic (not a GPU result)."""

    def __init__(self, used: list[list[int]]) -> None:
        self.used = used  # per device, successive readings
        self.calls = [0] * len(used)
        self.shut = False

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.used)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return f"stub{h}".encode()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        k = min(self.calls[h], len(self.used[h]) - 1)
        self.calls[h] += 1
        return types.SimpleNamespace(used=self.used[h][k])

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return types.SimpleNamespace(gpu=50.0)


def test_gpu_sampler_sums_visible_devices_and_keeps_the_peak(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mib = 1024 * 1024
    stub = _StubNVML([[999 * mib] * 3, [100 * mib, 300 * mib, 200 * mib],
                      [10 * mib, 10 * mib, 10 * mib]])
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    gpu = GPUSampler(interval_s=3600)
    gpu._init()
    for _ in range(3):
        gpu.sample()
    assert gpu.devices == ["stub1", "stub2"]
    assert gpu.peak_mem_mb == 310.0  # device 0 is not visible; the peak, not the last
    assert gpu.mean_util_pct == 50.0


def test_background_loop_serves_several_event_loops() -> None:
    """The GPU engines' own loop outlives each benchmark's asyncio.run."""
    bg = BackgroundLoop("test-loop")
    owner: list[Any] = []

    async def work(x: int) -> int:
        owner.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return x * 2

    async def client(x: int) -> int:
        return await bg.run(work(x))

    try:
        assert asyncio.run(client(2)) == 4
        assert asyncio.run(client(5)) == 10
        assert owner[0] is owner[1] is bg.loop
    finally:
        bg.close()
    assert bg.loop.is_closed()


@pytest.mark.parametrize(("engine", "module"), [("vllm", "vllm"), ("trtllm", "tensorrt_llm")])
def test_example_suites_skip_reason(engine: str, module: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmperf.engines.gpu_common import missing_for

    if _installed(module):
        pytest.skip(f"{module} is installed here")
    reason = missing_for(engine)
    assert reason is not None
    assert reason.startswith(f"{module} is not installed: pip install 'pytest-llmperf[{engine}]'")


def test_example_gpu_suites_skip_in_a_session() -> None:
    import subprocess

    if _installed("vllm") and _installed("tensorrt_llm"):
        pytest.skip("both GPU engines are installed here")
    root = Path(__file__).parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--llmperf", "-q", "-rs", "-p", "no:cacheprovider",
         "example_suites/vllm", "example_suites/trtllm"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 skipped" in proc.stdout
    assert "is not installed: pip install 'pytest-llmperf[" in proc.stdout


def test_stream_deltas_counts_each_steps_new_tokens_as_one_chunk() -> None:
    """Oracle: a stream shaped like vLLM's DELTA / TensorRT-LLM's *_diff step outputs."""
    import asyncio
    from types import SimpleNamespace

    from pytest_llmperf.engines.gpu_common import stream_deltas

    steps = [([11], "Hel", False), ([], "", False), ([12, 13, 14], "lo w", False),
             ([15], "orld", True), ([99], "never read", False)]

    async def outputs():  # type: ignore[no-untyped-def]
        for ids, text, finished in steps:
            yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text)],
                                  finished=finished)

    chunks: list[tuple[int, int]] = []
    gen = asyncio.run(stream_deltas(outputs(), lambda t, k: chunks.append((t, k)),
                                    "token_ids", "text"))
    assert [k for _, k in chunks] == [1, 3, 1]  # the empty step is not a token
    assert [t for t, _ in chunks] == sorted(t for t, _ in chunks)
    assert gen.output_tokens == 5 and gen.source == "engine"
    assert gen.text == "Hello world"


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
