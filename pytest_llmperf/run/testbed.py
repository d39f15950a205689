"""The testbed, fingerprinted: what the machine a run measured on was set to, beyond the
hardware class the profile names (``store/profile.py``: CPU model and cores, GPU name and
driver). Recorded with every run (``client["testbed"]``); ``verdict/testbed.py`` compares two.

CPU side, read from ``/proc`` and ``/sys`` (every reader takes its root, so tests give a fake
tree): the CPU model, the cores the process may use (``sched_getaffinity`` and the cgroup's CPU
quota, v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), the frequency governor of its cores, SMT,
memory. GPU side, through NVML where ``pynvml`` and a driver are present: name, driver, CUDA
version, enforced power limit, application (locked) clocks, MIG mode, persistence mode and the
temperature at the start and the end of the run. A field that cannot be read is absent, never
an error: the run goes on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PROC = Path("/proc")
SYS = Path("/sys")
CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except (OSError, ValueError):
        return None


def cpu_model(proc: Path = PROC) -> str | None:
    """The first ``model name`` (or ``Hardware``/``cpu model``) line of ``/proc/cpuinfo``."""
    text = _read(proc / "cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
            return line.split(":", 1)[1].strip() or None
    return None


def memory_mb(proc: Path = PROC) -> int | None:
    """``MemTotal`` of ``/proc/meminfo`` in MiB."""
    for line in (_read(proc / "meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) // 1024
    return None


def affinity(get: Callable[[int], Iterable[int]] | None = None) -> list[int] | None:
    """The logical CPUs this process may run on (None: unknown on this platform)."""
    get = get or getattr(os, "sched_getaffinity", None)
    if get is None:
        return None
    try:
        return sorted(get(0))
    except OSError:
        return None


def _cgroup_paths(proc: Path) -> dict[str, str]:
    """This process's cgroup per controller (``""``: the v2 unified hierarchy)."""
    out: dict[str, str] = {}
    for line in (_read(proc / "self" / "cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                out.setdefault(controller, parts[2])
    return out


def _ancestors(root: Path, rel: str) -> list[Path]:
    """``root/rel`` and each of its parents up to ``root``."""
    parts = [p for p in rel.split("/") if p and p not in (".", "..")]
    return [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cpu_quota(proc: Path = PROC, cgroup: Path = CGROUP) -> float | None:
    """The cgroup's CPU quota in cores (the smallest along the path to the root), None when
    unlimited or unknown: cgroup v2 ``cpu.max`` ("200000 100000" = 2 cores, "max ...":
    none), else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none)."""
    paths = _cgroup_paths(proc)
    quotas: list[float] = []
    if "" in paths:
        for d in _ancestors(cgroup, paths[""]):
            fields = (_read(d / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                with contextlib.suppress(ValueError, ZeroDivisionError):
                    quotas.append(int(fields[0]) / int(fields[1]))
    rel = paths.get("cpu", paths.get("cpuacct"))
    if rel is not None:
        for base in (cgroup / "cpu", cgroup / "cpu,cpuacct"):
            for d in _ancestors(base, rel):
                quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                with contextlib.suppress(TypeError, ValueError, ZeroDivisionError):
                    if int(str(quota)) > 0:
                        quotas.append(int(str(quota)) / int(str(period)))
    return round(min(quotas), 3) if quotas else None


def governor(cpus: Iterable[int] | None, sys: Path = SYS) -> str | None:
    """The frequency governor of the given CPUs (all when None): one name, or the names
    joined with "+" when they differ; None without cpufreq (a VM, a container)."""
    base = sys / "devices" / "system" / "cpu"
    if cpus is None:
        try:
            cpus = sorted(int(p.name[3:]) for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit())
        except OSError:
            return None
    names = {g for c in cpus
             if (g := _read(base / f"cpu{c}" / "cpufreq" / "scaling_governor"))}
    return "+".join(sorted(names)) if names else None


def smt(sys: Path = SYS) -> bool | None:
    """Whether simultaneous multithreading is active (``smt/active``); None: unknown."""
    value = _read(sys / "devices" / "system" / "cpu" / "smt" / "active")
    return {"1": True, "0": False}.get(value or "")


def cpu_testbed(proc: Path = PROC, sys: Path = SYS, cgroup: Path = CGROUP,
                get_affinity: Callable[[int], Iterable[int]] | None = None) -> dict[str, Any]:
    """The CPU side of the testbed (absent fields could not be read)."""
    cpus = affinity(get_affinity)
    out: dict[str, Any] = {
        "cpu_model": cpu_model(proc),
        "cpus": len(cpus) if cpus is not None else None,
        "cpu_quota": cpu_quota(proc, cgroup),
        "governor": governor(cpus, sys),
        "smt": smt(sys),
        "memory_mb": memory_mb(proc),
    }
    return {k: v for k, v in out.items() if v is not None}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _nvml_call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported and friends: the field is left out
        return None


def _indices(nvml: Any) -> list[int]:
    """The NVML indices of the visible GPUs (``CUDA_VISIBLE_DEVICES`` by index)."""
    indices = list(range(_nvml_call(nvml.nvmlDeviceGetCount) or 0))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        keep = [int(v) for v in visible.split(",") if v.strip().isdigit()]
        indices = [i for i in indices if i in keep] or indices
    return indices


def _temperature(nvml: Any, handle: Any) -> Any:
    return _nvml_call(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)


def gpu_testbed(nvml: Any = None) -> list[dict[str, Any]]:
    """The GPU side (one entry per visible GPU; [] without NVML). ``nvml``: the ``pynvml``
    module, initialised by the caller (tests pass a fake)."""
    if nvml is None:
        return []
    driver = _nvml_call(nvml.nvmlSystemGetDriverVersion)
    cuda = _nvml_call(nvml.nvmlSystemGetCudaDriverVersion)
    out = []
    for i in _indices(nvml):
        h = _nvml_call(nvml.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            continue
        name = _nvml_call(nvml.nvmlDeviceGetName, h)
        power = _nvml_call(nvml.nvmlDeviceGetEnforcedPowerLimit, h)  # mW
        mig = _nvml_call(nvml.nvmlDeviceGetMigMode, h)  # (current, pending)
        clock = nvml.nvmlDeviceGetApplicationsClock
        gpu: dict[str, Any] = {
            "name": None if name is None else _text(name),
            "driver": None if driver is None else _text(driver),
            "cuda": (None if not isinstance(cuda, int)
                     else f"{cuda // 1000}.{cuda % 1000 // 10}"),
            "power_limit_w": None if power is None else round(power / 1000, 1),
            "app_clock_sm_mhz": _nvml_call(clock, h, nvml.NVML_CLOCK_SM),
            "app_clock_mem_mhz": _nvml_call(clock, h, nvml.NVML_CLOCK_MEM),
            "mig": None if mig is None else bool(mig[0] if isinstance(mig, list | tuple)
                                                 else mig),
            "persistence": _bool(_nvml_call(nvml.nvmlDeviceGetPersistenceMode, h)),
            "temp_start_c": _temperature(nvml, h),
        }
        out.append({k: v for k, v in gpu.items() if v is not None})
    return out


def gpu_temperatures(nvml: Any, n: int) -> list[int | None]:
    """The first ``n`` visible GPUs' temperatures now (the end of a run)."""
    out: list[int | None] = []
    for i in _indices(nvml)[:n]:
        h = _nvml_call(nvml.nvmlDeviceGetHandleByIndex, i)
        out.append(None if h is None else _temperature(nvml, h))
    return out


def _nvml() -> Any:
    """``pynvml``, initialised, or None (not installed, no driver)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


class TestbedRecorder:
    """Read at a run's start (``start``), GPU temperatures again at its end (``finish``),
    which returns the testbed dict stored as the run's ``client["testbed"]``."""

    __test__ = False  # not a pytest test class

    def __init__(self, nvml: Any = None, **paths: Any) -> None:
        self._nvml, self._paths, self._owned = nvml, paths, False
        self.testbed: dict[str, Any] = {}

    def start(self) -> TestbedRecorder:
        self.testbed = cpu_testbed(**self._paths)
        if self._nvml is None:
            self._nvml, self._owned = _nvml(), True
        gpus = gpu_testbed(self._nvml) if self._nvml is not None else []
        if gpus:
            self.testbed["gpus"] = gpus
        return self

    def finish(self) -> dict[str, Any]:
        gpus = self.testbed.get("gpus") or []
        if gpus and self._nvml is not None:
            for gpu, temp in zip(gpus, gpu_temperatures(self._nvml, len(gpus)), strict=False):
                if temp is not None:
                    gpu["temp_end_c"] = temp
        if self._owned and self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None
        return self.testbed
