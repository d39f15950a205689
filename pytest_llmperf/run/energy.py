"""Energy over a run's measured window, and what its tokens cost.

Two counters, read at the start and the end of the measured window (warm-up excluded):

- **NVIDIA GPUs**: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
  millijoules since the driver loaded; Volta and later) of every visible device
  (``CUDA_VISIBLE_DEVICES``), through ``nvidia-ml-py`` (the module ``pynvml``, the ``gpu``
  extra). A device whose counter is not supported makes the GPU figure absent, not partial.
- **CPUs**: RAPL's package counters (``/sys/class/powercap/intel-rapl:N/energy_uj``,
  microjoules, wrapping at ``max_energy_range_uj``). Only packages are read (their subzones,
  ``intel-rapl:N:M``, core and uncore, are inside them). Without root, in most containers and
  on other CPUs these files are unreadable: then the CPU figure is absent, never guessed.

``energy_j_per_token`` is the GPU energy of the window over its output tokens where a GPU was
measured (the engine runs there), else the CPU packages' energy (the embedded llama.cpp
engine runs on the CPU), else absent. Both raw figures are in the run's ``client`` record.
Either counter covers the whole device: every process on it counts, ours and others'.

``usd_per_mtok``: the machine's price per hour (``--llmperf-cost-per-hour``) over the output
tokens it made in an hour at the measured throughput, per million tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gpu import _visible_indices

POWERCAP = Path("/sys/class/powercap")


# --------------------------------------------------------------------------- arithmetic


def usd_per_mtok(cost_per_hour: float | None, output_tps: float | None) -> float | None:
    """USD per million output tokens at ``output_tps`` on a machine costing ``cost_per_hour``
    (None when either is unknown, or nothing was generated)."""
    if cost_per_hour is None or not output_tps or output_tps <= 0:
        return None
    return cost_per_hour / (output_tps * 3600.0) * 1e6


def j_per_token(joules: float | None, output_tokens: int | None) -> float | None:
    """Joules over output tokens (None when the energy is unknown or nothing was made)."""
    if joules is None or not output_tokens or output_tokens <= 0:
        return None
    return joules / output_tokens


# --------------------------------------------------------------------------- RAPL (CPU)


@dataclass
class RaplZone:
    """One RAPL package: its ``energy_uj`` file and the value at which the counter wraps."""

    name: str
    energy_file: Path
    max_range_uj: int

    def read_uj(self) -> int:
        return int(self.energy_file.read_text().strip())


def rapl_packages(root: Path = POWERCAP) -> tuple[list[RaplZone], str]:
    """The readable RAPL package zones under ``root`` (``intel-rapl:N``, not the subzones
    ``intel-rapl:N:M``) and, when there are none, why (no RAPL, or not permitted)."""
    try:
        entries = sorted(p for p in root.iterdir() if p.name.startswith("intel-rapl:"))
    except OSError:
        return [], f"no RAPL counters ({root} not present)"
    packages = [p for p in entries if p.name.count(":") == 1]
    if not packages:
        return [], f"no RAPL package counters under {root}"
    zones: list[RaplZone] = []
    for pkg in packages:
        try:
            name = (pkg / "name").read_text().strip()
            max_range = int((pkg / "max_energy_range_uj").read_text().strip())
            zone = RaplZone(name or pkg.name, pkg / "energy_uj", max_range)
            zone.read_uj()
        except PermissionError:
            return [], (f"RAPL counters are not readable ({pkg / 'energy_uj'}: permission "
                        "denied; readable by root only on most systems)")
        except (OSError, ValueError) as exc:
            return [], f"RAPL counter {pkg.name} unreadable ({exc})"
        zones.append(zone)
    return zones, ""


def rapl_delta_uj(start: int, end: int, max_range_uj: int) -> int:
    """Microjoules between two readings of a counter that wraps to 0 after ``max_range_uj``
    (one wrap at most between them)."""
    if end >= start:
        return end - start
    return max_range_uj - start + end


# --------------------------------------------------------------------------- NVML (GPU)


def nvml_handles() -> tuple[Any, list[Any], str]:
    """(pynvml, handles of the visible devices, why not) with NVML initialised; the caller
    shuts it down. No nvidia-ml-py, driver or GPU: (None, [], why)."""
    try:
        import pynvml
    except ImportError:
        return None, [], "nvidia-ml-py is not installed (pip install 'pytest-llmperf[gpu]')"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, [], f"NVML unavailable: {exc}"
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                   for i in _visible_indices(pynvml.nvmlDeviceGetCount())]
    except Exception as exc:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
        return None, [], f"NVML unavailable: {exc}"
    if not handles:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
        return None, [], "no NVIDIA GPU visible"
    return pynvml, handles, ""


def nvml_energy_mj(nvml: Any, handles: Sequence[Any]) -> list[int]:
    """Each device's total-energy counter in millijoules; raises when one is unsupported."""
    return [int(nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in handles]


# --------------------------------------------------------------------------- the meter


@dataclass
class EnergyMeter:
    """``meter.start()`` and ``meter.stop()`` at the measured window's edges (cheap: a few
    counter reads), then ``meter.joules`` and ``meter.summary()``. ``close()`` releases NVML.

    ``rapl_root`` and ``nvml`` are for tests (a fake sysfs tree; NVML off with False)."""

    rapl_root: Path = POWERCAP
    nvml: bool = True
    gpu_j: float | None = None
    cpu_j: float | None = None
    gpu_reason: str = ""
    cpu_reason: str = ""
    _zones: list[RaplZone] = field(default_factory=list)
    _nvml: Any = None
    _handles: list[Any] = field(default_factory=list)
    _gpu0: list[int] | None = None
    _cpu0: list[int] | None = None

    def open(self) -> EnergyMeter:
        self._zones, self.cpu_reason = rapl_packages(self.rapl_root)
        if self.nvml:
            self._nvml, self._handles, self.gpu_reason = nvml_handles()
        else:
            self.gpu_reason = "NVML not asked"
        return self

    def _read(self, what: str, read: Callable[[], list[int]]) -> list[int] | None:
        try:
            return read()
        except Exception as exc:  # NVMLError_NotSupported (before Volta), a file gone
            if what == "gpu":
                self.gpu_reason = f"NVML total-energy counter unavailable: {exc}"
            else:
                self.cpu_reason = f"RAPL counter unreadable: {exc}"
            return None

    def _gpu(self) -> list[int] | None:
        if self._nvml is None or self.gpu_reason:
            return None
        return self._read("gpu", lambda: nvml_energy_mj(self._nvml, self._handles))

    def _cpu(self) -> list[int] | None:
        if not self._zones or self.cpu_reason:
            return None
        return self._read("cpu", lambda: [z.read_uj() for z in self._zones])

    def start(self) -> None:
        self._gpu0, self._cpu0 = self._gpu(), self._cpu()

    def stop(self) -> None:
        gpu1, cpu1 = self._gpu(), self._cpu()
        if self._gpu0 is not None and gpu1 is not None:
            self.gpu_j = sum(b - a for a, b in zip(self._gpu0, gpu1, strict=True)) / 1e3
        if self._cpu0 is not None and cpu1 is not None:
            self.cpu_j = sum(rapl_delta_uj(a, b, z.max_range_uj) for a, b, z
                             in zip(self._cpu0, cpu1, self._zones, strict=True)) / 1e6

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

    def __enter__(self) -> EnergyMeter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def source(self) -> str | None:
        """"gpu", "cpu" or None: which counter ``joules`` is."""
        return "gpu" if self.gpu_j is not None else "cpu" if self.cpu_j is not None else None

    @property
    def joules(self) -> float | None:
        """The window's energy: the GPUs' where measured, else the CPU packages', else None."""
        return self.gpu_j if self.gpu_j is not None else self.cpu_j

    def summary(self) -> dict[str, Any]:
        """For the run's client record: both figures, which one counts, and why one is absent."""
        return {
            "energy_source": self.source,
            "energy_gpu_j": None if self.gpu_j is None else round(self.gpu_j, 3),
            "energy_cpu_j": None if self.cpu_j is None else round(self.cpu_j, 3),
            "energy_gpu_absent": self.gpu_reason or None if self.gpu_j is None else None,
            "energy_cpu_absent": self.cpu_reason or None if self.cpu_j is None else None,
        }

