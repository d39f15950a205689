"""Energy and cost: the RAPL reader against sysfs trees with the kernel's file shapes, the NVML
reader through the real ``nvidia-ml-py`` (its real counter where a GPU answers, its real
failure here), the cost arithmetic, and sessions on the known-schedule engine oracle whose
throughput is known: ``--llmperf-cost-per-hour`` gives ``usd_per_mtok``, ``max_usd_per_mtok``
fails a test, and energy with no readable counter is absent (null), never 0.

Split by tier from tests/test_energy.py: these are its unit tests; the others are in
tests/sessions/test_energy_session.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import MAX_RANGE
from helpers import rapl_zone as zone

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
