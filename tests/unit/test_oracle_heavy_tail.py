"""The oracle's heavy-tailed TTFT draw (testing/heavy_tail.py): median 1, deterministic per
seed and index, its p99 where the distribution puts it, and bad specs refused in one line."""

from __future__ import annotations

import math
import statistics

import pytest

from pytest_llmperf.testing import heavy_tail

N = 20000


def draws(spec: str, seed: int, n: int = N) -> list[float]:
    return [heavy_tail.factor(spec, seed, i) for i in range(n)]


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


@pytest.mark.parametrize("spec", ["lognormal:0.5", "lognormal:1", "pareto:2.5", "pareto:1.5"])
def test_the_draw_has_median_one(spec: str) -> None:
    assert heavy_tail.quantile(spec, 0.5) == pytest.approx(1.0)
    assert statistics.median(draws(spec, seed=7)) == pytest.approx(1.0, rel=0.05)


def test_the_same_seed_and_index_give_the_same_factor_and_other_seeds_differ() -> None:
    a = draws("lognormal:1", seed=3, n=200)
    assert a == draws("lognormal:1", seed=3, n=200)
    b = draws("lognormal:1", seed=4, n=200)
    assert sum(x == y for x, y in zip(a, b, strict=True)) == 0
    # Independent streams: the two seeds' log-factors are uncorrelated.
    la, lb = [math.log(x) for x in a], [math.log(x) for x in b]
    assert abs(statistics.correlation(la, lb)) < 0.2
    # One index's draw does not depend on the others drawn before it.
    assert heavy_tail.factor("lognormal:1", 3, 150) == a[150]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_the_lognormal_p99_follows_sigma(sigma: float) -> None:
    spec = f"lognormal:{sigma}"
    expected = math.exp(sigma * 2.3263)
    assert heavy_tail.quantile(spec, 0.99) == pytest.approx(expected, rel=1e-3)
    assert p(draws(spec, seed=1), 0.99) == pytest.approx(expected, rel=0.12)


def test_a_larger_sigma_moves_the_tail_not_the_median() -> None:
    # What benchmarks/tail_oracle.py does: p99 x 1.5 with the median unchanged.
    base, slower = 1.0, 1.0 + math.log(1.5) / 2.3263
    assert heavy_tail.quantile(f"lognormal:{slower}", 0.99) / heavy_tail.quantile(
        f"lognormal:{base}", 0.99) == pytest.approx(1.5, rel=1e-3)
    a, b = draws(f"lognormal:{base}", 11), draws(f"lognormal:{slower}", 12)
    assert p(b, 0.99) / p(a, 0.99) == pytest.approx(1.5, rel=0.15)
    assert statistics.median(b) / statistics.median(a) == pytest.approx(1.0, rel=0.06)


def test_the_pareto_p99_follows_alpha() -> None:
    # Median 1: scale 2**(-1/alpha); p99 = (2 * 0.01)**(-1/alpha).
    assert heavy_tail.quantile("pareto:2.5", 0.99) == pytest.approx(0.02 ** (-1 / 2.5))
    assert p(draws("pareto:2.5", seed=2), 0.99) == pytest.approx(0.02 ** (-1 / 2.5), rel=0.12)
    assert min(draws("pareto:2.5", seed=2, n=2000)) >= 2 ** (-1 / 2.5) - 1e-9


@pytest.mark.parametrize(("spec", "why"), [
    ("normal:1", "use 'lognormal:SIGMA' or 'pareto:ALPHA'"),
    ("lognormal", "use 'lognormal:SIGMA' or 'pareto:ALPHA'"),
    ("lognormal:x", "'x' is not a number"),
    ("lognormal:0", "SIGMA must be a positive number"),
    ("pareto:-1", "ALPHA must be a positive number"),
    ("pareto:nan", "ALPHA must be a positive number"),
])
def test_a_bad_spec_is_one_line(spec: str, why: str) -> None:
    with pytest.raises(ValueError) as err:
        heavy_tail.parse(spec)
    assert str(err.value) == f"ttft_tail {spec!r}: {why}"
