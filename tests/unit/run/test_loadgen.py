"""The load generator against the test oracle: arrival processes, concurrency, warm-up,
duration, and the client's account of its own timing.

Split by tier from tests/test_loadgen.py: these are its unit tests; the others are in
tests/sessions/test_loadgen_session.py.
"""

from __future__ import annotations

import numpy as np

from pytest_llmperf.run.workload import Workload, arrival_offsets_s


def test_arrival_processes_are_seeded_and_bursty_on_request() -> None:
    a = arrival_offsets_s(Workload(rate=10, seed=1), 400)
    b = arrival_offsets_s(Workload(rate=10, seed=1), 400)
    c = arrival_offsets_s(Workload(rate=10, seed=2), 400)
    bursty = arrival_offsets_s(Workload(rate=10, seed=1, arrival="gamma", burstiness=0.2), 400)
    assert a == b and a != c
    assert a is not None and bursty is not None
    gaps, bgaps = np.diff(a), np.diff(bursty)
    assert abs(gaps.mean() - 0.1) < 0.02 and abs(bgaps.mean() - 0.1) < 0.03  # the asked rate
    cv = gaps.std() / gaps.mean()
    bcv = bgaps.std() / bgaps.mean()
    assert 0.8 < cv < 1.2  # Poisson: exponential gaps
    assert bcv > 1.6  # gamma with shape 0.2: CV = 1/sqrt(0.2) = 2.2


def test_the_lag_monitor_drops_what_the_run_blocks_on_purpose() -> None:
    """A block inside ``paused()`` (the window's edges: nothing in flight) is not lag; the
    same block outside it is."""
    import asyncio
    import time

    from pytest_llmperf.run.schedule import LagMonitor

    async def run(paused: bool) -> LagMonitor:
        monitor = LagMonitor()
        monitor.start()
        await asyncio.sleep(0.02)
        if paused:
            with monitor.paused():
                time.sleep(0.08)
        else:
            time.sleep(0.08)
        await asyncio.sleep(0.02)
        await monitor.stop()
        return monitor

    blocked, paused = asyncio.run(run(False)), asyncio.run(run(True))
    assert (blocked.summary()["loop_lag_max_ms"] or 0) > 60
    assert (paused.summary()["loop_lag_max_ms"] or 0) < 40 and paused.lags_ns
