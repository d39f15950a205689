"""Accuracy end to end on the tiny model: scoring, lm-eval agreement, paired comparison and the
min_accuracy / max_accuracy_drop thresholds in real pytest sessions.

The tiny model has random weights, so it scores near chance: these tests check that the number
is computed over the right items and the right way, not that it is high.

Split by tier from tests/test_accuracy.py: these are its unit tests; the others are in
tests/sessions/test_accuracy_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.quality.accuracy import (
    AccuracyError,
    AccuracyResult,
    compare_paired,
    mcnemar_exact,
)
from pytest_llmperf.quality.tasks import TASKS

pytestmark = pytest.mark.usefixtures("isolated_cache")  # LLMPERF_CACHE_DIR in tmp_path


def test_task_data_is_well_formed() -> None:
    arith, words = TASKS["llmperf_arith"].load(), TASKS["llmperf_words"].load()
    assert len(arith) + len(words) >= 300
    assert [i["id"] for i in arith] == list(range(len(arith)))
    for item in arith:
        a, op, b = item["input"].splitlines()[-1].rstrip("=").split()
        assert str(int(a) + int(b) if op == "+" else int(a) - int(b)) == item["target"]
    for item in words:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        assert 0 <= item["gold"] < 4


def test_mcnemar_exact_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(4, 4) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)


def _result(bits: list[int], task: str = "t") -> AccuracyResult:
    correct = {str(i): bool(b) for i, b in enumerate(bits)}
    return AccuracyResult(task, sum(bits) / len(bits), len(bits), correct, "builtin", "acc")


def test_paired_comparison_counts_discordant_items() -> None:
    ref = _result([1] * 40 + [0] * 10 + [1] * 40 + [0] * 10)
    cand = _result([1] * 40 + [0] * 10 + [0] * 12 + [1] * 28 + [1] * 3 + [0] * 7)
    c = compare_paired(ref, cand)
    assert (c.n, c.ref_only, c.cand_only) == (100, 12, 3)
    assert c.drop == pytest.approx(0.09)
    assert c.reference_accuracy == 0.8 and c.candidate_accuracy == pytest.approx(0.71)
    assert c.ci_low < 0.09 < c.ci_high and c.ci_low > 0  # 12 vs 3 is a real drop
    assert c.p_value == pytest.approx(mcnemar_exact(12, 3))
    same = compare_paired(ref, ref)
    assert (same.drop, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_comparison_uses_only_common_items() -> None:
    ref = _result([1, 1, 0, 0])
    cand = AccuracyResult("t", 0.0, 2, {"0": False, "9": True}, "builtin", "acc")
    c = compare_paired(ref, cand)
    assert c.n == 1 and c.drop == 1.0
    with pytest.raises(AccuracyError, match="no common items"):
        compare_paired(ref, AccuracyResult("t", 0, 1, {"x": True}, "builtin", "acc"))
