"""Issue 27 (point 1), the proof: a paired A/B whose B answers come, in some runs, as a first
token followed at once by the rest (one read: E2E == TTFT), against known-schedule servers.

B is slower on every figure. Before the fix such a run's TPOT was 0.0, the paired gate dropped
every pair with a zero for every metric, tested the 4 pairs left (p can never go below 1/16)
and said "ok after 10 interleaved pairs". Now TPOT is undefined (None) in those runs, counted
and warned about; each metric rests on its own usable pairs and the verdict says how many."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmperf.testing.oracle import OracleServer

# Per pair (B serves two requests a run): "11" both of the run's answers in one read, "00" none.
# Six of ten B runs come in one read; the four others stream.
ONE_READ_RUNS = (1, 1, 0, 1, 0, 1, 1, 0, 1, 0)

TEST_FILE = """
import json
from pathlib import Path

from pytest_llmperf import Workload, llmperf
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.testing.oracle import WordTokenizer


@llmperf()
def test_ab(llmperf_bench):
    a = OpenAIEngine("{a_url}", tokenizer=WordTokenizer())
    b = OpenAIEngine("{b_url}", tokenizer=WordTokenizer())
    try:
        w = Workload(input_tokens=8, output_tokens=6, requests=2, warmup=0)
        v = llmperf_bench.compare(a, b, w, fail=False)
        llmperf_bench(a, w)  # a test enters the results document with a run of its own
    finally:
        a.close()
        b.close()
    Path("b_runs.json").write_text(json.dumps(
        [dict(summary=r.summary, warnings=r.warnings) for r in v.runs_b]))
"""


def test_one_read_answers_are_never_an_ok_and_each_metric_says_its_pairs(
    pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    a = llmperf_oracle(ttft_ms=5, itl_ms=2)
    pattern = "".join("11" if burst else "00" for burst in ONE_READ_RUNS)
    # 12x the TTFT, twice the TPOT where it streams: about 4x slower.
    b = llmperf_oracle(ttft_ms=60, itl_ms=4, one_read=pattern)
    pytester.makepyfile(test_one_read=TEST_FILE.format(a_url=a.url, b_url=b.url))
    out = pytester.path / "r.json"
    res = pytester.runpytest("--llmperf", f"--llmperf-json={out}", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    (test,) = json.loads(out.read_text())["tests"]
    (entry,) = test["ab"]
    metrics: dict[str, dict[str, Any]] = {m["metric"]: m for m in entry["metrics"]}
    pairs = {m: (v["n_current"], v.get("pairs_run")) for m, v in metrics.items() if v["gated"]}
    print(f"verdict {entry['verdict']!r}; pairs per gated metric {pairs}\n{entry['message']}")

    # The verdict: B is slower; never "ok".
    assert entry["verdict"] in ("regression", "inconclusive"), entry["message"]
    assert entry["pairs"] == 10
    assert metrics["output_tps"]["change_pct"] < -50

    # Each metric rests on its own pairs and says so (text and JSON).
    assert entry["pairs_per_metric"]["ttft_p50_ms"] == 10
    assert entry["pairs_per_metric"]["output_tps"] == 10
    assert entry["pairs_per_metric"]["tpot_p50_ms"] == ONE_READ_RUNS.count(0)
    assert metrics["tpot_p50_ms"]["pairs_run"] == 10
    # TPOT doubled on the 4 pairs that have it, which can never reach p < alpha: not "ok".
    assert metrics["tpot_p50_ms"]["verdict"] == "inconclusive"
    assert "inconclusive (4 of 10 pairs usable)" in metrics["tpot_p50_ms"]["note"]
    assert entry["verdict"] == "regression"  # TTFT and tokens/s on all ten pairs
    assert metrics["ttft_p50_ms"]["verdict"] == metrics["output_tps"]["verdict"] == "regression"
    assert ("pairs per metric: ttft_p50_ms 10, tpot_p50_ms 4 of 10, output_tps 10"
            in entry["message"])
    res.stdout.fnmatch_lines(["*A/B B vs A: regression after 10 interleaved pairs*"
                              "tpot_p50_ms 4 of 10*"])

    # TPOT in a one-read run is undefined, not 0, counted and warned about.
    runs = json.loads((pytester.path / "b_runs.json").read_text())
    assert len(runs) == 10
    for burst, run in zip(ONE_READ_RUNS, runs, strict=True):
        s = run["summary"]
        if burst:
            assert s["tpot_p50_ms"] is None and s["tpot_undefined"] == 2
            assert any("TPOT undefined in 2 of 2" in w for w in run["warnings"])
        else:
            assert s["tpot_p50_ms"] == pytest.approx(4, abs=2) and s["tpot_undefined"] == 0
            assert not any("TPOT undefined" in w for w in run["warnings"])
        assert s["ttft_p50_ms"] > 40
