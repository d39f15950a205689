"""The regression decision on synthetic data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_llmperf.metric_table import DEFAULT_GATED
from pytest_llmperf.verdict import ab, changepoints, paired, stats


def job(rng: np.random.Generator, level: float, runs: int, job_sd: float = 0.03,
        run_sd: float = 0.02) -> list[float]:
    """One job's runs: a job-wide offset (machine state) plus run-to-run noise, log-normal."""
    offset = rng.normal(0.0, job_sd)
    return list(level * np.exp(offset + rng.normal(0.0, run_sd, size=runs)))


def test_aa_with_history_does_not_alarm_and_is_calibrated() -> None:
    """Same commit on both sides: the rate of 'significant' stays near alpha, alarms ~ none."""
    rng = np.random.default_rng(1)
    trials = 2000
    significant = alarms = 0
    for _ in range(trials):
        history = [job(rng, 100.0, 3) for _ in range(8)]
        base, cur = history[0], job(rng, 100.0, 3)
        # Tolerance 0: only the significance test decides, so its error rate shows.
        v0 = stats.compare_stored("ttft_p50_ms", base, cur, history, tolerance_pct=0.0)
        significant += v0.verdict == "regression"
        v = stats.compare_stored("ttft_p50_ms", base, cur, history)
        alarms += v.verdict == "regression"
        assert v.method == "history"
    # Nominal 1%: the prediction-interval variance includes the job-to-job part.
    assert significant / trials <= 0.02
    assert alarms / trials <= 0.01


def test_repeats_only_quiet_when_jobs_agree() -> None:
    """Without history the variance comes from the repeats; fine when jobs barely differ."""
    rng = np.random.default_rng(2)
    trials = 2000
    alarms = 0
    for _ in range(trials):
        base, cur = job(rng, 50.0, 3, job_sd=0.01), job(rng, 50.0, 3, job_sd=0.01)
        v = stats.compare_stored("tpot_p50_ms", base, cur)
        assert v.method == "repeats"
        alarms += v.verdict == "regression"
    assert alarms / trials <= 0.01


def test_history_sees_job_noise_that_repeats_cannot() -> None:
    """Jobs differ by ~3%: repeats alone cry wolf; the history-based variance does not."""
    rng = np.random.default_rng(9)
    trials = 2000
    repeats_only = with_history = 0
    for _ in range(trials):
        history = [job(rng, 50.0, 3) for _ in range(6)]
        cur = job(rng, 50.0, 3)
        repeats_only += stats.compare_stored("tpot_p50_ms", history[0], cur
                                             ).verdict == "regression"
        with_history += stats.compare_stored("tpot_p50_ms", history[0], cur, history
                                             ).verdict == "regression"
    assert repeats_only / trials > 0.05
    assert with_history / trials <= 0.01


@pytest.mark.parametrize("metric,factor", [("ttft_p50_ms", 1.3), ("tpot_p50_ms", 1.3),
                                           ("output_tps", 1 / 1.3)])
def test_clear_30pct_shift_alarms(metric: str, factor: float) -> None:
    rng = np.random.default_rng(3)
    detected = 0
    for _ in range(200):
        history = [job(rng, 100.0, 3, job_sd=0.02) for _ in range(10)]
        cur = job(rng, 100.0 * factor, 3, job_sd=0.02)
        v = stats.compare_stored(metric, history[0], cur, history)
        detected += v.verdict == "regression"
    assert detected == 200


def test_direction_faster_is_an_improvement_not_a_regression() -> None:
    base, cur = [100.0, 101.0, 99.0], [70.0, 71.0, 69.0]
    v = stats.compare_stored("ttft_p50_ms", base, cur)
    assert v.verdict == "improvement"
    assert v.change_pct == pytest.approx(-30.0, abs=0.5)
    assert v.ci_low_pct < v.change_pct < v.ci_high_pct
    v = stats.compare_stored("output_tps", base, cur)  # fewer tokens/s: worse
    assert v.verdict == "regression"
    assert v.worse_pct == pytest.approx(30.0, abs=0.5)


