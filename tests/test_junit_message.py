"""The one line a CI page shows for a failed test: which thresholds or regressions, measured
against limit or baseline."""

from __future__ import annotations

from pytest_llmperf.report.junit import failure_text, headline
from pytest_llmperf.thresholds import evaluate, failure_message

COMPARISON = {
    "baseline_commit": "abc123" * 6 + "abcd", "status": "compared",
    "metrics": [
        {"metric": "tpot_p50_ms", "baseline": 35.1, "current": 41.2, "change_pct": 17.38,
         "verdict": "regression", "gated": True, "tolerance_pct": 5.0},
        {"metric": "ttft_p99_ms", "baseline": 60.0, "current": 90.0, "change_pct": 50.0,
         "verdict": "warn", "gated": False},
        {"metric": "output_tps", "baseline": 100.0, "current": 99.0, "change_pct": -1.0,
         "verdict": "ok", "gated": True},
    ],
}
GATE_MESSAGE = ("1 llmperf regression(s) against baseline abc123abc123 (alpha 0.01):\n"
                "  tpot_p50_ms: measured 41.2, baseline 35.1, change +17.4%, tolerance 5%")


def test_thresholds_first_line_names_each_failure() -> None:
    checks = evaluate({"ttft_p95_ms": 500, "min_tps": 2000, "max_errors": 0},
                      {"ttft_p95_ms": 812.0, "output_tps": 1500.0, "errors": 0})
    message = failure_message(checks)
    lines = message.splitlines()
    assert lines[0] == "llmperf: min_tps 1500 < 2000; ttft_p95_ms 812 > 500"
    assert lines[1] == "2 llmperf threshold(s) failed:"
    assert lines[2:] == ["  min_tps: measured 1500, limit >= 2000",
                         "  ttft_p95_ms: measured 812, limit <= 500"]
    # Alone, it already is the headline: not repeated.
    assert failure_text([message]) == message


def test_not_measured_and_run_labels() -> None:
    checks = evaluate({"min_goodput": 0.9}, {"goodput": None})
    assert failure_message(checks, label="(run 2 of 3)").splitlines()[0] == (
        "llmperf (run 2 of 3): min_goodput not measured (limit >= 0.9)")


def test_thresholds_regressions_and_accuracy_in_one_line() -> None:
    thresholds = failure_message(evaluate({"ttft_p95_ms": 500}, {"ttft_p95_ms": 812.0}))
    text = failure_text(["min_accuracy: measured 0.41, limit >= 0.5", thresholds,
                         GATE_MESSAGE], COMPARISON)
    lines = text.splitlines()
    assert lines[0] == ("llmperf: min_accuracy: measured 0.41, limit >= 0.5; "
                        "ttft_p95_ms 812 > 500; "
                        "regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)")
    assert lines[1:] == ["min_accuracy: measured 0.41, limit >= 0.5", *thresholds.splitlines(),
                         *GATE_MESSAGE.splitlines()]


def test_regression_only() -> None:
    assert headline([GATE_MESSAGE], COMPARISON) == (
        "llmperf: regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)")
    # Without the comparison at hand it still says what kind of failure it is.
    assert headline([GATE_MESSAGE]) == "llmperf: regression against the baseline"
