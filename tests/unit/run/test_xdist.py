"""Under pytest-xdist: results of every worker reach the controller through the test reports,
and only the controller writes the reports.

Split by tier from tests/test_xdist.py: these are its unit tests; the others are in
tests/sessions/test_xdist_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.run.devices import device_for_worker, oversubscribed_line, visible_devices

pytest.importorskip("xdist", reason="needs pytest-xdist (the dev extra)")


# -- one GPU per worker ---------------------------------------------------------------------


def test_each_worker_gets_the_next_visible_device() -> None:
    visible = ["3", "5"]
    assert [device_for_worker(f"gw{n}", visible) for n in range(5)] == ["3", "5", "3", "5", "3"]
    assert device_for_worker("gw0", []) is None  # no GPU: nothing to set
    assert device_for_worker("master", visible) is None
    assert device_for_worker("gw1", ["GPU-aa", "MIG-bb"]) == "MIG-bb"  # UUIDs kept as written


def test_visible_devices() -> None:
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "3, 5"}, nvml_count=8) == ["3", "5"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}, nvml_count=8) == []
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "-1"}, nvml_count=8) == []
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2,-1,4"}, nvml_count=8) == ["2"]
    assert visible_devices({}, nvml_count=3) == ["0", "1", "2"]  # unset: what NVML counts
    assert visible_devices({}, nvml_count=0) == []


def test_more_workers_than_gpus_is_a_warning() -> None:
    assert oversubscribed_line(2, ["3", "5"]) is None
    assert oversubscribed_line(4, []) is None
    assert oversubscribed_line(3, ["3", "5"]) == (
        "pytest-llmperf: 3 xdist workers share 2 GPU(s) (3,5): workers on one GPU slow each "
        "other down")
