"""The testbed, fingerprinted (issue 25, item 5): the readers on fake ``/proc``, ``/sys`` and
cgroup trees and a fake NVML (``run/testbed.py``), and two testbeds compared
(``verdict/testbed.py``): a governor-only difference is compared with a note, another CPU
model is refused, a noisy history labels the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.run import testbed
from pytest_llmperf.verdict.testbed import compare_testbeds, history_cv


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_machine(root: Path, *, model: str = "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                 governors: tuple[str, ...] = ("performance",) * 4, smt: str = "1",
                 cgroup: str = "0::/ci/job\n", cpu_max: str | None = "200000 100000",
                 ) -> dict[str, Path]:
    proc, sys, cg = root / "proc", root / "sys", root / "cgroup"
    write(proc / "cpuinfo", "".join(f"processor\t: {i}\nvendor_id\t: GenuineIntel\n"
                                    f"model name\t: {model}\n\n" for i in range(4)))
    write(proc / "meminfo", "MemTotal:       16384000 kB\nMemFree:  1 kB\n")
    write(proc / "self" / "cgroup", cgroup)
    for i, g in enumerate(governors):
        write(sys / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq" / "scaling_governor",
              g + "\n")
    write(sys / "devices" / "system" / "cpu" / "smt" / "active", smt + "\n")
    write(cg / "cpu.max", "max 100000\n")
    if cpu_max is not None:
        write(cg / "ci" / "job" / "cpu.max", cpu_max + "\n")
    return {"proc": proc, "sys": sys, "cgroup": cg}


def test_cpu_readers_on_a_fake_tree(tmp_path: Path) -> None:
    paths = fake_machine(tmp_path, governors=("performance", "powersave", "performance",
                                              "performance"))
    bed = testbed.cpu_testbed(**paths, get_affinity=lambda _pid: {0, 1, 2})
    assert bed == {"cpu_model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "cpus": 3,
                   "cpu_quota": 2.0, "governor": "performance+powersave", "smt": True,
                   "memory_mb": 16000}
    # Only the governors of the CPUs the process may use count.
    assert testbed.governor([0, 2], paths["sys"]) == "performance"


def test_cgroup_v1_quota_and_nothing_to_read(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    paths = fake_machine(root, cgroup="4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/\n",
                         cpu_max=None, smt="0")
    write(paths["cgroup"] / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "150000\n")
    write(paths["cgroup"] / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    write(paths["cgroup"] / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    write(paths["cgroup"] / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert testbed.cpu_quota(paths["proc"], paths["cgroup"]) == 1.5
    assert testbed.smt(paths["sys"]) is False
    empty = tmp_path / "empty"
    bed = testbed.cpu_testbed(empty / "proc", empty / "sys", empty / "cg",
                              get_affinity=lambda _pid: {0})
    assert bed == {"cpus": 1}  # what cannot be read is absent, never an error


class FakeNVML:
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self) -> None:
        self.temp = 41

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"gpu{i}"

    def nvmlDeviceGetName(self, h: str) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        return 700000

    def nvmlDeviceGetApplicationsClock(self, h: str, kind: int) -> int:
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMigMode(self, h: str) -> list[int]:
        raise RuntimeError("NVMLError_NotSupported")

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int:
        return 1

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        return self.temp


def test_gpu_readers_on_a_fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNVML()
    rec = testbed.TestbedRecorder(nvml, **fake_machine(tmp_path),
                                  get_affinity=lambda _pid: {0, 1}).start()
    nvml.temp = 67  # hotter at the end of the run
    bed = rec.finish()
    assert bed["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15",
                            "cuda": "12.4", "power_limit_w": 700.0, "app_clock_sm_mhz": 1980,
                            "app_clock_mem_mhz": 2619, "persistence": True,
                            "temp_start_c": 41, "temp_end_c": 67}]  # MIG unsupported: absent
    assert bed["cpus"] == 2


def runs(bed: dict[str, Any] | None, tps: float = 100.0) -> list[dict[str, Any]]:
    return [{"summary": {"output_tps": tps}, "client": {} if bed is None else {"testbed": bed}}]


def test_governor_only_difference_is_compared_with_a_note(tmp_path: Path) -> None:
    a = testbed.cpu_testbed(**fake_machine(tmp_path / "a"), get_affinity=lambda _: {0, 1})
    b = testbed.cpu_testbed(**fake_machine(tmp_path / "b", governors=("powersave",) * 4),
                            get_affinity=lambda _: {0, 1})
    found = compare_testbeds(runs(a), runs(b))
    assert found["refused"] is None
    assert found["differences"] == ["governor: baseline 'performance', now 'powersave'"]
    assert found["notes"] == ["another testbed setting that changes speed (governor: "
                              "baseline 'performance', now 'powersave')"]
    assert compare_testbeds(runs(a), runs(dict(a)))["notes"] == []
    assert compare_testbeds(runs(None), runs(b))["notes"] == []  # a baseline saved before


def test_another_cpu_model_is_refused(tmp_path: Path) -> None:
    a = testbed.cpu_testbed(**fake_machine(tmp_path / "a"), get_affinity=lambda _: {0, 1})
    b = testbed.cpu_testbed(**fake_machine(tmp_path / "b", model="AMD EPYC 7763 64-Core"),
                            get_affinity=lambda _: {0, 1})
    found = compare_testbeds(runs(a), runs(b))
    assert found["refused"] == (
        "not compared: the baseline ran on another hardware class (cpu_model: baseline "
        "'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', now 'AMD EPYC 7763 64-Core'); numbers "
        "from different hardware are not a comparison")
    gpu = {**a, "gpus": [{"name": "NVIDIA A100", "power_limit_w": 400.0}]}
    other = {**a, "gpus": [{"name": "NVIDIA H100", "power_limit_w": 400.0}]}
    assert "gpus.0.name" in compare_testbeds(runs(gpu), runs(other))["refused"]
    capped = {**a, "gpus": [{"name": "NVIDIA A100", "power_limit_w": 250.0}]}
    assert compare_testbeds(runs(gpu), runs(capped))["differences"] == [
        "gpus.0.power_limit_w: baseline 400.0, now 250.0"]


def test_noisy_testbed_from_the_history_cv() -> None:
    quiet = [runs(None, v) for v in (100, 101, 99, 100)]
    noisy = [runs(None, v) for v in (100, 130, 80, 110)]
    assert history_cv(quiet, "output_tps") == pytest.approx(0.00816, rel=1e-2)
    assert history_cv(noisy, "output_tps") == pytest.approx(0.1983, rel=1e-2)
    assert history_cv(noisy[:2], "output_tps") is None  # too few baselines to say
    found = compare_testbeds(runs(None), runs(None), noisy, ["output_tps", "ttft_p50_ms"])
    assert found["noisy"] == {"output_tps": pytest.approx(0.1983, rel=1e-2)}
    assert found["notes"] == ["noisy testbed: run-to-run spread over the baseline history "
                              "above 10% (output_tps CV 20%)"]
    assert compare_testbeds(runs(None), runs(None), quiet, ["output_tps"])["noisy"] == {}
