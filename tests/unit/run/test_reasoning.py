"""Reasoning and answer phases of a run (run/reasoning.py, RequestRecord's reasoning fields):
TTFA, ITL per phase and reasoning tokens, hand-computed; stored records checked; the metric
table, the marker and the capacity SLO's view of the new rows."""

from __future__ import annotations

import pytest

from pytest_llmperf.metric_table import (
    LATENCY_KEYS,
    REASONING_KEYS,
    SECTIONS,
    SUMMARY_KEYS,
    TABLE_METRICS,
    with_optional,
)
from pytest_llmperf.run.capacity import CapacityError, check_slo
from pytest_llmperf.run.metrics import RecordError, RequestRecord, summarize
from pytest_llmperf.run.reasoning import phase_itl_ms, reasoning_summary
from pytest_llmperf.verdict.thresholds import THRESHOLDS, evaluate, validate_marker

MS = 1_000_000


def rec(index: int, chunks_ms: list[float], reasoning: int = 0, tokens: list[int] | None = None,
        reasoning_tokens: int | None = None, send_ms: float = 0.0) -> RequestRecord:
    tokens = tokens or [1] * len(chunks_ms)
    return RequestRecord(
        index=index, prompt_tokens=4, send_ns=int(send_ms * MS),
        chunk_ns=[int(c * MS) for c in chunks_ms], chunk_tokens=tokens,
        done_ns=int(chunks_ms[-1] * MS) if chunks_ms else None, output_tokens=sum(tokens),
        reasoning_chunks=reasoning,
        reasoning_tokens=reasoning_tokens if reasoning_tokens is not None
        else (sum(tokens[:reasoning]) if reasoning else None),
        reasoning_tokens_source="usage" if reasoning else None)


def test_ttfa_is_the_first_answer_chunk_and_ttft_stays_the_first_token() -> None:
    r = rec(0, [50, 60, 70, 80, 90], reasoning=3, send_ms=10)
    assert r.ttft_ns == 40 * MS  # the first reasoning chunk: vLLM's TTFT
    assert r.answer_ns == 80 * MS and r.ttfa_ns == 70 * MS
    plain = rec(1, [50, 60])
    assert plain.ttfa_ns == plain.ttft_ns == 50 * MS  # no reasoning: TTFA is TTFT
    thinking_only = rec(2, [50, 60], reasoning=2)  # the budget spent thinking: no answer
    assert thinking_only.answer_ns is None and thinking_only.ttfa_ns is None
    assert rec(3, [], reasoning=0).ttfa_ns is None


def test_itl_per_phase_gives_each_gap_to_its_chunks_phase() -> None:
    # reasoning chunks at 10, 20, 40 (gaps 10, 20); answer at 70 (its gap 30) and 110 with
    # two tokens (2 x 20).
    r = rec(0, [10, 20, 40, 70, 110], reasoning=3, tokens=[1, 1, 1, 1, 2])
    assert phase_itl_ms(r) == ([10.0, 20.0], [30.0, 20.0, 20.0])
    assert phase_itl_ms(rec(1, [10, 20, 30])) == ([], [10.0, 10.0])
    # A stored record that claims more reasoning chunks than it has, or fewer than none.
    assert phase_itl_ms(rec(2, [10, 20, 30], reasoning=9)) == ([10.0, 10.0], [])
    r.reasoning_chunks = -3
    assert r.ttfa_ns == r.ttft_ns and phase_itl_ms(r)[0] == []


