"""Energy and cost: the RAPL reader against sysfs trees with the kernel's file shapes, the NVML
reader through the real ``nvidia-ml-py`` (its real counter where a GPU answers, its real
failure here), the cost arithmetic, and sessions on the known-schedule engine oracle whose
throughput is known: ``--llmperf-cost-per-hour`` gives ``usd_per_mtok``, ``max_usd_per_mtok``
fails a test, and energy with no readable counter is absent (null), never 0."""

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

from pytest_llmperf.run.energy import (
    EnergyMeter,
    j_per_token,
    nvml_energy_mj,
    nvml_handles,
    rapl_delta_uj,
    rapl_packages,
    usd_per_mtok,
)
from pytest_llmperf.run.metrics import RequestRecord, summarize

MAX_RANGE = 262143328850  # what a real package zone reports as max_energy_range_uj


def zone(root: Path, name: str, label: str, energy: int, max_range: int = MAX_RANGE) -> Path:
    """A powercap zone directory as the kernel lays it out (name, energy_uj,
    max_energy_range_uj, plus files we do not read)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    (d / "enabled").write_text("1\n")
    return d


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """Two packages, each with core/uncore subzones, and the psys-style mmio zone name."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)
    zone(root, "intel-rapl:0:1", "uncore", 10_000)
    zone(root, "intel-rapl:1", "package-1", 2_000_000)
    zone(root, "intel-rapl:1:0", "core", 700_000)
    return root


def set_energy(root: Path, name: str, value: int) -> None:
    (root / name / "energy_uj").write_text(f"{value}\n")


# --------------------------------------------------------------------------- RAPL


def test_rapl_reads_packages_only_and_sums_their_deltas(sysfs: Path) -> None:
    zones, why = rapl_packages(sysfs)
    assert why == ""
    assert [z.name for z in zones] == ["package-0", "package-1"]  # subzones are inside
    meter = EnergyMeter(rapl_root=sysfs, nvml=False).open()
    meter.start()
    set_energy(sysfs, "intel-rapl:0", 1_000_000 + 3_500_000)  # +3.5 J
    set_energy(sysfs, "intel-rapl:1", 2_000_000 + 1_250_000)  # +1.25 J
    set_energy(sysfs, "intel-rapl:0:0", 99_000_000)  # a subzone: never added on top
    meter.stop()
    assert meter.cpu_j == pytest.approx(4.75)
    assert meter.gpu_j is None and meter.source == "cpu" and meter.joules == pytest.approx(4.75)
    s = meter.summary()
    assert s["energy_source"] == "cpu" and s["energy_cpu_j"] == 4.75
    assert s["energy_gpu_j"] is None and s["energy_gpu_absent"] == "NVML not asked"


def test_rapl_counter_wrapping_around_max_energy_range(sysfs: Path) -> None:
    set_energy(sysfs, "intel-rapl:0", MAX_RANGE - 400_000)
    meter = EnergyMeter(rapl_root=sysfs, nvml=False).open()
    meter.start()
    set_energy(sysfs, "intel-rapl:0", 600_000)  # wrapped: 400 000 + 600 000 uJ
    set_energy(sysfs, "intel-rapl:1", 2_000_000)  # unchanged
    meter.stop()
    assert meter.cpu_j == pytest.approx(1.0)
    assert rapl_delta_uj(10, 30, 100) == 20
    assert rapl_delta_uj(90, 5, 100) == 15


def test_no_powercap_is_absent_with_the_reason(tmp_path: Path) -> None:
    zones, why = rapl_packages(tmp_path / "missing")
    assert zones == [] and "not present" in why
    (tmp_path / "empty").mkdir()
    zones, why = rapl_packages(tmp_path / "empty")
    assert zones == [] and "no RAPL package counters" in why
    meter = EnergyMeter(rapl_root=tmp_path / "missing", nvml=False).open()
    meter.start()
    meter.stop()
    assert meter.cpu_j is None and meter.joules is None and meter.source is None
    assert "not present" in meter.summary()["energy_cpu_absent"]


