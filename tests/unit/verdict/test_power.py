"""Power with every verdict (issue 25): the MDE against a seeded simulation of the real
decisions, blind passes, the repeats or pairs they need, and calibrate's analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_llmperf.commits import calibrate
from pytest_llmperf.verdict import ab, gate, paired, power, stats

M = "tpot_p50_ms"


def _detect_rate(decide, slow_pct: float, trials: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return sum(decide(rng, math.log1p(slow_pct / 100.0)) for _ in range(trials)) / trials


def _point80(decide, guess: float, trials: int = 160, seed: int = 7) -> float:  # type: ignore[no-untyped-def]
    """The slowdown detected 80% of the time, by bisection on [0, 3 guess]."""
    lo, hi = 0.0, 3.0 * guess
    r_lo, r_hi = 0.0, 1.0
    for step in range(7):
        mid = (lo + hi) / 2.0
        r = _detect_rate(decide, mid, trials, seed + step)
        if r >= 0.8:
            hi, r_hi = mid, r
        else:
            lo, r_lo = mid, r
    return lo + (0.8 - r_lo) / max(r_hi - r_lo, 1e-9) * (hi - lo)


def test_stored_gate_mde_matches_the_simulated_80_percent_point() -> None:
    """Synthetic runs at CV 10%, 5 repeats a side, through compare_stored: the slowdown it
    flags 80% of the time is within 30% of the MDE predicted from the true noise, and of the
    MDE the verdicts report from the noise they measured."""
    cv, n, alpha = 0.10, 5, 0.01 / 3
    reported: list[float] = []

    def decide(rng: np.random.Generator, shift: float) -> bool:
        base = list(100.0 * np.exp(rng.normal(0.0, cv, n)))
        cur = list(100.0 * np.exp(shift + rng.normal(0.0, cv, n)))
        v = stats.compare_stored(M, base, cur, alpha=alpha, tolerance_pct=0.0)
        if v.mde_pct is not None:
            reported.append(v.mde_pct)
        return v.verdict == "regression"

    predicted = power.mde_pct(M, cv * math.sqrt(2.0 / n), 2.0 * (n - 1), alpha)
    measured = _point80(decide, predicted)
    assert 0.7 < measured / predicted < 1.3, (measured, predicted)
    assert 0.7 < float(np.median(reported)) / predicted < 1.3


def test_paired_gate_mde_matches_the_simulated_80_percent_point() -> None:
    sd, n, alpha = 0.10, 10, 0.01

    def decide(rng: np.random.Generator, shift: float) -> bool:
        a = list(100.0 * np.exp(rng.normal(0.0, 0.05, n)))
        b = [x * math.exp(shift + e) for x, e in zip(a, rng.normal(0.0, sd, n), strict=True)]
        v = paired.compare_paired_set({M: a}, {M: b}, gated=[M], alpha=alpha,
                                      tolerance_pct=0.0)[0]
        return v.verdict == "regression"

    predicted = power.mde_pct(M, sd / math.sqrt(n), n - 1.0, alpha)
    measured = _point80(decide, predicted)
    assert 0.7 < measured / predicted < 1.3, (measured, predicted)


def test_the_formula_and_its_direction() -> None:
    # Close to the textbook (t_a + t_0.8) * se at 9 df, above it at 2 df.
    se = 0.03
    approx = power.mde_log_approx(se, 9.0, 0.01)
    assert approx == pytest.approx((2.821 + 0.883) * se, rel=0.01)
    assert power.mde_log(se, 9.0, 0.01) == pytest.approx(approx, rel=0.03)
    assert power.mde_log(se, 2.0, 0.01) > 1.1 * power.mde_log_approx(se, 2.0, 0.01)
    # A latency's MDE is a rise, a throughput's a drop of the same log size.
    x = 0.2
    assert power.to_pct("ttft_p50_ms", x) == pytest.approx(math.expm1(x) * 100)
    assert power.to_pct("output_tps", x) == pytest.approx((1 - math.exp(-x)) * 100)
    for metric in ("ttft_p50_ms", "output_tps"):
        assert power.to_pct(metric, power.tolerance_log(metric, 7.0)) == pytest.approx(7.0)


def test_a_noisy_pass_is_blind_and_says_how_many_repeats_it_needs() -> None:
    base = [100.0, 112.0]
    cur = [104.0, 95.0]  # CV ~8%, 2 repeats a side: df 2
    v = stats.compare_stored(M, base, cur, tolerance_pct=5.0)
    assert v.verdict == "ok" and v.blind and v.mde_pct is not None and v.mde_pct > 5.0
    assert v.needs_unit == "repeats" and v.needs is not None and v.needs > 2
    text = v.describe()
    assert f"MDE {v.mde_pct:.1f}%" in text
    assert f"blind: could only see changes of {v.mde_pct:.1f}% or more" in text
    assert f"needs about {v.needs} repeats" in text
    # The repeats it names are enough, one fewer is not (the noise as measured).
    var_run = stats.pooled_within([np.log(base), np.log(cur)])
    assert var_run is not None
    s2 = var_run[0]

    def mde_at(n: int) -> float:
        return power.mde_pct(M, math.sqrt(2 * s2 / n), 2.0 * (n - 1), v.alpha or 0.01)

    assert mde_at(v.needs) <= 5.0 < mde_at(v.needs - 1)
    # A quiet pass is not blind; an ungated metric never is.
    quiet = stats.compare_stored(M, [100.0, 100.2, 99.9, 100.1, 100.0],
                                 [100.1, 99.9, 100.0, 100.2, 99.8], tolerance_pct=5.0)
    assert quiet.verdict == "ok" and not quiet.blind and quiet.mde_pct is not None
    assert quiet.mde_pct < 5.0 and quiet.needs is None
    watched = stats.compare_stored(M, base, cur, tolerance_pct=5.0, gated=False)
    assert not watched.blind and watched.mde_pct == v.mde_pct


def test_history_noise_that_repeats_cannot_shrink_needs_no_number() -> None:
    rng = np.random.default_rng(3)
    # Commits differ by 10% (job-to-job), runs within a commit by 0.5%.
    hist = [list(100 * math.exp(rng.normal(0, 0.10)) * np.exp(rng.normal(0, 0.005, 2)))
            for _ in range(6)]
    v = stats.compare_stored(M, hist[0], [100.0, 100.3], hist, tolerance_pct=5.0)
    assert v.method == "history" and v.verdict == "ok"
    assert v.blind and v.needs is None
    assert "no number of repeats is enough" in v.describe()


def test_paired_needs_pairs_and_the_ab_design_power() -> None:
    rng = np.random.default_rng(5)
    a = list(100 * np.exp(rng.normal(0, 0.02, 10)))
    b = [x * math.exp(e) for x, e in zip(a, rng.normal(0, 0.12, 10), strict=True)]
    [v] = paired.compare_paired_set({M: a}, {M: b}, gated=[M], alpha=0.01)
    assert v.verdict == "ok"
    assert v.blind and v.needs_unit == "pairs" and v.needs is not None and v.needs > 10
    r = np.log(np.asarray(b) / np.asarray(a))
    sd = float(r.std(ddof=1))
    assert power.mde_pct(M, sd / math.sqrt(v.needs), v.needs - 1.0, 0.01) <= 5.0
    assert power.mde_pct(M, sd / math.sqrt(v.needs - 1), v.needs - 2.0, 0.01) > 5.0
    assert f"needs about {v.needs} pairs" in v.blind_text()
    # Too few pairs to ever reach alpha: it could not see any change.
    [few] = paired.compare_paired_set({M: a[:4]}, {M: b[:4]}, gated=[M], alpha=0.01)
    assert few.mde_pct is None


def test_gate_failure_fails_blind_only_with_inconclusive_fail() -> None:
    v = stats.compare_stored(M, [100.0, 112.0], [104.0, 95.0], tolerance_pct=5.0)
    metrics = [v.to_dict()]
    lines = gate.blind_lines(metrics)
    assert len(lines) == 1 and lines[0].startswith(f"blind: {M} could only see changes")
    comparison = {"status": "compared", "metrics": metrics, "warnings": [], "blind": lines,
                  "baseline_commit": "a" * 40}
    assert gate.failure(comparison, "warn") is None
    found = gate.failure(comparison, "fail")
    assert found is not None and lines[0] in found.text
    # The saved gate verdict stays clean: blind is a warning about power, not a change.
    assert gate.comparison_gate(comparison) == "ok"


def test_ab_verdict_blind_fails_only_when_asked() -> None:
    summaries = iter([{M: 100.0 * math.exp(e)} for e in
                      np.random.default_rng(2).normal(0, 0.15, 40)])
    verdict = ab.run_ab(lambda: next(summaries), lambda: next(summaries), {"gate": [M]},
                        stage1=5, stage2=5)
    [m] = [x for x in verdict.metrics if x.metric == M]
    assert m.mde_pct is not None and m.mde_pct > 5.0  # 10 pairs at the last look's alpha
    assert verdict.verdict == "ok" and verdict.pairs == 10
    assert m.blind and verdict.blind_lines() and "blind:" in verdict.message
    assert verdict.failure("warn") is None
    failed = verdict.failure("fail")
    assert failed is not None and "passed blind" in failed.text
    assert verdict.to_dict()["blind"] == verdict.blind_lines()


def _doc(values: list[list[float]], repeats_marker: dict[str, object]) -> list[dict]:  # type: ignore[type-arg]
    return [{"tests": [{"nodeid": "t.py::test", "thresholds": repeats_marker,
                        "runs": [{"summary": {M: v, "ttft_p50_ms": v, "output_tps": 1000 / v}}
                                 for v in session]}]} for session in values]


def test_calibrate_recovers_the_noise_and_says_what_is_needed() -> None:
    rng = np.random.default_rng(11)
    cv = 0.08
    sessions = [[float(100 * math.exp(rng.normal(0, cv)))] for _ in range(40)]
    result = calibrate.analyse(_doc(sessions, {}), alpha=0.01, pairs=10)
    entry = result["tests"]["t.py::test"]["metrics"][M]
    assert entry["cv_pct"] == pytest.approx(math.expm1(cv) * 100, rel=0.3)
    sd = math.log1p(entry["cv_pct"] / 100)
    # compare: a pair's log-ratio has twice a session's variance; 10 pairs at alpha 0.01.
    want = power.mde_pct(M, math.sqrt(2) * sd / math.sqrt(10), 9.0, 0.01)
    assert entry["compare"]["mde_pct"] == pytest.approx(want)
    assert entry["compare"]["blind"] is (want > 5.0)
    needs = entry["compare"]["needs_pairs"]
    assert power.mde_pct(M, math.sqrt(2) * sd / math.sqrt(needs), needs - 1.0, 0.01) <= 5.0
    assert entry["stored"]["mde_pct"] > entry["compare"]["mde_pct"]  # df 4 and alpha / 3
    # One run per session: all of the spread is taken as run-to-run, so repeats can help.
    assert isinstance(entry["stored"]["needs_repeats"], int)
    assert entry["stored"]["needs_repeats_beyond"] == ""
    table = calibrate.render_table(result)
    assert "t.py::test" in table and M in table and "blind" in table
    # Repeats within sessions split run-to-run from job-to-job noise.
    reps = [[float(100 * math.exp(rng.normal(0, 0.05))) for _ in range(3)] for _ in range(8)]
    entry = calibrate.analyse(_doc(reps, {"repeats": 3}))["tests"]["t.py::test"]["metrics"][M]
    assert entry["run_cv_pct"] == pytest.approx(math.expm1(0.05) * 100, rel=0.4)
    assert entry["stored"]["repeats"] == 3


def test_history_of_single_runs_cannot_say_how_many_repeats() -> None:
    # Six baselines of one run each that straddle a 38% step: a huge spread, not splittable.
    hist: list[list[float | None]] = [[27.6], [27.6], [20.0], [20.1], [19.9], [20.0]]
    v = stats.compare_stored(M, [27.6], [27.5], hist, tolerance_pct=10.0)
    assert v.method == "history" and v.verdict == "ok" and v.blind
    assert v.needs is None and v.needs_unit == power.UNSPLIT
    assert "cannot be split into run-to-run and job-to-job noise" in v.blind_text()
