"""Embeddings (issue 24, item 6) against the known-schedule oracle: the measured latency is
the injected one, requests/s and input tokens/s follow from it, errors are counted, open loop
and load workers work, and in pytest sessions the marker's thresholds, the reports and the
baseline gate handle an embeddings run.

The pure parts are in tests/unit/run/test_embeddings.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import git, no_internal_traceback
from helpers import oracle_bench as bench

from pytest_llmperf.run.metrics import NS_PER_MS
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleServer

Oracle = Callable[..., OracleServer]


def test_the_measured_latency_is_the_injected_one(llmperf_oracle: Oracle) -> None:
    server = llmperf_oracle(embed_ms=40, embed_ms_per_token=0.5)
    wl = Workload(embeddings=True, input_tokens=20, requests=12, warmup=1, concurrency=2)
    result = bench(server, wl)
    s = result.summary
    injected = 40 + 0.5 * 20  # 50 ms
    assert s["errors"] == 0 and s["requests"] == 12
    # Within the client's and the oracle's share of a busy machine (2 cores, other jobs).
    assert injected <= s["e2e_p50_ms"] < injected + 20, s
    assert injected <= s["e2e_mean_ms"] < injected + 20, s
    for key in ("ttft_p50_ms", "tpot_p50_ms", "itl_p50_ms", "output_tps"):
        assert s[key] is None, key
    assert s["input_tokens"] == 12 * 20  # the server's usage.prompt_tokens (BOS included)
    # Two at a time, 50 ms each: 40 requests/s at most, 20 tokens each.
    assert 25 < s["rps"] <= 40 * 1.02
    assert s["input_tps"] == pytest.approx(s["rps"] * 20)
    # Each request's client latency against what the server did: read it, then answered
    # exactly ``injected`` later; the client's own share is small.
    logs = server.logs
    assert len(logs) == 13 and all(log.body["input"] and log.tokens == [0] for log in logs)
    for log in logs:
        served = (log.sent_ns[0] - log.recv_ns) / NS_PER_MS
        assert injected <= served < injected + 20, served
    measured = sorted(r.e2e_ns / NS_PER_MS for r in result.samples if r.e2e_ns is not None)
    server_side = sorted((log.sent_ns[0] - log.recv_ns) / NS_PER_MS for log in logs)
    # The medians agree within the client's share (connection, parsing, scheduling).
    assert abs(measured[6] - server_side[6]) < 10, (measured, server_side)


def test_errors_are_counted_not_dropped(llmperf_oracle: Oracle) -> None:
    failing = llmperf_oracle(fail_status=503)
    result = bench(failing, Workload(embeddings=True, input_tokens=8, requests=4))
    assert result.summary["requests"] == 4 and result.summary["errors"] == 4
    assert result.summary["e2e_p50_ms"] is None and result.summary["rps"] == 0
    assert {r.error_kind for r in result.samples} == {"http_503"}
    assert any("every request failed (4)" in w for w in result.warnings)
    dying = llmperf_oracle(die_after=3, embed_ms=5)  # the 1 warm-up + 2 answered, then cut
    result = bench(dying, Workload(embeddings=True, input_tokens=8, requests=5))
    assert result.summary["requests"] == 5 and result.summary["errors"] == 3


def test_open_loop_and_load_workers(llmperf_oracle: Oracle) -> None:
    server = llmperf_oracle(embed_ms=20)
    wl = Workload(embeddings=True, input_tokens=10, requests=20, warmup=1, rate=50, seed=3)
    result = bench(server, wl)
    s = result.summary
    assert s["errors"] == 0 and 20 <= s["e2e_p50_ms"] < 30
    measured = [r for r in result.samples if not r.warmup]
    assert all(r.scheduled_ns is not None for r in measured)
    workers = bench(server, Workload(embeddings=True, input_tokens=10, requests=12,
                                     concurrency=4), load_workers=2)
    assert workers.summary["errors"] == 0 and workers.client["load_workers"] == 2
    assert all(r.embedding for r in workers.samples)
    assert 20 <= workers.summary["e2e_p50_ms"] < 35


SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf(e2e_p95_ms=60000, min_rps=1)
def test_embed(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(embeddings=True, input_tokens=16, requests=6,
                                                concurrency=2))
    assert result.errors == 0 and result.ttft_p50_ms is None

@llmperf(e2e_p95_ms=1)
def test_embed_too_strict(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(embeddings=True, input_tokens=16, requests=3))
"""