def test_summary_of_a_run_with_reasoning() -> None:
    records = [
        rec(0, [10, 20, 30, 40], reasoning=2, send_ms=0),  # TTFA 30
        rec(1, [20, 30, 40, 50, 60], reasoning=3, send_ms=10),  # TTFA 40
        rec(2, [15, 25], send_ms=5),  # no reasoning: TTFA = TTFT = 10
    ]
    s = summarize(records)
    assert set(SUMMARY_KEYS) <= set(s)
    assert s["ttft_p50_ms"] == pytest.approx(10.0)
    assert s["ttfa_p50_ms"] == pytest.approx(30.0)
    assert s["ttfa_max_ms"] == pytest.approx(40.0)
    assert s["ttfa_mean_ms"] == pytest.approx(80 / 3)
    assert s["reasoning_tokens_total"] == 5
    assert s["reasoning_tokens_mean"] == pytest.approx(5 / 3)
    assert s["itl_reasoning_p50_ms"] == pytest.approx(10.0)
    assert s["itl_answer_p50_ms"] == pytest.approx(10.0)


def test_a_run_without_reasoning_has_none_of_the_figures() -> None:
    s = summarize([rec(0, [10, 20, 30]), rec(1, [15, 25])])
    assert all(s[k] is None for k in REASONING_KEYS)
    assert reasoning_summary([]) == dict.fromkeys(reasoning_summary([]))
    # Failed and warm-up requests do not count.
    failed = rec(2, [10, 20], reasoning=1)
    failed.error = "x"
    warm = rec(3, [10, 20], reasoning=1)
    warm.warmup = True
    s = summarize([rec(0, [10, 20, 30]), failed, warm])
    assert s["ttfa_p50_ms"] is None and s["reasoning_tokens_total"] is None


def test_reasoning_fields_round_trip_and_are_checked_when_read() -> None:
    r = rec(0, [10, 20, 30], reasoning=2)
    data = r.to_dict()
    assert data["reasoning_chunks"] == 2 and data["reasoning_tokens_source"] == "usage"
    assert RequestRecord.from_dict(data) == r
    old = {k: v for k, v in data.items() if not k.startswith("reasoning")}  # an older file
    assert RequestRecord.from_dict(old).reasoning_chunks == 0
    for field, bad in (("reasoning_chunks", "2"), ("reasoning_chunks", None),
                       ("reasoning_tokens", 1.5), ("reasoning_tokens_source", 3)):
        with pytest.raises(RecordError, match=field):
            RequestRecord.from_dict({**data, field: bad})


def test_ttfa_and_phase_itl_are_marker_thresholds_and_gateable() -> None:
    for key in ("ttfa_p95_ms", "ttfa_p50_ms", "itl_answer_p99_ms", "itl_reasoning_p50_ms"):
        assert key in LATENCY_KEYS and THRESHOLDS[key] == (key, "max")
    assert validate_marker((), {"ttfa_p95_ms": 500}) == {"ttfa_p95_ms": 500.0}
    assert validate_marker((), {"gate": ["ttfa_p50_ms", "reasoning_tokens_mean"]})
    summary = {**dict.fromkeys(SUMMARY_KEYS), "ttfa_p95_ms": 812.0}
    checks = evaluate({"ttfa_p95_ms": 500.0}, summary)
    assert [(c.name, c.passed) for c in checks] == [("ttfa_p95_ms", False)]
    assert [c.passed for c in evaluate({"ttfa_p95_ms": 900.0}, summary)] == [True]


def test_the_capacity_slo_takes_only_the_series_it_computes() -> None:
    assert check_slo({"itl_p99_ms": 50}) == {"itl_p99_ms": 50.0}
    with pytest.raises(CapacityError, match="ttfa_p95_ms"):
        check_slo({"ttfa_p95_ms": 500})


def test_reports_show_the_reasoning_table_only_for_runs_with_reasoning() -> None:
    (section,) = [s for s in SECTIONS if s.name == "reasoning-metrics"]
    base = dict.fromkeys(SUMMARY_KEYS)
    assert section.present([base]) == ()
    assert with_optional(TABLE_METRICS, [base]) == TABLE_METRICS
    shown = section.present([base, {**base, "ttfa_p50_ms": 80.0, "reasoning_tokens_mean": 5.0}])
    assert shown == (("ttfa_p50_ms", "TTFA p50 ms"), ("reasoning_tokens_mean", "reasoning tok/req"))
    assert set(REASONING_KEYS) <= set(SUMMARY_KEYS)
