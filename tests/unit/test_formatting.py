"""The one number formatter: each variant writes numbers exactly as its callers always did."""

from __future__ import annotations

import pytest

from pytest_llmperf.formatting import compact, display, fixed, num, pct


@pytest.mark.parametrize(("value", "measured", "detail", "limit"), [
    (63.0, "63", "63", "63"),
    (65.75, "65.75", "65.75", "65.75"),
    (0.5113, "0.5113", "0.5113", "0.5113"),
    (1e-06, "1e-06", "1e-06", "1e-06"),
    (1500.0, "1500", "1500.0", "1500"),
    (1234.56, "1235", "1234.6", "1234.6"),
    (1500, "1500", "1500.0", "1500"),
    (-0.0, "-0", "-0", "0"),
    (None, "-", "-", "-"),
    ("x", "-", "-", "-"),
    (float("nan"), "-", "-", "-"),
])
def test_num_variants(value: object, measured: str, detail: str, limit: str) -> None:
    assert num(value) == measured
    assert num(value, large=".1f") == detail
    assert num(value, large=".1f", whole=True) == limit


def test_cells_and_changes() -> None:
    assert [display(v) for v in (None, True, 12345, 0.5113, 1234.5, "q")] == [
        "-", "yes", "12345", "0.5113", "1234", "q"]
    assert [compact(v) for v in (None, 2.345, 812.44, 1234.5, 7, "q")] == [
        "-", "2.35", "812.4", "1234", "7", "q"]
    assert [pct(v) for v in (17.38, -3, None, float("inf"))] == ["+17.4%", "-3.0%", "-", "-"]
    assert [fixed(v, ".1f") for v in (None, 2.25, 3)] == ["-", "2.2", "3.0"]
