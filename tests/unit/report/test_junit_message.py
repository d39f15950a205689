"""The one line a CI page shows for a failed test: which thresholds or regressions, measured
against limit or baseline."""

from __future__ import annotations

from pytest_llmperf.report.junit import failure_text, headline
from pytest_llmperf.verdict.failure import Failure
from pytest_llmperf.verdict.gate import regression_clause
from pytest_llmperf.verdict.thresholds import evaluate, failure, failure_message

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
# What gate.failure makes of a comparison like COMPARISON.
GATE_FAILURE = Failure("regression", regression_clause(COMPARISON), GATE_MESSAGE)
ACCURACY = "min_accuracy: measured 0.41, limit >= 0.5"


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
    assert failure_text([failure(checks)]) == message


def test_not_measured_and_run_labels() -> None:
    checks = evaluate({"min_goodput": 0.9}, {"goodput": None})
    assert failure_message(checks, label="(run 2 of 3)").splitlines()[0] == (
        "llmperf (run 2 of 3): min_goodput not measured (limit >= 0.9)")
    found = failure(checks, label="(run 2 of 3)")
    assert found is not None and found.kind == "threshold"
    assert found.text == failure_message(checks, label="(run 2 of 3)")
    assert headline([found]) == "llmperf: run 2 of 3: min_goodput not measured (limit >= 0.9)"
    assert failure(evaluate({"min_goodput": 0.9}, {"goodput": 0.95})) is None


def test_thresholds_regressions_and_accuracy_in_one_line() -> None:
    checks = evaluate({"ttft_p95_ms": 500}, {"ttft_p95_ms": 812.0})
    thresholds = failure_message(checks)
    text = failure_text([Failure("accuracy", ACCURACY, ACCURACY), failure(checks),
                         GATE_FAILURE])
    lines = text.splitlines()
    assert lines[0] == ("llmperf: min_accuracy: measured 0.41, limit >= 0.5; "
                        "ttft_p95_ms 812 > 500; "
                        "regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)")
    assert lines[1:] == ["min_accuracy: measured 0.41, limit >= 0.5", *thresholds.splitlines(),
                         *GATE_MESSAGE.splitlines()]


def test_regression_only() -> None:
    assert headline([GATE_FAILURE]) == (
        "llmperf: regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)")
    # Without the comparison at hand it still says what kind of failure it is.
    assert headline([Failure("regression", regression_clause(None), GATE_MESSAGE)]) == (
        "llmperf: regression against the baseline")


def test_regressions_close_the_headline_and_the_body_keeps_the_order() -> None:
    ab = Failure("ab", "llmperf A/B: B regressed against A (10 interleaved pairs, alpha 0.01)",
                 "llmperf A/B: B regressed against A (10 interleaved pairs, alpha 0.01):\n"
                 "  tpot_p50_ms: measured 41.2, baseline 35.1, change +17.4%")
    text = failure_text([GATE_FAILURE, ab])
    assert text.splitlines()[0] == (
        "llmperf: llmperf A/B: B regressed against A (10 interleaved pairs, alpha 0.01); "
        "regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)")
    assert text.splitlines()[1:] == [*GATE_MESSAGE.splitlines(), *ab.text.splitlines()]
