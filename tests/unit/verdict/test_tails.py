"""Tails done right (issue 25): the samples a percentile rests on, the refusal of a gated tail
on too few, and the quantile test over paired runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_llmperf.verdict import gate, paired, stats, tails
from pytest_llmperf.verdict.thresholds import evaluate, failure


def test_the_rule_five_samples_beyond_the_percentile() -> None:
    assert tails.needed(0.99) == 500 and tails.needed(0.95) == 100 and tails.needed(0.9) == 50
    assert tails.quantile_of("ttft_p99_ms") == 0.99 and tails.quantile_of("output_tps") is None
    assert tails.is_tail("e2e_p95_ms") and not tails.is_tail("ttft_p50_ms")
    assert tails.refusal("ttft_p99_ms", 499) == (
        "not decidable: p99 of 499 requests per run; needs at least 500 requests per run "
        "(5 beyond the percentile)")
    assert tails.refusal("ttft_p99_ms", 500) == ""
    assert tails.refusal("ttft_p50_ms", 3) == ""  # not a tail


def test_samples_per_metric_from_the_summary() -> None:
    s = {"requests": 50, "errors": 2, "tpot_undefined": 3, "output_tokens": 48 * 17}
    assert tails.samples_in(s, "ttft_p99_ms") == 48
    assert tails.samples_in(s, "tpot_p99_ms") == 45
    assert tails.samples_in(s, "itl_p99_ms") == 48 * 16  # one gap fewer than tokens
    assert tails.samples_in({}, "ttft_p99_ms") is None
    assert tails.fewest([s, {"requests": 30}], "e2e_p95_ms") == 30


def _runs(n: int, value: float, requests: int) -> list[dict[str, object]]:
    return [{"summary": {"ttft_p99_ms": value * (1 + 0.01 * i), "ttft_p50_ms": value / 2,
                         "requests": requests, "errors": 0}} for i in range(n)]


def test_a_gated_tail_on_too_few_requests_is_not_decidable() -> None:
    marker = {"gate": ["ttft_p99_ms"]}
    [v] = [m for m in gate.compare_runs(marker, _runs(3, 100.0, 40), _runs(3, 150.0, 40))
           if m.metric == "ttft_p99_ms"]
    # +50% would be a regression on 3 repeats; on 40 requests per run it is refused.
    assert v.verdict == "inconclusive" and v.gated and v.tail_samples == 40
    assert v.note.startswith("not decidable: p99 of 40 requests per run; needs at least 500")
    assert v.needs == 500 and v.needs_unit == "requests per run" and not v.blind
    assert "p99 of 40 requests" in v.describe()
    # Enough requests: compared, and the count is stated.
    [w] = [m for m in gate.compare_runs(marker, _runs(3, 100.0, 600), _runs(3, 150.0, 600))
           if m.metric == "ttft_p99_ms"]
    assert w.verdict == "regression" and w.tail_samples == 600
    assert "p99 of 600 requests" in w.describe()
    # A watched tail keeps its verdict and says its count.
    [x] = [m for m in gate.compare_runs({}, _runs(3, 100.0, 40), _runs(3, 101.0, 40))
           if m.metric == "ttft_p99_ms"]
    assert not x.gated and x.tail_samples == 40 and not x.note.startswith("not decidable")


def test_threshold_messages_say_how_many_samples_the_tail_rests_on() -> None:
    summary = {"ttft_p99_ms": 150.0, "ttft_p50_ms": 40.0, "requests": 40, "errors": 0}
    checks = evaluate({"ttft_p99_ms": 100, "ttft_p50_ms": 50}, summary)
    by = {c.name: c for c in checks}
    assert by["ttft_p99_ms"].samples == 40 and by["ttft_p50_ms"].samples is None
    assert by["ttft_p99_ms"].describe() == (
        "ttft_p99_ms: measured 150, limit <= 100 (p99 of 40 requests, too few: needs at "
        "least 500 requests per run)")
    found = failure(checks)
    assert found is not None and found.clause == "ttft_p99_ms 150 > 100 (p99 of 40 requests)"
    assert by["ttft_p99_ms"].to_dict()["samples"] == 40
    ok = evaluate({"e2e_p95_ms": 1000}, {"e2e_p95_ms": 10.0, "requests": 200})
    assert ok[0].of_samples() == "p95 of 200 requests"


def _pair_p99(rng: np.random.Generator, n: int, shift: float, tail: str) -> tuple[float, float]:
    drift = math.exp(rng.normal(0.0, 0.02))  # the machine's state, shared by the pair

    def sample(scale: float) -> np.ndarray:
        if tail == "pareto":
            return (rng.pareto(2.5, n) + 1.0) * 10.0 * scale * drift
        return rng.lognormal(0.0, 1.0, n) * 10.0 * scale * drift

    return (float(np.percentile(sample(1.0), 99)),
            float(np.percentile(sample(math.exp(shift)), 99)))


@pytest.mark.parametrize("tail", ["lognormal", "pareto"])
def test_the_paired_quantile_test_holds_its_level_and_sees_a_tail_shift(tail: str) -> None:
    """10 pairs of 1000-request runs, each run's p99 of its requests, the sign-flip test
    over the pairs: A/A flags at most about alpha, a +40% tail is found most of the time."""
    rng = np.random.default_rng(8)

    def flagged(shift: float) -> bool:
        pairs = [_pair_p99(rng, 1000, shift, tail) for _ in range(10)]
        [v] = paired.compare_paired_set({"e2e_p99_ms": [a for a, _ in pairs]},
                                        {"e2e_p99_ms": [b for _, b in pairs]},
                                        gated=["e2e_p99_ms"], alpha=0.05)
        return v.verdict == "regression"

    trials = 60
    assert sum(flagged(0.0) for _ in range(trials)) / trials <= 0.1
    assert sum(flagged(math.log(1.4)) for _ in range(trials)) / trials >= 0.7


def test_with_tails_leaves_other_metrics_alone() -> None:
    v = stats.compare_stored("ttft_p50_ms", [1.0, 1.1], [1.0, 1.1])
    assert stats.with_tails(v, 3) is v
    assert stats.with_tails(v, None) is v
