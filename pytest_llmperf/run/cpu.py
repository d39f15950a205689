"""CPU contention while a run is measured: were there more runnable threads than cores?

Two benchmark sessions on one machine (a second terminal, two CI jobs on one runner, xdist
workers each using every core) make the engine's threads wait for a CPU, and the numbers then
measure the queue, not the engine: on 2 shared cores a run that takes 1 s alone took 4 s, once
162 s. ``CPUContention`` samples the kernel's count of runnable threads (``procs_running`` in
``/proc/stat``) in a background thread during the run, and the hypervisor's steal time over
it, and ``warning()`` says so when the CPUs were oversubscribed. Linux only; elsewhere it
records nothing and never warns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..periodic import Periodic

STAT = "/proc/stat"
# More runnable threads than this many per usable core, on average, is oversubscription.
OVERSUBSCRIBED = 1.25
# More than this share of the CPUs' time taken by the hypervisor (other virtual machines).
STEAL_PCT = 10.0


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class StatReading:
    procs_running: int
    steal: int  # jiffies, all CPUs
    total: int  # jiffies, all CPUs


def parse_stat(text: str) -> StatReading | None:
    """The fields of /proc/stat this module uses (None when they are missing)."""
    running: int | None = None
    steal = total = 0
    seen_cpu = False
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu":
            values = [int(v) for v in parts[1:]]
            # user nice system idle iowait irq softirq steal guest guest_nice; guests are
            # already counted in user/nice.
            total = sum(values[:8])
            steal = values[7] if len(values) > 7 else 0
            seen_cpu = True
        elif parts[0] == "procs_running" and len(parts) > 1:
            running = int(parts[1])
    if running is None or not seen_cpu:
        return None
    return StatReading(running, steal, total)


def read_stat(path: str = STAT) -> StatReading | None:
    try:
        with open(path, encoding="ascii") as fh:
            return parse_stat(fh.read())
    except (OSError, ValueError):
        return None


class CPUContention:
    """``with CPUContention() as c: ...``; then ``c.mean_runnable`` (runnable threads besides
    the sampler itself, averaged over the run), ``c.steal_pct``, ``c.warning()``."""

    def __init__(self, interval_s: float = 0.1, path: str = STAT) -> None:
        self.interval_s = interval_s
        self.path = path
        self.cores = usable_cores()
        self.samples: list[int] = []
        self.steal_pct: float | None = None
        self._first: StatReading | None = None
        self._periodic = Periodic(self.sample, interval_s, "llmperf-cpu")

    def sample(self) -> StatReading | None:
        reading = read_stat(self.path)
        if reading is not None:
            # The sampling thread is running while it reads: it is not load.
            self.samples.append(max(0, reading.procs_running - 1))
        return reading

    def __enter__(self) -> CPUContention:
        self._first = self.sample()
        if self._first is not None:
            self._periodic.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._periodic.stop()
        last = self.sample()
        first = self._first
        if first is not None and last is not None and last.total > first.total:
            self.steal_pct = 100.0 * (last.steal - first.steal) / (last.total - first.total)

    @property
    def mean_runnable(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def summary(self) -> dict[str, float | int | None]:
        """For the run's client record (JSON): what was seen, whether or not it warned."""
        mean = self.mean_runnable
        return {"cpu_cores": self.cores,
                "cpu_runnable_mean": None if mean is None else round(mean, 2),
                "cpu_steal_pct": None if self.steal_pct is None else round(self.steal_pct, 1)}

    def warning(self, beside: str | None = None, advice: str | None = None) -> str | None:
        """One line when the run's CPUs were oversubscribed or stolen, else None. ``beside``
        says what the session itself ran beside the measured engine, in place of "another job
        or session competed with the engine" (the A/B's other engine: "the A/B's own second
        engine, B (threads=1), was loaded beside A, and its threads competed with A's"), so the
        line does not blame another job for it; ``advice`` replaces the default advice."""
        parts: list[str] = []
        mean = self.mean_runnable
        if mean is not None and mean > OVERSUBSCRIBED * self.cores:
            parts.append(f"on average {mean:.1f} runnable threads for {self.cores} core(s)")
        if self.steal_pct is not None and self.steal_pct > STEAL_PCT:
            parts.append(f"the hypervisor took {self.steal_pct:.0f}% of the CPU time")
        if not parts:
            return None
        cause = beside or "another job or session competed with the engine"
        return ("the CPUs were oversubscribed during the run (" + "; ".join(parts) + "): "
                + cause + ", so latencies and throughput include waiting for a CPU; "
                + (advice or "run it alone, or give each session fewer threads"))