def test_significant_but_within_tolerance_is_ok() -> None:
    base = [100.0, 100.1, 99.9, 100.0]
    cur = [103.0, 103.1, 102.9, 103.0]  # +3%, very significant, below the 5% tolerance
    v = stats.compare_stored("ttft_p50_ms", base, cur)
    assert v.p_value is not None and v.p_value < 1e-6
    assert v.verdict == "ok"
    assert stats.compare_stored("ttft_p50_ms", base, cur, tolerance_pct=2).verdict == "regression"


def test_large_but_noisy_change_is_not_flagged() -> None:
    base = [100.0, 60.0, 160.0]
    cur = [120.0, 70.0, 200.0]  # +~18%, runs all over the place
    v = stats.compare_stored("ttft_p50_ms", base, cur)
    assert v.change_pct is not None and v.change_pct > 5
    assert v.verdict == "ok"


def test_one_run_each_without_history_is_inconclusive() -> None:
    v = stats.compare_stored("ttft_p50_ms", [100.0], [200.0])
    assert v.verdict == "inconclusive"
    assert v.change_pct == pytest.approx(100.0)
    assert "repeats" in v.note
    # With history, a single run per side is decided.
    rng = np.random.default_rng(4)
    history = [job(rng, 100.0, 1) for _ in range(6)]
    v = stats.compare_stored("ttft_p50_ms", history[0], [200.0], history)
    assert v.method == "history" and v.verdict == "regression"


def test_missing_values_are_inconclusive() -> None:
    v = stats.compare_stored("tpot_p50_ms", [None], [10.0, 11.0])
    assert v.verdict == "inconclusive" and "baseline" in v.note


def test_history_variance_widens_the_interval() -> None:
    base, cur = [100.0, 100.5, 99.5], [108.0, 108.5, 107.5]
    tight = stats.compare_stored("ttft_p50_ms", base, cur)
    history = [[100.0], [115.0], [92.0], [108.0], [96.0], [104.0]]  # commits vary ~8%
    wide = stats.compare_stored("ttft_p50_ms", base, cur, history)
    assert tight.verdict == "regression"
    assert wide.verdict == "ok"
    assert wide.ci_high_pct - wide.ci_low_pct > 3 * (tight.ci_high_pct - tight.ci_low_pct)


def test_paired_aa_false_alarm_rate_and_shift_detection() -> None:
    rng = np.random.default_rng(5)
    trials = 3000
    alarms = detected = 0
    for _ in range(trials):
        drift = rng.normal(0, 0.1, size=8)  # the machine drifts; pairs share it
        a = 100 * np.exp(drift + rng.normal(0, 0.02, 8))
        b = 100 * np.exp(drift + rng.normal(0, 0.02, 8))
        alarms += paired.compare_paired("ttft_p50_ms", list(a), list(b), tolerance_pct=0
                                       ).verdict == "regression"
        detected += paired.compare_paired("ttft_p50_ms", list(a), list(b * 1.3)
                                         ).verdict == "regression"
    assert alarms / trials <= 0.02
    assert detected == trials


def _fake_runs(rng: np.random.Generator, slowdown: float, sd: float):  # type: ignore[no-untyped-def]
    def run_a() -> dict[str, float]:
        x = math.exp(rng.normal(0, sd))
        return {"ttft_p50_ms": 100 * x, "tpot_p50_ms": 20 * x, "output_tps": 50 / x}

    def run_b() -> dict[str, float]:
        x = math.exp(rng.normal(0, sd)) * (1 + slowdown)
        return {"ttft_p50_ms": 100 * x, "tpot_p50_ms": 20 * x, "output_tps": 50 / x}

    return run_a, run_b