def test_thresholds_and_reports_in_a_session(llmperf_pytester: pytest.Pytester,
                                             llmperf_oracle: Oracle) -> None:
    server = llmperf_oracle(embed_ms=15)
    pt = llmperf_pytester
    pt.makepyfile(test_suite=SUITE)
    result = pt.runpytest("--llmperf", "--llmperf-url", server.url, "--llmperf-json=r.json",
                          "--llmperf-markdown=r.md", "--llmperf-html=r.html")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    no_internal_traceback(out)
    data = {t["nodeid"]: t for t in json.loads((pt.path / "r.json").read_text())["tests"]}
    strict = data["test_suite.py::test_embed_too_strict"]["runs"][0]["summary"]
    result.stdout.fnmatch_lines([f"*llmperf: e2e_p95_ms {strict['e2e_p95_ms']:.4g} > 1*"])
    run = data["test_suite.py::test_embed"]["runs"][0]
    s = run["summary"]
    assert run["workload"]["embeddings"] is True
    assert 15 <= s["e2e_p50_ms"] < 30 and s["ttft_p50_ms"] is None and s["output_tps"] is None
    assert s["input_tps"] == pytest.approx(s["rps"] * 16)
    assert all(r["embedding"] and r["chunk_tokens"] == [0] for r in run["samples"])
    # Markdown: the embedding columns, with the run's figures; no TTFT claimed.
    table = [line for line in (pt.path / "r.md").read_text().splitlines()
             if line.startswith("| `test_embed`")]
    header = next(line for line in (pt.path / "r.md").read_text().splitlines()
                  if line.startswith("| test |"))
    cells = dict(zip([c.strip() for c in header.split("|")],
                     [c.strip() for c in table[0].split("|")], strict=True))
    assert cells["TTFT p50 ms"] == "-" and cells["out tok/s"] == "-"
    assert float(cells["E2E p50 ms"]) == pytest.approx(s["e2e_p50_ms"], rel=0.01)
    assert float(cells["in tok/s"]) == pytest.approx(s["input_tps"], rel=0.01)
    html = (pt.path / "r.html").read_text()
    assert "Embedding request latency (CDF)" in html and "embeddings of 16 input tokens" in html
    assert "ITL distribution" not in html


GATE_TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf(repeats=3)
def test_embed(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(embeddings=True, input_tokens=16, requests=6))
"""


def test_the_gate_catches_a_slower_embedding_server(llmperf_pytester: pytest.Pytester,
                                                    llmperf_oracle: Oracle) -> None:
    fast, slow = llmperf_oracle(embed_ms=10), llmperf_oracle(embed_ms=40)
    pt = llmperf_pytester
    pt.makepyfile(test_embed=GATE_TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n*.json\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    saved = pt.runpytest("--llmperf", "--llmperf-url", fast.url, "--llmperf-save")
    saved.assert_outcomes(passed=1)
    git(pt.path, "add", "-f", "baselines")
    git(pt.path, "commit", "-q", "-m", "baseline")
    (pt.path / "notes.txt").write_text("x")
    git(pt.path, "add", "notes.txt")
    git(pt.path, "commit", "-q", "-m", "change")
    out = Path(pt.path / "r.json")
    res = pt.runpytest("--llmperf", "--llmperf-url", slow.url, f"--llmperf-json={out}")
    res.assert_outcomes(failed=1)
    no_internal_traceback(res.stdout.str())
    comp = json.loads(out.read_text())["tests"][0]["comparison"]
    gated = {m["metric"]: m for m in comp["metrics"] if m["gated"]}
    assert set(gated) == {"e2e_p50_ms", "input_tps"}
    assert gated["e2e_p50_ms"]["verdict"] == "regression"
    assert gated["e2e_p50_ms"]["change_pct"] > 100  # 10 ms -> 40 ms
    assert gated["input_tps"]["change_pct"] < -50


CAPACITY = """
from pytest_llmperf import Workload, llmperf

WL = Workload(embeddings=True, input_tokens=8, requests=16, warmup=0, seed=1,
              arrival="gamma", burstiness=50.0)

@llmperf(min_capacity_rps=4)
def test_enough(llmperf_bench, llm_engine):
    c = llmperf_bench.capacity(llm_engine, WL, slo={"e2e_ms": 1000}, start_rps=4.0,
                               max_rps=8.0)
    assert c.capacity_rps == 8.0

def test_default_slo(llmperf_bench, llm_engine):
    llmperf_bench.capacity(llm_engine, WL, start_rps=4.0, max_rps=8.0)
"""


def test_capacity_of_an_embedding_server(llmperf_pytester: pytest.Pytester,
                                         llmperf_oracle: Oracle) -> None:
    server = llmperf_oracle(embed_ms=10)
    llmperf_pytester.makepyfile(test_embed_capacity=CAPACITY)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-url", server.url)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*llmperf: capacity: an embeddings workload has no TTFT or TPOT, which the default "
        "SLO bounds: give slo={'e2e_ms': ...} or E2E percentiles such as e2e_p95_ms*"])
    no_internal_traceback(result.stdout.str())
