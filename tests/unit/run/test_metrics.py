"""Metric definitions checked against hand-computed values."""

from __future__ import annotations

import pytest

from pytest_llmperf.run.metrics import (
    SUMMARY_KEYS,
    RequestRecord,
    RunResult,
    describe,
    meets_slo,
    percentile,
    summarize,
    understatement,
)

MS = 1_000_000


def rec(index: int, send_ms: float, chunks_ms: list[float], tokens: list[int] | None = None,
        **kw: object) -> RequestRecord:
    tokens = tokens or [1] * len(chunks_ms)
    r = RequestRecord(index=index, prompt_tokens=10, send_ns=int(send_ms * MS),
                      chunk_ns=[int(c * MS) for c in chunks_ms], chunk_tokens=tokens,
                      done_ns=int(chunks_ms[-1] * MS) if chunks_ms else int(send_ms * MS), **kw)
    if r.output_tokens is None and chunks_ms:
        r.output_tokens = sum(tokens)
    return r


def test_percentile_linear_interpolation_matches_hand_computation() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    # rank = q/100 * (n-1): p50 -> 1.5 -> 25; p90 -> 2.7 -> 37; p99 -> 2.97 -> 39.7
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 90) == pytest.approx(37.0)
    assert percentile(values, 99) == pytest.approx(39.7)
    assert percentile([], 50) is None
    d = describe(values)
    assert d["mean"] == pytest.approx(25.0) and d["max"] == 40.0 and d["p95"] == pytest.approx(38.5)


def test_ttft_tpot_e2e_of_one_request() -> None:
    r = rec(0, 0, [100, 110, 130, 160])  # 4 tokens
    assert r.ttft_ns == 100 * MS
    assert r.e2e_ns == 160 * MS
    assert r.tpot_ns == pytest.approx((160 - 100) / 3 * MS)
    assert r.itl_ns() == [10 * MS, 20 * MS, 30 * MS]


def test_one_token_request_has_no_tpot_and_no_itl() -> None:
    r = rec(0, 0, [50])
    assert r.tpot_ns is None and r.itl_ns() == []


def test_coalesced_chunk_contributes_one_gap_per_token() -> None:
    # chunk 2 carries 3 tokens arriving 30 ms after chunk 1: three gaps of 10 ms.
    r = rec(0, 0, [100, 130, 140], tokens=[1, 3, 1])
    assert r.itl_ns() == [10 * MS, 10 * MS, 10 * MS, 10 * MS]
    # TPOT uses the authoritative token count (5), not the number of chunks.
    assert r.tpot_ns == pytest.approx(40 / 4 * MS)


def test_summary_excludes_warmup_and_counts_errors() -> None:
    records = [
        rec(0, 0, [500, 600], warmup=True),  # warm-up: slow, must not count
        rec(1, 1000, [1100, 1120, 1140]),
        rec(2, 1200, [1250, 1260, 1270]),
        RequestRecord(index=3, prompt_tokens=10, send_ns=1300 * MS, done_ns=1310 * MS,
                      error="HTTP 500", error_kind="http"),
    ]
    s = summarize(records)
    assert set(s) == set(SUMMARY_KEYS)
    assert s["requests"] == 3 and s["errors"] == 1
    assert s["ttft_p50_ms"] == pytest.approx(75.0)  # (100 + 50) / 2
    assert s["ttft_max_ms"] == pytest.approx(100.0)
    assert s["tpot_mean_ms"] == pytest.approx(15.0)  # (20 + 10) / 2
    assert s["e2e_p50_ms"] == pytest.approx(105.0)  # (140 + 70) / 2
    # window: first measured send (1000) to last completion (1310) = 0.31 s; 6 tokens.
    assert s["duration_s"] == pytest.approx(0.31)
    assert s["output_tps"] == pytest.approx(6 / 0.31)
    assert s["rps"] == pytest.approx(2 / 0.31)
    assert s["output_tokens"] == 6 and s["input_tokens"] == 20
    assert s["goodput"] is None


def test_goodput_is_fraction_meeting_every_slo() -> None:
    records = [
        rec(0, 0, [100, 110, 120]),  # ttft 100, tpot 10
        rec(1, 0, [300, 310, 320]),  # ttft 300: misses ttft
        rec(2, 0, [100, 200, 300]),  # tpot 100: misses tpot
        RequestRecord(index=3, prompt_tokens=1, error="boom"),  # errors never meet an SLO
    ]
    s = summarize(records, slo={"ttft_ms": 200, "tpot_ms": 50})
    assert s["goodput"] == pytest.approx(1 / 4)
    assert meets_slo(records[0], {"e2e_ms": 120})
    assert not meets_slo(records[0], {"e2e_ms": 119})


