"""GPU memory and utilization, sampled with NVML (``nvidia-ml-py``, the ``gpu`` extra) in a
background thread while a run is measured. No NVML library, no driver or no GPU: the sampler
records nothing and the summary simply has no ``gpu_mem_mb``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from .periodic import Periodic


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


class GPUSampler:
    """``with GPUSampler() as g: ...``; then ``g.peak_mem_mb`` (None without a GPU),
    ``g.mean_util_pct``, ``g.devices``. Memory is device memory in use (all processes),
    summed over the visible GPUs, as ``nvidia-smi`` shows it."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.available = False
        self.reason = ""
        self.devices: list[str] = []
        self.peak_bytes = 0
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

    def sample(self) -> None:
        if not self.available:
            return
        used, utils = 0, []
        for h in self._handles:
            try:
                used += int(self._nvml.nvmlDeviceGetMemoryInfo(h).used)
                utils.append(float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu))
            except Exception:
                continue
        self.peak_bytes = max(self.peak_bytes, used)
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
    def peak_mem_mb(self) -> float | None:
        return self.peak_bytes / (1024 * 1024) if self.available else None

    @property
    def mean_util_pct(self) -> float | None:
        return sum(self._util) / len(self._util) if self._util else None