def test_two_stage_ab_stops_early_when_clear_and_extends_when_not() -> None:
    rng = np.random.default_rng(6)
    # Five pairs can never flag (the exact test's smallest p-value is 1/32): a regression,
    # however plain, is called on all ten.
    v = ab.run_ab(*_fake_runs(rng, 0.5, 0.01))
    assert v.verdict == "regression" and v.pairs == 10 and v.stages == 2
    assert not v.passed and "ttft_p50_ms" in v.failure_message()
    # A first look of ten pairs can (2**-10 is below the first look's alpha of 0.001).
    v = ab.run_ab(*_fake_runs(rng, 0.5, 0.01), stage1=10, stage2=10)
    assert v.verdict == "regression" and v.pairs == 10 and v.stages == 1
    v = ab.run_ab(*_fake_runs(rng, 0.0, 0.001))
    assert v.verdict == "ok" and v.pairs == 5  # every interval well inside the tolerance
    v = ab.run_ab(*_fake_runs(rng, 0.0, 0.15))
    assert v.pairs == 10 and v.stages == 2  # too noisy to tell after 5 pairs: more pairs
    assert {m.metric for m in v.metrics if m.gated} == set(DEFAULT_GATED)


def test_two_stage_ab_error_rates() -> None:
    """Over both looks the false-alarm rate stays below alpha; a 10% slowdown is found."""
    rng = np.random.default_rng(7)
    trials = 1500
    alarms = sum(
        ab.run_ab(*_fake_runs(rng, 0.0, 0.03), {"max_regression_pct": 0}).verdict
        == "regression" for _ in range(trials)
    )
    assert alarms / trials <= 0.015
    found = sum(ab.run_ab(*_fake_runs(rng, 0.10, 0.03)).verdict == "regression"
                for _ in range(300))
    assert found / 300 >= 0.9


def test_ab_rejects_unknown_gate_metric() -> None:
    from pytest_llmperf.verdict.gate import GateConfigError

    with pytest.raises(GateConfigError, match="ttft_p50"):
        ab.run_ab(lambda: {}, lambda: {}, {"gate": ["ttft_p50"]})


def test_change_points_find_the_step_and_ignore_noise() -> None:
    rng = np.random.default_rng(8)
    flat = list(100 * np.exp(rng.normal(0, 0.02, 30)))
    assert changepoints.change_points(flat) == []
    step = list(100 * np.exp(rng.normal(0, 0.02, 15))) + list(
        120 * np.exp(rng.normal(0, 0.02, 15)))
    cps = changepoints.change_points(step)
    assert len(cps) == 1
    assert cps[0].index == 15
    assert cps[0].change_pct == pytest.approx(20, abs=4)
    # A significant but tiny shift stays below the minimum magnitude.
    small = [100.0] * 15 + [102.0] * 15
    noisy = list(np.array(small) * np.exp(rng.normal(0, 0.001, 30)))
    assert changepoints.change_points(noisy) == []


def test_detect_agrees_on_the_same_step_with_runs_per_commit() -> None:
    """``detect`` (the nightly's detector) on the same kind of history, all runs per commit."""
    rng = np.random.default_rng(8)
    step = [list(100 * np.exp(rng.normal(0, 0.02, 2))) for _ in range(15)] + [
        list(120 * np.exp(rng.normal(0, 0.02, 2))) for _ in range(15)]
    det = changepoints.detect(step)
    assert det.status == "ok" and [c.index for c in det.change_points] == [15]
    assert det.change_points[0].change_pct == pytest.approx(20, abs=4)
    small = [[v] for v in 100 * np.r_[np.ones(15), 1.02 * np.ones(15)]]
    assert changepoints.detect(small).change_points == []


