"""Marker validation and threshold evaluation (pure logic)."""

from __future__ import annotations

import pytest

from pytest_llmperf.verdict.thresholds import (
    VALID_KEYWORDS,
    MarkerError,
    evaluate,
    failure_message,
    validate_marker,
)


def test_every_design_threshold_name_is_accepted() -> None:
    names = [f"{m}_{s}_ms" for m in ("ttft", "tpot", "itl", "e2e")
             for s in ("p50", "p90", "p95", "p99", "mean", "max")]
    names += ["min_tps", "min_rps", "min_goodput", "max_rss_mb", "max_gpu_mem_mb",
              "min_accuracy", "max_accuracy_drop", "max_regression_pct"]
    kwargs = {n: 0.5 for n in names}
    assert validate_marker((), kwargs) == kwargs


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ttft_p96_ms": 1}, "unknown @llmperf keyword(s) ttft_p96_ms"),
        ({"ttft_p95_ms": -1}, "is negative"),
        ({"min_tps": "fast"}, "is not a number"),
        ({"min_tps": True}, "is not a number"),
        ({"min_tps": float("nan")}, "not a finite number"),
        ({"min_goodput": 1.5}, "between 0 and 1"),
        ({"repeats": 0}, "repeats=0"),
    ],
)
def test_bad_marker_arguments_are_named(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(MarkerError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        validate_marker((), kwargs)


def test_unknown_keyword_lists_the_valid_ones() -> None:
    with pytest.raises(MarkerError) as info:
        validate_marker((), {"latency": 1})
    for name in ("ttft_p95_ms", "min_tps", "max_regression_pct"):
        assert name in str(info.value)
    assert "ttft_p95_ms" in VALID_KEYWORDS


def test_positional_arguments_are_rejected() -> None:
    with pytest.raises(MarkerError, match="keyword arguments only"):
        validate_marker((500,), {})


def test_evaluate_reports_every_failure_with_measured_and_limit() -> None:
    summary = {"ttft_p95_ms": 812.0, "output_tps": 1500.0, "errors": 0, "goodput": None}
    checks = evaluate({"ttft_p95_ms": 500, "min_tps": 2000, "max_errors": 0,
                       "min_goodput": 0.9, "max_regression_pct": 5}, summary)
    by_name = {c.name: c for c in checks}
    assert set(by_name) == {"ttft_p95_ms", "min_tps", "max_errors", "min_goodput"}
    assert not by_name["ttft_p95_ms"].passed and by_name["ttft_p95_ms"].measured == 812.0
    assert not by_name["min_tps"].passed
    assert by_name["max_errors"].passed
    assert not by_name["min_goodput"].passed  # not measured is a failure, never a pass
    msg = failure_message(checks)
    assert "ttft_p95_ms" in msg and "812" in msg and "500" in msg
    assert "min_tps" in msg and "1500" in msg and "2000" in msg
    assert "not measured" in msg
    assert "max_errors" not in msg


def test_limits_are_inclusive() -> None:
    checks = evaluate({"ttft_p50_ms": 100, "min_tps": 10},
                      {"ttft_p50_ms": 100.0, "output_tps": 10.0})
    assert all(c.passed for c in checks)
    assert failure_message(checks) == ""
