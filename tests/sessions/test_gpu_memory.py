"""``gpu_mem_mb`` is the engine's own GPU memory: NVML's per-process figures for the engine's
process tree, with the device's figure (and the reason) where NVML cannot attribute memory to
processes (MIG, containers).

There is no GPU here: NVML's functions are replaced on the real ``pynvml`` module
(nvidia-ml-py) by ones returning what the real ones return (its own structures, built by its
own converter), and the process tree is real (a child process of this one). A run on a GPU:
``python benchmarks/gpu_memory_check.py``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_llmperf.run.gpu import GPUSampler, per_process_bytes, process_tree

pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py (the 'gpu' extra) is not installed")

MIB = 1024 * 1024
NO_SUCH_PID = 2**22 + 12345  # above Linux's largest pid_max: no process has it here


def proc(pid: int, used: int | None) -> Any:
    """One entry as nvmlDeviceGetComputeRunningProcesses returns it (None: NVML's
    'not available', which the real function turns into None)."""
    raw = pynvml.c_nvmlProcessInfo_t(pid=pid, usedGpuMemory=0 if used is None else used,
                                     gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
    obj = pynvml.nvmlStructToFriendlyObject(raw)
    if used is None:
        obj.usedGpuMemory = None
    return obj


@pytest.fixture
def child() -> Iterator[int]:
    """A real child process of this one (as vLLM's EngineCore is of the test process)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def fake_device(monkeypatch: pytest.MonkeyPatch, used: int, processes: Any) -> None:
    """One visible GPU with ``used`` bytes in use and ``processes`` (a list, or an exception
    to raise) as its compute processes."""
    def running(handle: Any) -> Any:
        if isinstance(processes, Exception):
            raise processes
        return processes

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 1)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: f"handle{i}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "NVIDIA H200")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo",
                        lambda h: pynvml.c_nvmlMemory_t(total=141 * 1024 * MIB,
                                                        free=141 * 1024 * MIB - used,
                                                        used=used))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates",
                        lambda h: pynvml.c_nvmlUtilization_t(gpu=40, memory=10))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetComputeRunningProcesses", running)


def sampled(pids: list[int] | None = None) -> GPUSampler:
    with GPUSampler(pids, interval_s=3600) as gpu:
        pass
    return gpu


def test_the_process_tree_includes_children(child: int) -> None:
    import os

    assert process_tree([os.getpid()]) >= {os.getpid(), child}
    assert process_tree([NO_SUCH_PID]) == {NO_SUCH_PID}


def test_memory_is_the_engine_process_trees_own(monkeypatch: pytest.MonkeyPatch,
                                                 child: int) -> None:
    # Our child holds 500 MiB; another local process (pid 1) holds 9 GiB of the 12 in use.
    fake_device(monkeypatch, 12 * 1024 * MIB, [proc(child, 500 * MIB), proc(1, 9 * 1024 * MIB)])
    gpu = sampled()  # default: this process and its descendants
    assert gpu.scope == "process" and gpu.scope_reason == ""
    assert gpu.peak_mem_mb == 500.0
    assert gpu.peak_device_mem_mb == 12 * 1024.0
    assert gpu.mean_util_pct == 40.0
    assert gpu.summary() == {"gpu_mem_scope": "process", "gpu_device_mem_mb": 12288.0,
                             "gpu_mem_scope_reason": None}
    assert gpu.warning() is None
    # The engine's pids given explicitly: their trees, whatever this process is.
    assert sampled([child]).peak_mem_mb == 500.0
    assert sampled([1]).peak_mem_mb == 9 * 1024.0 + 500.0  # pid 1's tree holds every process


def test_an_engine_without_gpu_memory_reports_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_device(monkeypatch, 3 * 1024 * MIB, [proc(1, 3 * 1024 * MIB)])
    gpu = sampled()
    assert gpu.scope == "process" and gpu.peak_mem_mb == 0.0


@pytest.mark.parametrize(("processes", "reason"), [
    (lambda child: [proc(child, None)], "no per-process memory on this device (MIG"),
    (lambda child: [proc(NO_SUCH_PID, 4 * 1024 * MIB)], "a container's PID namespace"),
    (lambda child: [], "listed no process on the GPU while its memory was in use"),
    (lambda child: pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED),
     "NVML cannot list the GPU's processes here (Not Supported)"),
], ids=["mig", "container", "no-processes", "not-supported"])
def test_falls_back_to_the_device_and_says_why(monkeypatch: pytest.MonkeyPatch, child: int,
                                               processes: Any, reason: str) -> None:
    fake_device(monkeypatch, 5 * 1024 * MIB, processes(child))
    gpu = sampled()
    assert gpu.scope == "device" and reason in gpu.scope_reason
    assert gpu.peak_mem_mb == gpu.peak_device_mem_mb == 5 * 1024.0
    assert gpu.summary()["gpu_mem_scope"] == "device"
    warning = gpu.warning()
    assert warning is not None
    assert warning.startswith("gpu_mem_mb is the GPU's memory in use by every process")
    assert reason in warning


def test_per_process_bytes_of_the_tree_only() -> None:
    listed = [proc(10, 100), proc(11, 200), proc(12, 400)]
    assert per_process_bytes(listed, {10, 12}, lambda pid: True) == (500, "")
    used, why = per_process_bytes(listed, {99}, lambda pid: pid != 11)
    assert used is None and "PID namespace" in why


def test_no_gpu_no_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    gpu = sampled()
    assert not gpu.available and gpu.scope is None and gpu.peak_mem_mb is None
    assert gpu.summary() == {} and gpu.warning() is None
    assert gpu.reason.startswith("NVML unavailable")