def test_signflip_p_values_are_exact() -> None:
    # Every log-ratio positive: only the observed sign vector is as extreme, p = 2**-n.
    for n in (3, 5, 10):
        [p], [q] = paired.signflip_pvalues([np.linspace(0.01, 0.05, n)])
        assert p == pytest.approx(2.0**-n)
        assert q == 1.0
    # One small negative ratio among ten: the vectors flipping only smaller magnitudes
    # are as extreme (the observed, and flipping the 0.01 back), p = 2/1024.
    w = np.array([0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.13, -0.01])
    [p], _ = paired.signflip_pvalues([w])
    assert p == pytest.approx(2 / 1024)
    # Enumerated for up to 16 pairs, sampled beyond (the observed vector first).
    assert paired.sign_vectors(4).shape == (16, 4)
    rows = paired.sign_vectors(20, samples=500)
    assert rows.shape == (500, 20) and (rows[0] == 1).all()


def test_five_pairs_can_never_flag_at_alpha_001() -> None:
    v = paired.compare_paired("tpot_p50_ms", [10.0] * 5, [20.0] * 5)
    assert v.change_pct == pytest.approx(100.0)
    # It could never have failed, and its interval does not rule out +100%: not "ok".
    assert v.p_value == pytest.approx(1 / 32) and v.verdict == "inconclusive"
    assert "5 of 5 pairs usable" in v.note
    v = paired.compare_paired("tpot_p50_ms", [10.0] * 7, [20.0] * 7)
    assert v.p_value == pytest.approx(1 / 128) and v.verdict == "regression"


def test_joint_test_costs_nothing_for_copies_and_adjusts_for_independent_metrics() -> None:
    rng = np.random.default_rng(11)
    w = rng.normal(0.03, 0.05, 12)
    [alone], _ = paired.signflip_pvalues([w])
    p_copy, _ = paired.signflip_pvalues([w, w.copy()])
    assert p_copy == pytest.approx([alone, alone])  # tokens/s mirrors TPOT: no penalty
    other = rng.normal(0.0, 0.05, 12)
    p_two, _ = paired.signflip_pvalues([w, other])
    assert alone < p_two[0] <= 2 * alone + 1e-12  # between no correction and Bonferroni


def test_paired_gate_holds_alpha_under_heavy_tailed_skewed_noise() -> None:
    """A/A runs whose noise is skewed with rare 3x stalls: the log-ratios of exchangeable A
    and B are symmetric, and the exact test keeps its false alarms at or below alpha where
    the t-test on the same pairs does not have to."""
    rng = np.random.default_rng(12)
    trials, n, alpha = 3000, 10, 0.05
    alarms = 0
    for _ in range(trials):
        runs = np.exp(rng.gamma(0.5, 0.1, size=(2, n)))  # skewed
        runs *= np.where(rng.random((2, n)) < 0.1, 3.0, 1.0)  # rare stalls
        v = paired.compare_paired("ttft_p50_ms", list(runs[0]), list(runs[1]), alpha=alpha,
                                 tolerance_pct=0)
        alarms += v.verdict == "regression"
    rate = alarms / trials
    # Binomial: at the nominal 5%, 3000 trials stay below 6.3% with probability 0.999.
    assert rate <= 0.063
    assert rate >= 0.02  # and the test is not dead: it does reject at about its level


def test_paired_interval_and_verdict_report_the_pairs() -> None:
    a = [100.0, 101.0, 99.0, 100.5, 100.2, 99.8, 100.1, 99.9]
    b = [x * 1.2 for x in a]
    v = paired.compare_paired("ttft_p50_ms", a, b)
    assert v.verdict == "regression" and v.method == "paired"
    assert v.change_pct == pytest.approx(20.0)
    assert v.ci_low_pct == pytest.approx(20.0, abs=1e-6)  # no noise in the ratios
    assert "8 interleaved pairs; sign-flip test" in v.note
    # tokens/s: lower is worse
    v = paired.compare_paired("output_tps", a, [x / 1.2 for x in a])
    assert v.verdict == "regression" and v.worse_pct == pytest.approx(100 / 6)
