"""The GPU engines (vLLM, TensorRT-LLM) and GPU memory sampling on a machine without them:
clear errors and skips naming what is missing, and nothing reported that was not measured.

Split by tier from tests/test_gpu_engines.py: these are its unit tests; the others are in
tests/sessions/test_gpu_engines_session.py.
"""

from __future__ import annotations

import asyncio
import sys
import types
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


def test_gpu_sampler_without_nvml_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with GPUSampler(interval_s=0.01) as gpu:
        pass
    assert not gpu.available and gpu.peak_mem_mb is None and gpu.mean_util_pct is None
    assert "nvidia-ml-py is not installed" in gpu.reason


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