def test_a_garbled_counter_is_absent_not_guessed(sysfs: Path) -> None:
    set_energy(sysfs, "intel-rapl:1", 0)
    (sysfs / "intel-rapl:1" / "energy_uj").write_text("n/a\n")
    zones, why = rapl_packages(sysfs)
    assert zones == [] and "intel-rapl:1" in why
    # A counter that disappears mid-run: the run's CPU figure is absent, not half a sum.
    sysfs2 = sysfs.parent / "again"
    zone(sysfs2, "intel-rapl:0", "package-0", 5)
    meter = EnergyMeter(rapl_root=sysfs2, nvml=False).open()
    meter.start()
    shutil.rmtree(sysfs2 / "intel-rapl:0")
    meter.stop()
    assert meter.cpu_j is None and "unreadable" in meter.cpu_reason


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
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", code, str(world_tree)], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": repo})
    assert proc.returncode == 0, proc.stderr
    value, reason = (part.strip() for part in proc.stdout.split("|"))
    assert value == "None"
    assert "permission denied" in reason and "energy_uj" in reason


# --------------------------------------------------------------------------- NVML


def test_nvml_through_the_real_library() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    nvml, handles, why = nvml_handles()
    meter = EnergyMeter(rapl_root=Path("/nonexistent"), nvml=True).open()
    try:
        meter.start()
        meter.stop()
    finally:
        meter.close()
    if nvml is None:  # no driver or no GPU (this machine): absent, with NVML's own reason
        assert handles == [] and why
        assert meter.gpu_j is None and meter.joules is None
        assert meter.summary()["energy_gpu_absent"] == why
        return
    try:  # a GPU: the real counter, in millijoules, never going backwards
        first = nvml_energy_mj(nvml, handles)
        second = nvml_energy_mj(nvml, handles)
    except Exception as exc:  # before Volta: not supported
        assert meter.gpu_j is None and "unavailable" in meter.gpu_reason
        pytest.skip(f"the total-energy counter is not supported here: {exc}")
    finally:
        nvml.nvmlShutdown()
    assert all(b >= a >= 0 for a, b in zip(first, second, strict=True))
    assert meter.gpu_j is not None and meter.gpu_j >= 0 and meter.source == "gpu"


# --------------------------------------------------------------------------- arithmetic


def test_cost_and_energy_arithmetic() -> None:
    # $2.50 an hour at 1000 tokens/s: 3.6 M tokens an hour, 0.6944 $/Mtok.
    assert usd_per_mtok(2.5, 1000.0) == pytest.approx(2.5 / 3.6)
    assert usd_per_mtok(None, 1000.0) is None
    assert usd_per_mtok(2.5, None) is None and usd_per_mtok(2.5, 0.0) is None
    assert j_per_token(50.0, 200) == 0.25
    assert j_per_token(None, 200) is None and j_per_token(50.0, 0) is None


def test_summary_has_both_metrics_and_absent_is_none() -> None:
    recs = []
    for i in range(4):  # 4 requests of 10 tokens, one after the other, 1 s each
        r = RequestRecord(index=i, prompt_tokens=8, send_ns=i * 10**9,
                          chunk_ns=[i * 10**9 + k * 10**8 for k in range(1, 11)],
                          chunk_tokens=[1] * 10, done_ns=(i + 1) * 10**9, output_tokens=10)
        recs.append(r)
    s = summarize(recs, energy_j=8.0, cost_per_hour=3.6)
    assert s["output_tps"] == pytest.approx(10.0)
    assert s["energy_j_per_token"] == pytest.approx(0.2)
    assert s["usd_per_mtok"] == pytest.approx(3.6 / (10 * 3600) * 1e6)  # 100 $/Mtok
    bare = summarize(recs)
    assert bare["energy_j_per_token"] is None and bare["usd_per_mtok"] is None


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
