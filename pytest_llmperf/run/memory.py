"""Peak resident memory of the engine's processes, sampled in a background thread.

The engine names its processes (``Engine.memory_pids()``): this process for an in-process
engine, plus the child processes it started (vLLM's EngineCore, whose workers are its
children); the server's for a served one. Each named process counts with all its descendants
(a server's workers, vLLM's workers), except this process itself: its other children may be
another engine's (a server the session started), so an engine lists the ones that are its
own. The tree is looked up again every ``TREE_EVERY`` samples (processes started during the
run are found; the per-sample read stays cheap).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import psutil

from ..periodic import Periodic

TREE_EVERY = 10  # samples between two walks of the process tree


def process_tree(pids: Iterable[int]) -> list[int]:
    """``pids`` and all their descendants, except this process's (each once; gone processes
    dropped)."""
    tree: dict[int, None] = {}
    me = os.getpid()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            children = proc.children(recursive=True) if pid != me else []
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        tree[pid] = None
        for child in children:
            tree[child.pid] = None
    return list(tree)


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakRSS:
    """Context manager: ``with PeakRSS(pids) as m: ...; m.peak_mb`` (``pids`` and their
    descendants, summed; see ``process_tree``)."""

    def __init__(self, pids: Sequence[int], interval_s: float = 0.05) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.peak = 0
        self.tree: list[int] = []
        self._samples = 0
        self._periodic = Periodic(self._sample, interval_s, "llmperf-rss")

    def _sample(self) -> None:
        if self._samples % TREE_EVERY == 0:
            self.tree = process_tree(self.pids)
        self._samples += 1
        self.peak = max(self.peak, rss_bytes(self.tree))

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
