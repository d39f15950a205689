"""Issue 27 (point 1): a metric undefined in a run is undefined, not 0; every metric of a paired
comparison rests on its own usable pairs, says how many, and too few of them is
"inconclusive (k of n pairs usable)", never "ok". Pure functions only (no servers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_llmperf.commits.bisect import DataPoint, judge
from pytest_llmperf.run.bench import client_warnings
from pytest_llmperf.run.metrics import RequestRecord, RunResult, request_latency, summarize
from pytest_llmperf.verdict import ab, paired, stats
from pytest_llmperf.verdict.gate import compare_runs

MS = 1_000_000


def _record(index: int, chunks: list[int], tokens: int = 8) -> RequestRecord:
    """A request sent at 0 whose token-bearing chunks arrived at ``chunks`` (ms)."""
    return RequestRecord(index=index, prompt_tokens=4, send_ns=0,
                         chunk_ns=[c * MS for c in chunks],
                         chunk_tokens=[1] * (len(chunks) - 1) + [tokens - len(chunks) + 1],
                         done_ns=chunks[-1] * MS, output_tokens=tokens)


def test_one_read_answer_has_no_tpot_not_zero() -> None:
    # Eight tokens read at once 50 ms after the send: E2E == TTFT, the client saw no decoding.
    one_read = _record(0, [50], tokens=8)
    assert one_read.tpot_ns is None and one_read.tpot_undefined
    lat = request_latency(one_read)
    assert lat is not None and lat.tpot_ms is None and lat.ttft_ms == lat.e2e_ms == 50.0
    # Several SSE events in one read carry the same stamp: the same thing.
    same_read = RequestRecord(index=1, prompt_tokens=4, chunk_ns=[50 * MS] * 8,
                              chunk_tokens=[1] * 8, done_ns=50 * MS, output_tokens=8)
    assert same_read.tpot_ns is None and same_read.tpot_undefined
    # A one-token answer has no TPOT either, but that is not "undefined in a run".
    single = _record(2, [50], tokens=1)
    assert single.tpot_ns is None and not single.tpot_undefined
    streamed = _record(3, [50, 60, 70, 80], tokens=4)
    assert streamed.tpot_ns == pytest.approx(10 * MS) and not streamed.tpot_undefined


def test_summary_counts_undefined_tpot_and_never_reports_zero() -> None:
    every = summarize([_record(i, [50]) for i in range(4)])
    assert every["tpot_undefined"] == 4
    assert all(every[f"tpot_{s}_ms"] is None for s in ("p50", "p90", "p99", "mean", "max"))
    assert every["ttft_p50_ms"] == pytest.approx(50.0)
    mixed = summarize([_record(0, [50]), _record(1, [50, 60, 70, 80], tokens=4),
                       _record(2, [40, 60, 80, 100], tokens=4)])
    assert mixed["tpot_undefined"] == 1
    assert mixed["tpot_p50_ms"] == pytest.approx(15.0)  # (10 + 20) / 2: the two defined ones
    none = summarize([_record(i, [50, 60, 70, 80], tokens=4) for i in range(3)])
    assert none["tpot_undefined"] == 0 and none["tpot_p50_ms"] == pytest.approx(10.0)


def test_run_warns_when_tpot_is_undefined() -> None:
    records = [_record(0, [50]), _record(1, [50]), _record(2, [50, 60, 70, 80], tokens=4)]
    run = RunResult(summary=summarize(records), samples=records)
    found = [w for w in client_warnings(run) if "TPOT undefined" in w]
    assert found == [found[0]] and "in 2 of 3 request(s)" in found[0]
    assert "one read" in found[0] and "summarise the others" in found[0]
    records = [_record(i, [50]) for i in range(3)]
    run = RunResult(summary=summarize(records), samples=records)
    (warning,) = [w for w in client_warnings(run) if "TPOT undefined" in w]
    assert "3 of 3" in warning and "undefined (None) for this run" in warning
    records = [_record(i, [50, 60], tokens=2) for i in range(3)]
    run = RunResult(summary=summarize(records), samples=records)
    assert not [w for w in client_warnings(run) if "TPOT" in w]


def test_signflip_with_a_missing_pair_is_the_test_on_the_others() -> None:
    w = np.array([0.05, 0.07, -0.01, 0.09, 0.11, 0.02, 0.04])
    with_gap = np.array([0.05, np.nan, 0.07, -0.01, np.nan, 0.09, 0.11, 0.02, 0.04])
    assert paired.signflip_pvalues([with_gap]) == paired.signflip_pvalues([w])
    # Jointly, a metric with every pair keeps its own p-value floor of 2**-n.
    full = np.linspace(0.01, 0.05, 8)
    sparse = np.full(8, np.nan)
    sparse[:3] = 0.2
    p_w, _ = paired.signflip_pvalues([full, sparse])
    assert p_w[0] < 0.01 and p_w[1] >= 2.0**-3


def _pairs(n: int, **b_over_a: float) -> tuple[dict[str, list[float | None]],
                                               dict[str, list[float | None]]]:
    rng = np.random.default_rng(3)
    a: dict[str, list[float | None]] = {}
    b: dict[str, list[float | None]] = {}
    for m, ratio in b_over_a.items():
        x = 100.0 * np.exp(rng.normal(0, 0.02, n))
        a[m] = [float(v) for v in x]
        b[m] = [float(v) * ratio * math.exp(rng.normal(0, 0.01)) for v in x]
    return a, b


def test_a_pair_missing_one_metric_still_counts_for_the_others() -> None:
    a, b = _pairs(10, ttft_p50_ms=9.7, tpot_p50_ms=1.0, output_tps=0.38)
    for i in range(9):  # TPOT undefined in 9 of the 10 B runs (the whole answer in one read)
        b["tpot_p50_ms"][i] = None
    a["tpot_p50_ms"][3] = 0.0  # and a stored 0.0 from before the fix is no value either
    found = {v.metric: v for v in paired.compare_paired_set(
        a, b, gated=["ttft_p50_ms", "tpot_p50_ms", "output_tps"])}
    assert found["ttft_p50_ms"].n_current == 10 and found["output_tps"].n_current == 10
    assert found["ttft_p50_ms"].verdict == "regression"
    assert found["output_tps"].verdict == "regression"
    assert found["output_tps"].change_pct == pytest.approx(-62, abs=2)
    tpot = found["tpot_p50_ms"]
    assert tpot.n_current == 1 and tpot.pairs_run == 10 and tpot.verdict == "inconclusive"
    assert "inconclusive (1 of 10 pairs usable)" in tpot.note
    assert found["ttft_p50_ms"].pairs_run == 10
    assert found["ttft_p50_ms"].describe().endswith(", 10 pairs")


def test_too_few_usable_pairs_is_inconclusive_never_ok() -> None:
    # The case: 4 of 10 pairs usable, output tok/s -62%: p can never go below 1/16.
    a, b = _pairs(10, output_tps=0.38)
    for i in range(6):
        b["output_tps"][i] = 0.0
    (v,) = paired.compare_paired_set(a, b, gated=["output_tps"], alpha=0.009)
    assert v.verdict == "inconclusive" and v.n_current == 4 and v.pairs_run == 10
    assert v.p_value == pytest.approx(1 / 16)
    assert v.note.startswith("inconclusive (4 of 10 pairs usable)")
    assert "7 needed" in v.note
    assert v.describe().endswith(", 4 of 10 pairs")
    # The same four pairs when nothing changed: the interval rules out a change beyond the
    # tolerance, so "ok" is an answer the data gave, not the only possible one.
    a, b = _pairs(10, output_tps=1.0)
    for i in range(6):
        b["output_tps"][i] = None
    (v,) = paired.compare_paired_set(a, b, gated=["output_tps"], alpha=0.009,
                                     tolerance_pct=10)
    assert v.verdict == "ok" and v.n_current == 4
    assert v.note.startswith("4 of 10 interleaved pairs usable; sign-flip test")
    (v,) = paired.compare_paired_set({"output_tps": [None] * 3}, {"output_tps": [1.0] * 3},
                                     gated=["output_tps"])
    assert v.verdict == "inconclusive" and "(0 of 3 pairs usable)" in v.note


def test_pairs_needed_follows_the_smallest_p_value() -> None:
    assert paired.pairs_needed(0.01) == 7  # 2**-7 = 0.0078
    assert paired.pairs_needed(0.009) == 7
    assert paired.pairs_needed(0.05) == 5
    assert paired.smallest_p(4) == 1 / 16


def _summary(ttft: float, tpot: float | None, tps: float) -> dict[str, float | None]:
    return {"ttft_p50_ms": ttft, "tpot_p50_ms": tpot, "output_tps": tps}


def test_paired_gate_says_per_metric_pairs_and_never_passes_on_dropped_pairs() -> None:
    """run_paired: B is slower, and its TPOT is undefined (None, or a stored 0.0) in most runs.
    Before the fix the pair filter dropped every pair lacking TPOT for every metric, tested 4
    pairs that can never reach alpha and said "ok after 10 interleaved pairs"."""
    rng = np.random.default_rng(9)

    def pair(i: int) -> tuple[dict[str, float | None], dict[str, float | None]]:
        x, y = math.exp(rng.normal(0, 0.05)), math.exp(rng.normal(0, 0.05))
        a = _summary(40 * x, 5 * x, 900 / x)
        b = _summary(380 * y, None if i % 5 else 5 * y, 340 / y)
        return a, b

    v = ab.run_paired(pair, {})
    assert v.verdict == "regression" and v.pairs == 10
    assert v.to_dict()["pairs_per_metric"] == {
        "ttft_p50_ms": 10, "tpot_p50_ms": 2, "output_tps": 10,
        **{m.metric: m.n_current for m in v.metrics if not m.gated}}
    assert "pairs per metric: ttft_p50_ms 10, tpot_p50_ms 2 of 10, output_tps 10" in v.message
    assert v.metric("tpot_p50_ms").verdict == "inconclusive"
    assert "tpot_p50_ms" not in {m.metric for m in v.regressions}

    # Only a metric that cannot reach alpha on its usable pairs is left: inconclusive,
    # naming how many pairs were usable; "ok" is impossible.
    def thin(i: int) -> tuple[dict[str, float | None], dict[str, float | None]]:
        a, b = pair(i)
        b["ttft_p50_ms"] = a["ttft_p50_ms"]
        b["output_tps"] = a["output_tps"] if i < 4 else 0.0
        a["tpot_p50_ms"] = b["tpot_p50_ms"] = 5.0
        b["output_tps"] = b["output_tps"] and b["output_tps"] * 0.4
        return a, b

    v = ab.run_paired(thin, {})
    assert v.verdict == "inconclusive" and v.pairs == 10 and v.stages == 2
    assert "inconclusive (4 of 10 pairs usable for output_tps) after 10 interleaved" \
        in v.message
    assert "output_tps 4 of 10" in v.message


def test_first_look_does_not_stop_on_unusable_pairs() -> None:
    # Clear on everything but one metric that has three usable pairs of five: run more pairs.
    rng = np.random.default_rng(4)

    def pair(i: int) -> tuple[dict[str, float | None], dict[str, float | None]]:
        a = _summary(40.0, 5.0, 900.0)
        b = _summary(40.0, 5.0 * math.exp(rng.normal(0, 0.02)) if i in (0, 1, 2) else None,
                     900.0)
        return a, b

    v = ab.run_paired(pair, {})
    assert v.stages == 2 and v.pairs == 10
    tpot = v.metric("tpot_p50_ms")
    assert tpot.n_current == 3 and tpot.verdict == "inconclusive"
    assert v.verdict == "inconclusive"
    assert v.message.startswith("B vs A: inconclusive (3 of 10 pairs usable for tpot_p50_ms)")
    # Nothing missing and nothing changed: clear after the first stage, as before.
    v = ab.run_paired(lambda i: (_summary(40.0, 5.0, 900.0), _summary(40.0, 5.0, 900.0)), {})
    assert v.verdict == "ok" and v.stages == 1 and v.pairs == 5


def test_bisect_judge_rests_each_metric_on_its_own_pairs() -> None:
    marker = {"gate": ["ttft_p50_ms", "tpot_p50_ms"]}
    ref = [{"t": DataPoint(_summary(40.0 + i, 5.0, 900.0), marker, 1)} for i in range(8)]
    cand = [{"t": DataPoint(_summary(60.0 + i, None if i else 5.0, 900.0), marker, 1)}
            for i in range(8)]
    verdicts, _, _ = judge(ref, cand, alpha=0.01)
    found = {v.metric: v for v in verdicts["t"]}
    assert found["ttft_p50_ms"].verdict == "regression"
    assert found["ttft_p50_ms"].n_current == 8
    assert found["tpot_p50_ms"].n_current == 1
    assert ab.overall(verdicts["t"]) == "regression"


def test_stored_gate_counts_runs_without_a_value() -> None:
    v = stats.compare_stored("tpot_p50_ms", [10.0, 10.2, 9.9], [10.1, None, 10.0])
    assert v.n_current == 2 and v.runs_current == 3 and v.runs_baseline == 3
    assert "1 of 3 current runs without a value" in v.note
    # A head whose TPOT is undefined in every run is compared (and inconclusive), not skipped.
    base = [{"summary": {"tpot_p50_ms": 10.0, "tpot_undefined": 0}} for _ in range(3)]
    head = [{"summary": {"tpot_p50_ms": None, "tpot_undefined": 16}} for _ in range(3)]
    (v,) = [v for v in compare_runs({"gate": ["tpot_p50_ms"]}, base, head)
            if v.metric == "tpot_p50_ms"]
    assert v.verdict == "inconclusive" and "no value in the current run" in v.note
    no_tpot = [{"summary": {"tpot_p50_ms": None, "tpot_undefined": 0}} for _ in range(3)]
    assert compare_runs({"gate": ["tpot_p50_ms"]}, base, no_tpot) == []
