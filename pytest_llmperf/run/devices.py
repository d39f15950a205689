"""One GPU per pytest-xdist worker: ``gwN`` gets the N-th visible device (modulo their count)
as its ``CUDA_VISIBLE_DEVICES``, set before any engine is made.

The visible devices are the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (indices,
UUIDs or MIG names, kept as written), else the devices NVML counts (``nvidia-ml-py``, the
``gpu`` extra). No GPU, or no NVML: nothing is assigned.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence

_WORKER = re.compile(r"gw(\d+)\Z")


def visible_devices(environ: Mapping[str, str], nvml_count: int | None = None) -> list[str]:
    """The devices a process may use: ``CUDA_VISIBLE_DEVICES``'s entries, else NVML's count
    (``nvml_count``; None asks NVML). Set but empty, or ``-1``: none."""
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is not None:
        entries = [part.strip() for part in raw.split(",") if part.strip()]
        # CUDA stops at the first invalid entry; -1 is the usual way to hide every device.
        out: list[str] = []
        for entry in entries:
            if entry.lstrip("-").isdigit() and int(entry) < 0:
                break
            out.append(entry)
        return out
    count = nvml_device_count() if nvml_count is None else nvml_count
    return [str(i) for i in range(count)]


def device_for_worker(worker_id: str, visible: Sequence[str]) -> str | None:
    """The device of xdist worker ``gwN``: ``visible[N % len(visible)]``; None without
    devices or for a worker id that is not ``gwN``."""
    match = _WORKER.match(worker_id)
    if match is None or not visible:
        return None
    return visible[int(match.group(1)) % len(visible)]


def oversubscribed_line(workers: int, visible: Sequence[str]) -> str | None:
    """The warning when more workers than GPUs share them, else None."""
    if not visible or workers <= len(visible):
        return None
    return (f"pytest-llmperf: {workers} xdist workers share {len(visible)} GPU(s) "
            f"({','.join(visible)}): workers on one GPU slow each other down")


def nvml_device_count() -> int:
    """GPUs NVML sees; 0 without nvidia-ml-py, a driver or a GPU."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
