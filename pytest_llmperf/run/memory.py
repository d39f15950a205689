"""Peak resident memory of the engine's processes, sampled in a background thread."""

from __future__ import annotations

from collections.abc import Sequence

import psutil

from .periodic import Periodic


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakRSS:
    """Context manager: ``with PeakRSS(pids) as m: ...; m.peak_mb``."""

    def __init__(self, pids: Sequence[int], interval_s: float = 0.05) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.peak = 0
        self._periodic = Periodic(self._sample, interval_s, "llmperf-rss")

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_bytes(self.pids))

    def __enter__(self) -> PeakRSS:
        self._sample()
        self._periodic.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._periodic.stop()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak / (1024 * 1024)