def test_empty_or_all_failed_run_gives_none_not_nan() -> None:
    s = summarize([RequestRecord(index=0, prompt_tokens=1, error="x")])
    assert s["ttft_p50_ms"] is None and s["output_tps"] is None
    assert s["errors"] == 1 and s["requests"] == 1


def test_run_result_round_trips_and_reads_summary_as_attributes() -> None:
    records = [rec(0, 0, [10, 20])]
    result = RunResult(summary=summarize(records), samples=records, workload={"requests": 1})
    assert result.errors == 0 and result["requests"] == 1
    back = RunResult.from_dict(result.to_dict())
    assert back.summary == result.summary
    assert back.samples[0].chunk_ns == records[0].chunk_ns
    with pytest.raises(AttributeError):
        _ = result.no_such_metric


def test_open_loop_latency_from_the_schedule_counts_the_wait_before_the_send() -> None:
    """Issue 24 item 7: each open-loop request is due at scheduled_ns; one that went out
    late (queued for a slot) waited from its due time. Hand-computed: request 0 due 0 ms, sent
    0 ms, first token 10 ms, last 30 ms; request 1 due 5 ms, sent 40 ms (35 ms late), first
    token 50, last 70 ms."""
    a = rec(0, 0, [10, 20, 30], scheduled_ns=0)
    b = rec(1, 40, [50, 60, 70], scheduled_ns=5 * MS)
    s = summarize([a, b])
    assert s["ttft_p50_ms"] == pytest.approx(10.0)  # vLLM's definition: from the send
    assert s["e2e_p50_ms"] == pytest.approx(30.0)
    assert s["ttft_sched_max_ms"] == pytest.approx(45.0)  # 50 - 5
    assert s["ttft_sched_p50_ms"] == pytest.approx((10 + 45) / 2)
    assert s["e2e_sched_max_ms"] == pytest.approx(65.0)  # to the stream's close (70) - 5
    assert s["schedule_lag_max_ms"] == pytest.approx(35.0)
    assert s["schedule_lag_p50_ms"] == pytest.approx(17.5)
    note = understatement(s)
    assert note is not None and "E2E p50 30.0 ms from the send against 47.5 ms" in note
    assert "+58%" in note


def test_a_closed_loop_has_no_schedule_figures_and_an_on_time_loop_no_warning() -> None:
    closed = summarize([rec(0, 0, [10, 20]), rec(1, 20, [30, 40])])
    assert all(closed[k] is None for k in ("ttft_sched_p50_ms", "e2e_sched_p99_ms",
                                           "schedule_lag_p50_ms"))
    assert understatement(closed) is None
    on_time = summarize([rec(0, 0.2, [10, 20], scheduled_ns=0),
                         rec(1, 50.2, [60, 70], scheduled_ns=50 * MS)])
    assert on_time["schedule_lag_p50_ms"] == pytest.approx(0.2)
    assert on_time["e2e_sched_p50_ms"] == pytest.approx(20.0)
    assert understatement(on_time) is None  # 0.2 ms late: nothing worth saying


def test_a_few_late_requests_are_not_an_understated_median() -> None:
    """The example trace replay on the embedded engine: one of four requests went out 220 ms
    late, the median lag is 1 ms: the median E2E from the schedule moves (p50 of four is the
    mean of the middle two), but the median request was on time: no warning."""
    recs = [rec(0, 1, [50, 101], scheduled_ns=0),  # E2E 100 ms from the send
            rec(1, 1001, [1100, 1401], scheduled_ns=1000 * MS),  # 400
            rec(2, 2001, [2100, 2201], scheduled_ns=2000 * MS),  # 200
            rec(3, 2420, [2500, 2720], scheduled_ns=2200 * MS)]  # 300, sent 220 ms late
    s = summarize(recs)
    assert s["schedule_lag_p50_ms"] == pytest.approx(1.0)
    assert s["e2e_p50_ms"] == pytest.approx(250.0)
    assert s["e2e_sched_p50_ms"] == pytest.approx(301.0)  # (201 + 401) / 2: it moved
    assert understatement(s) is None
