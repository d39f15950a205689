"""``changepoints.detect``: change points over every run of every commit of a history."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_llmperf.verdict import changepoints
from pytest_llmperf.verdict.changepoints import ChangePoint, Detection, detect


def history(levels: list[float], *, runs: int = 2, cv: float = 0.03, seed: int = 0,
            commit_cv: float = 0.0) -> list[list[float]]:
    """One list of run values per commit: each commit's level times log-normal noise, with
    an optional noise shared by the runs of one commit (the machine's state that day)."""
    rng = np.random.default_rng(seed)
    out = []
    for level in levels:
        shared = rng.normal(0, commit_cv)
        out.append([float(level * math.exp(shared + rng.normal(0, cv))) for _ in range(runs)])
    return out


def test_a_step_is_found_at_its_commit_with_an_interval_around_its_size() -> None:
    det = detect(history([100.0] * 15 + [115.0] * 8))
    assert det.status == "ok"
    assert [c.index for c in det.change_points] == [15]
    cp = det.change_points[0]
    assert cp.change_pct == pytest.approx(15, abs=3)
    assert cp.ci_low_pct < 15 < cp.ci_high_pct
    assert cp.ci_low_pct > 5  # clearly a change: the whole interval is above the minimum
    assert cp.ci_high_pct - cp.ci_low_pct < 10
    assert cp.before == pytest.approx(100, rel=0.03) and cp.after == pytest.approx(115, rel=0.03)
    assert cp.change_pct == pytest.approx((cp.after / cp.before - 1) * 100)
    assert cp.p_value < 0.01


def test_before_and_after_are_the_runs_geometric_means_of_the_whole_segments() -> None:
    series = history([100.0] * 12 + [130.0] * 10, seed=3)
    series[2] = series[2] + [101.0, 99.0, 100.5]  # commits may have different numbers of runs
    [cp] = detect(series).change_points
    before = [v for runs in series[:12] for v in runs]
    after = [v for runs in series[12:] for v in runs]
    assert cp.before == pytest.approx(math.exp(np.mean(np.log(before))))
    assert cp.after == pytest.approx(math.exp(np.mean(np.log(after))))


def test_higher_is_better_metrics_are_handled_the_same() -> None:
    """The detector is direction-free: a throughput that falls is a change point at the same
    commit, with the change negative; which direction is a regression is the caller's call."""
    latency = history([100.0] * 15 + [112.0] * 6, seed=4)
    throughput = [[1e4 / v for v in runs] for runs in latency]
    up, down = detect(latency).change_points, detect(throughput).change_points
    assert [c.index for c in up] == [c.index for c in down] == [15]
    assert up[0].change_pct > 5 and down[0].change_pct < -5
    assert (1 + down[0].change_pct / 100) == pytest.approx(1 / (1 + up[0].change_pct / 100))
    assert up[0].p_value == down[0].p_value


def test_several_steps_each_with_the_neighbouring_segments() -> None:
    det = detect(history([100.0] * 12 + [85.0] * 12 + [120.0] * 12, seed=5))
    assert [c.index for c in det.change_points] == [12, 24]
    first, second = det.change_points
    assert first.change_pct == pytest.approx(-15, abs=3)
    assert second.before == first.after  # the middle segment is shared
    assert second.change_pct == pytest.approx(100 * (120 / 85 - 1), abs=4)


@pytest.mark.parametrize("where", [0, 5, 10, 16, 17, 18, 19])
def test_a_single_spike_is_not_a_change_point(where: int) -> None:
    levels = [100.0] * 20
    levels[where] = 140.0
    assert detect(history(levels, seed=where)).change_points == []


def test_a_shift_must_hold_for_three_commits() -> None:
    base = [100.0] * 20
    assert detect(history(base + [130.0] * 2, seed=6)).change_points == []
    det = detect(history(base + [130.0] * 3, seed=6))
    assert [c.index for c in det.change_points] == [20]


def test_too_short_series_say_so() -> None:
    need = changepoints.min_commits(0.01)
    assert need == 10
    det = detect(history([100.0] * 4 + [200.0] * 5))
    assert det == Detection([], "too short", "9 commits; needs 10 to decide at alpha 0.01")
    assert detect([]).status == "too short"
    assert detect([[100.0]]).note.startswith("1 commit;")
    # One more commit and the same doubling is decided.
    det = detect(history([100.0] * 5 + [200.0] * 5))
    assert det.status == "ok" and [c.index for c in det.change_points] == [5]
    # A looser alpha decides sooner.
    assert changepoints.min_commits(0.05) < need


def test_ok_note_says_when_the_newest_commits_cannot_show_yet() -> None:
    assert "newest 3 commits cannot show yet" in detect(history([100.0] * 10)).note
    assert "cannot show" not in detect(history([100.0] * 30)).note


def test_no_false_alarm_on_flat_noisy_series() -> None:
    # Seeded flat histories with real-sized noise: 8% per run, 3% shared by a commit's runs,
    # and heavy tails (an occasional 1.5x stall).
    flagged = 0
    for seed in range(40):
        series = history([100.0] * 25, cv=0.08, commit_cv=0.03, seed=100 + seed)
        rng = np.random.default_rng(seed)
        for runs in series:
            if rng.random() < 0.05:
                runs[0] *= 1.5
        flagged += bool(detect(series).change_points)
    assert flagged == 0


def test_a_significant_shift_below_the_minimum_is_not_reported() -> None:
    series = history([100.0] * 15 + [103.0] * 15, cv=0.002, seed=7)
    assert detect(series).change_points == []
    [cp] = detect(series, min_change_pct=1.0).change_points
    assert cp.index == 15 and cp.change_pct == pytest.approx(3, abs=0.5)


def test_deterministic_for_a_seed() -> None:
    series = history([100.0] * 15 + [108.0] * 6, cv=0.04, seed=8)
    assert detect(series) == detect(series)
    assert detect(series, seed=1).change_points[0].index == detect(series).change_points[0].index


def test_identical_values_and_an_exact_step() -> None:
    assert detect([[100.0]] * 20).change_points == []
    [cp] = detect([[100.0]] * 10 + [[150.0]] * 10).change_points
    assert cp.index == 10 and cp.change_pct == pytest.approx(50)
    assert cp.ci_low_pct == pytest.approx(50) and cp.ci_high_pct == pytest.approx(50)


@pytest.mark.parametrize("bad", [[[100.0], []], [[100.0], [0.0]], [[100.0], [-1.0]],
                                 [[100.0], [float("nan")]], [[100.0], [float("inf")]]])
def test_invalid_runs_are_rejected(bad: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="commit 1"):
        detect(bad)


def test_to_dict_is_plain() -> None:
    [cp] = detect([[100.0]] * 10 + [[150.0]] * 10).change_points
    d = cp.to_dict()
    assert set(d) == {"index", "before", "after", "change_pct", "ci_low_pct", "ci_high_pct",
                      "p_value"}
    assert ChangePoint(**d) == cp


def test_the_earlier_detector_reports_intervals_too() -> None:
    values = [v for runs in history([100.0] * 15 + [120.0] * 15, runs=1, seed=9) for v in runs]
    [cp] = changepoints.change_points(values)
    assert cp.index == 15 and cp.ci_low_pct < cp.change_pct < cp.ci_high_pct


def stalled(levels: list[float], *, seed: int, share: float = 0.05,
            slow: float = 1.6) -> list[list[float]]:
    """Two runs a commit, 3% noise, and a share of the runs made on a loaded machine: ``slow``
    times slower (the recorded pools have such runs, up to 2x)."""
    series = history(levels, cv=0.03, seed=seed)
    rng = np.random.default_rng(1000 + seed)
    return [[v * slow if rng.random() < share else v for v in runs] for runs in series]


def test_a_step_is_found_through_runs_made_on_a_loaded_machine() -> None:
    """Stalled runs (5% of them, 1.6x) are clipped before the scan, so they neither widen the
    noise enough to hide a 10% step five commits old nor move it; unclipped, the pooled t of
    the commit means found 6 of these 30 steps."""
    found = [detect(stalled([100.0] * 15 + [110.0] * 5, seed=s)).change_points
             for s in range(30)]
    within = sum(any(abs(c.index - 15) <= 1 for c in cps) for cps in found)
    assert within >= 24
    for cps in found:  # nothing else is reported, and the size is the step's (stalls included)
        assert all(abs(c.index - 15) <= 1 for c in cps)
        assert all(5 < c.change_pct < 20 for c in cps)


def test_stalls_on_a_flat_history_are_not_change_points() -> None:
    flagged = [s for s in range(30) if detect(stalled([100.0] * 20, seed=s)).change_points]
    assert flagged == []


def test_a_step_in_identical_runs_is_found_when_most_runs_are_equal() -> None:
    """More than half the runs equal: their median absolute deviation is 0, and the clipping
    falls back to the runs' standard deviation rather than flattening the step away."""
    [cp] = detect([[100.0]] * 15 + [[110.0]] * 5).change_points
    assert cp.index == 15 and cp.change_pct == pytest.approx(10)
