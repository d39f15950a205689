"""Energy and cost: the RAPL reader against sysfs trees with the kernel's file shapes, the NVML
reader through the real ``nvidia-ml-py`` (its real counter where a GPU answers, its real
failure here), the cost arithmetic, and sessions on the known-schedule engine oracle whose
throughput is known: ``--llmperf-cost-per-hour`` gives ``usd_per_mtok``, ``max_usd_per_mtok``
fails a test, and energy with no readable counter is absent (null), never 0.

Split by tier from tests/test_energy.py: these are its sessions tests; the others are in
tests/unit/run/test_energy.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT
from helpers import rapl_zone as zone


@pytest.fixture
def world_tree() -> Iterator[Path]:
    """A powercap tree another user can walk, with energy_uj readable by its owner only
    (mode 0400, as the kernel has it since CVE-2020-8694)."""
    top = Path(tempfile.mkdtemp(prefix="llmperf-rapl-"))
    try:
        os.chmod(top, 0o755)
        d = zone(top, "intel-rapl:0", "package-0", 12345)
        for p in (top, d):
            os.chmod(p, 0o755)
        for f in ("name", "max_energy_range_uj", "enabled"):
            os.chmod(d / f, 0o444)
        os.chmod(d / "energy_uj", 0o400)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_permission_denied_is_absent(world_tree: Path) -> None:
    # As root a 0400 file is readable: the child imports everything, then drops to nobody
    # (uid 65534) before opening the counters, as an ordinary user's run would.
    drop = "os.setgid(65534); os.setuid(65534); " if os.geteuid() == 0 else ""
    code = ("import os, sys; from pathlib import Path; "
            "from pytest_llmperf.run.energy import EnergyMeter; " + drop +
            "m = EnergyMeter(rapl_root=Path(sys.argv[1]), nvml=False).open(); m.start(); "
            "m.stop(); print(m.cpu_j, '|', m.cpu_reason)")
    repo = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code, str(world_tree)], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": repo})
    assert proc.returncode == 0, proc.stderr
    value, reason = (part.strip() for part in proc.stdout.split("|"))
    assert value == "None"
    assert "permission denied" in reason and "energy_uj" in reason


# --------------------------------------------------------------------------- sessions

SCHEDULE_ENGINE = """
from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def pytest_llmperf_engine_names():
    return ["schedule"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "schedule":
        return None
    return ScheduleEngine(float(settings.model), gap_ms=2.0)
"""

# 16 tokens: the first after 20 ms, then one every 2 ms: 50 ms a request, 320 tokens/s.
TEST_FILE = """
from pytest_llmperf import Workload, llmperf

W = Workload(input_tokens=8, output_tokens=16, requests=6, warmup=1)

@llmperf(max_usd_per_mtok=100)
def test_cheap_enough(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, W)

@llmperf(max_usd_per_mtok=1.0)
def test_too_dear(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, W)
"""


def test_cost_per_hour_on_the_known_schedule_engine(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makeconftest(SCHEDULE_ENGINE)
    pt.makepyfile(TEST_FILE)
    out, junit, md = pt.path / "out.json", pt.path / "junit.xml", pt.path / "summary.md"
    html = pt.path / "report.html"
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=20",
                       "--llmperf-cost-per-hour", "2.5", f"--llmperf-json={out}",
                       f"--junitxml={junit}", f"--llmperf-markdown={md}",
                       f"--llmperf-html={html}", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, failed=1)
    text = res.stdout.str()
    assert "max_usd_per_mtok" in text and "usd_per_mtok" in text
    assert "$/Mtok" in text and "J/tok" not in text  # energy absent here: no column
    runs = {t["nodeid"].rsplit("::", 1)[-1]: t["runs"][0] for t in json.loads(out.read_text())
            ["tests"]}
    for run in runs.values():
        s = run["summary"]
        expected = 2.5 / (s["output_tps"] * 3600) * 1e6
        assert s["usd_per_mtok"] == pytest.approx(expected)
        # The oracle's schedule: 320 tokens/s at most, so at least 2.17 $/Mtok; asyncio's
        # sleeps only ever run late (more so on a loaded machine), so it measures above that.
        ideal = 2.5 / (320 * 3600) * 1e6
        assert ideal * 0.98 <= s["usd_per_mtok"] < ideal * 2.5, s["usd_per_mtok"]
        # No readable energy counter on this machine: absent (null), never 0.
        assert s["energy_j_per_token"] is None
        assert run["client"]["energy_source"] is None
        assert run["client"]["energy_cpu_absent"]
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert any(k.endswith("usd_per_mtok") for k in props)
    assert not any(k.endswith("energy_j_per_token") for k in props)
    assert "$/Mtok" in md.read_text() and "J/tok" not in md.read_text()
    page = html.read_text()
    assert 'data-metric="usd_per_mtok"' in page and 'data-metric="energy_j_per_token"' not in page


def test_a_bad_cost_per_hour_is_a_usage_error(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile("def test_x():\n    pass\n")
    res = llmperf_pytester.runpytest("--llmperf", "--llmperf-cost-per-hour=-1",
                                     "-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "--llmperf-cost-per-hour: '-1' must be > 0" in err and "Traceback" not in err
