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
