"""report/exports.py against a hand-made results document: the numbers each format carries."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.report.exports import bencher, github_benchmark, prometheus_registry


def doc() -> dict[str, Any]:
    def run(ttft: float, tps: float) -> dict[str, Any]:
        return {"summary": {"ttft_p50_ms": ttft, "output_tps": tps, "requests": 8,
                            "errors": 0, "tpot_p50_ms": None}}
    return {"provenance": {"commit": "a" * 40},
            "tests": [{"nodeid": "t.py::chat", "comparison": {"profile_id": "llama_cpp-x-1"},
                       "runs": [run(10.0, 100.0), run(14.0, 90.0), run(12.0, 95.0)]},
                      {"nodeid": "t.py::one", "runs": [run(5.0, 50.0)]}]}


def test_bencher_metric_format_has_the_median_and_the_runs_range() -> None:
    out = bencher(doc())
    assert out["t.py::chat"]["ttft-p50-ms"] == {"value": 12.0, "lower_value": 10.0,
                                                "upper_value": 14.0}
    assert out["t.py::chat"]["output-tps"]["value"] == 95.0
    assert out["t.py::one"]["ttft-p50-ms"] == {"value": 5.0}  # one run: no range
    # Counts without a direction (requests) and absent figures (tpot None) are left out.
    assert "requests" not in out["t.py::chat"] and "tpot-p50-ms" not in out["t.py::chat"]
    assert "errors" in out["t.py::chat"]  # fewer is better: a figure


def test_github_benchmark_splits_smaller_and_bigger_is_better() -> None:
    smaller = {e["name"]: e for e in github_benchmark(doc(), bigger=False)}
    bigger = {e["name"]: e for e in github_benchmark(doc(), bigger=True)}
    assert smaller["t.py::chat ttft_p50_ms"] == {
        "name": "t.py::chat ttft_p50_ms", "unit": "ms", "value": 12.0, "range": "± 2",
        "extra": "median of 3 run(s); commit aaaaaaaaaaaa"}
    assert bigger["t.py::chat output_tps"]["value"] == 95.0
    assert bigger["t.py::chat output_tps"]["unit"] == "tok/s"
    assert not set(smaller) & set(bigger)


def test_prometheus_gauges_carry_test_and_profile() -> None:
    registry = prometheus_registry(doc())
    assert registry.get_sample_value(
        "llmperf_ttft_p50_ms", {"test": "t.py::chat", "profile": "llama_cpp-x-1"}) == 12.0
    assert registry.get_sample_value(
        "llmperf_output_tps", {"test": "t.py::one", "profile": ""}) == pytest.approx(50.0)
