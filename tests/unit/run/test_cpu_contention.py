"""Careless and hostile runs at the session level (issue #15): output paths checked before any
benchmark, an interrupted session never saves, failed requests fail a test unless allowed,
oversubscribed CPUs are named on the result, and xdist workers share the cores.

Split by tier from tests/test_hostile_session.py: these are its unit tests; the others are in
tests/sessions/test_hostile_session.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_llmperf.run.cpu import OVERSUBSCRIBED, CPUContention, parse_stat, usable_cores


def test_parse_stat_and_the_oversubscription_rule(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    cores = usable_cores()
    busy = int(OVERSUBSCRIBED * cores) + 3  # + 1: the sampler itself is not counted
    base = "cpu  100 0 100 700 0 0 0 {steal} 0 0\ncpu0 1 1 1 1\nprocs_running {running}\n"
    assert parse_stat(base.format(steal=100, running=4)) is not None
    assert parse_stat("cpu 1 2 3\n") is None  # no procs_running: nothing to say
    stat.write_text(base.format(steal=0, running=busy))
    with CPUContention(interval_s=0.01, path=str(stat)) as c:
        time.sleep(0.05)
        stat.write_text(base.format(steal=0, running=busy).replace("700", "800"))
    assert c.mean_runnable == busy - 1
    assert c.steal_pct == 0.0
    warning = c.warning()
    assert warning is not None and f"{busy - 1:.1f} runnable threads for {cores}" in warning
    # Quiet: as many runnable threads as cores is not oversubscription.
    stat.write_text(base.format(steal=0, running=cores + 1))
    with CPUContention(interval_s=0.01, path=str(stat)) as quiet:
        time.sleep(0.03)
    assert quiet.warning() is None
    # Steal: 300 of 1000 jiffies taken by the hypervisor during the run.
    stat.write_text(base.format(steal=0, running=1))
    with CPUContention(interval_s=0.01, path=str(stat)) as stolen:
        stat.write_text("cpu  400 0 100 800 0 0 0 300 0 0\nprocs_running 1\n")
    assert stolen.steal_pct == pytest.approx(100.0 * 300 / 700)
    assert "hypervisor took 43%" in (stolen.warning() or "")
