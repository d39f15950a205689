"""GPU memory and utilization, sampled with NVML (``nvidia-ml-py``, the ``gpu`` extra) in a
background thread while a run is measured. No NVML library, no driver or no GPU: the sampler
records nothing and the summary simply has no ``gpu_mem_mb``.

Memory is the engine's own: the GPU memory NVML attributes to the engine's processes
(``nvmlDeviceGetComputeRunningProcesses``) and every process they started (psutil), summed
over the visible GPUs, so another job on the same GPU does not count. Where NVML cannot say
which process holds what (MIG devices without the right privilege report no per-process
figure; inside a container NVML lists the processes with the host's pids), the sampler falls
back to the device's memory in use, as ``nvidia-smi`` shows it, and says so (``scope``,
``scope_reason``, ``warning()``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..periodic import Periodic

PROCESS, DEVICE = "process", "device"


def _visible_indices(count: int) -> list[int]:
    """Indices that CUDA_VISIBLE_DEVICES leaves visible (numeric lists only), else all."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None or not raw.strip():
        return list(range(count))
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part.isdigit():
            return list(range(count))  # UUIDs or MIG names: sample every device
        if int(part) < count:
            out.append(int(part))
    return out


def process_tree(pids: Iterable[int]) -> set[int]:
    """``pids`` and every live descendant of them (vLLM's EngineCore and workers, a server's
    children)."""
    import psutil

    tree = set()
    for pid in pids:
        tree.add(pid)
        try:
            tree.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return tree


def per_process_bytes(processes: Sequence[Any], tree: set[int],
                      pid_exists: Any = None) -> tuple[int | None, str]:
    """The memory NVML lists for the pids of ``tree`` (objects with ``pid`` and
    ``usedGpuMemory``, as ``nvmlDeviceGetComputeRunningProcesses`` returns them), or
    (None, why not) when the list cannot answer for our processes."""
    if pid_exists is None:
        import psutil

        pid_exists = psutil.pid_exists
    ours = [p for p in processes if int(p.pid) in tree]
    if any(p.usedGpuMemory is None for p in ours):
        return None, ("NVML reports no per-process memory on this device (MIG, or not "
                      "permitted)")
    if not ours and any(not pid_exists(int(p.pid)) for p in processes):
        return None, ("NVML lists the GPU's processes under pids this process cannot see "
                      "(a container's PID namespace)")
    return sum(int(p.usedGpuMemory) for p in ours), ""


class GPUSampler:
    """``with GPUSampler(pids) as g: ...``; then ``g.peak_mem_mb`` (None without a GPU),
    ``g.mean_util_pct``, ``g.devices``, ``g.scope``.

    ``pids``: the engine's processes (``Engine.memory_pids()``; default: this process); their
    descendants count too. ``peak_mem_mb`` is their peak GPU memory (``scope == "process"``),
    or the devices' peak memory in use when NVML cannot attribute memory to processes here
    (``scope == "device"``, ``scope_reason`` says why). ``peak_device_mem_mb`` is always the
    devices' figure."""

    def __init__(self, pids: Sequence[int] | None = None, interval_s: float = 0.1) -> None:
        self.pids = list(pids) if pids is not None else [os.getpid()]
        self.interval_s = interval_s
        self.available = False
        self.reason = ""
        self.devices: list[str] = []
        self.peak_device_bytes = 0
        self.peak_process_bytes = 0
        self._reason = ""  # why per-process figures cannot be had (sticky for the run)
        self._listed_any = False  # NVML listed at least one process on some device
        self._util: list[float] = []
        self._handles: list[Any] = []
        self._nvml: Any = None
        self._periodic = Periodic(self.sample, interval_s, "llmperf-gpu")

    def _init(self) -> None:
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install 'pytest-llmperf[gpu]')"
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                             for i in _visible_indices(count)]
            names = []
            for h in self._handles:
                name = pynvml.nvmlDeviceGetName(h)
                names.append(name.decode() if isinstance(name, bytes) else str(name))
            self.devices = names
        except Exception as exc:  # NVMLError: no driver, no device
            self.reason = f"NVML unavailable: {exc}"
            self._handles = []
            return
        self._nvml = pynvml
        self.available = bool(self._handles)
        if not self.available:
            self.reason = "no NVIDIA GPU visible"

    def _process_bytes(self, handle: Any, tree: set[int]) -> int | None:
        if self._reason:
            return None  # already fell back to the device figure for this run
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception as exc:  # NVMLError_NotSupported (MIG, vGPU), no permission
            self._reason = f"NVML cannot list the GPU's processes here ({exc})"
            return None
        self._listed_any = self._listed_any or bool(processes)
        used, why = per_process_bytes(processes, tree)
        if used is None:
            self._reason = why
        return used

    def sample(self) -> None:
        if not self.available:
            return
        tree = process_tree(self.pids)
        device, mine, utils = 0, 0, []
        for h in self._handles:
            try:
                device += int(self._nvml.nvmlDeviceGetMemoryInfo(h).used)
                utils.append(float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu))
            except Exception:
                continue
            mine += self._process_bytes(h, tree) or 0
        self.peak_device_bytes = max(self.peak_device_bytes, device)
        self.peak_process_bytes = max(self.peak_process_bytes, mine)
        if utils:
            self._util.append(sum(utils) / len(utils))

    def __enter__(self) -> GPUSampler:
        self._init()
        if self.available:
            self.sample()
            self._periodic.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._periodic.stop()
        self.sample()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    @property
    def scope_reason(self) -> str:
        """Why ``gpu_mem_mb`` is the device's figure ("" when it is the engine's own)."""
        if self._reason or not self.available:
            return self._reason
        if not self._listed_any and self.peak_device_bytes > 0:
            return ("NVML listed no process on the GPU while its memory was in use (a "
                    "container that cannot see the host's processes?)")
        return ""

    @property
    def scope(self) -> str | None:
        """"process" (the engine's own memory), "device" (the fallback) or None (no GPU)."""
        if not self.available:
            return None
        return DEVICE if self.scope_reason else PROCESS

    @property
    def peak_bytes(self) -> int:
        return self.peak_device_bytes if self.scope == DEVICE else self.peak_process_bytes

    @property
    def peak_mem_mb(self) -> float | None:
        return self.peak_bytes / (1024 * 1024) if self.available else None

    @property
    def peak_device_mem_mb(self) -> float | None:
        return self.peak_device_bytes / (1024 * 1024) if self.available else None

    @property
    def mean_util_pct(self) -> float | None:
        return sum(self._util) / len(self._util) if self._util else None

    def summary(self) -> dict[str, Any]:
        """For the run's client record (JSON): which memory ``gpu_mem_mb`` is."""
        if not self.available:
            return {}
        device = self.peak_device_mem_mb
        return {"gpu_mem_scope": self.scope,
                "gpu_device_mem_mb": None if device is None else round(device, 1),
                "gpu_mem_scope_reason": self.scope_reason or None}

    def warning(self) -> str | None:
        """One line when ``gpu_mem_mb`` is the device's figure instead of the engine's."""
        if self.scope != DEVICE:
            return None
        return (f"gpu_mem_mb is the GPU's memory in use by every process, not the engine's "
                f"own: {self.scope_reason}")
