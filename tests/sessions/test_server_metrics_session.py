"""Server metrics: a server's Prometheus metrics read before, during and after each run into
the summary (prefix-cache hit rate, peak KV-cache usage, preemptions, speculative decoding),
with marker thresholds on them.

The served checks use the test oracle in its metrics mode: vLLM's exposition, written by
prometheus_client as vLLM's is, with counters that move by known amounts per request
(``testing.oracle._OracleMetrics``).

Split by tier from tests/test_server_metrics.py: these are its sessions tests; the others are
in tests/unit/engines/test_server_metrics.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.metric_table import SERVER_KEYS
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer


def test_the_oracle_serves_vllm_exposition_filtered_by_name() -> None:
    import urllib.request

    with OracleServer(OracleConfig(metrics=True)) as oracle:
        text = urllib.request.urlopen(oracle.url + "/metrics").read().decode()
        only = urllib.request.urlopen(
            oracle.url + "/metrics?name[]=vllm:kv_cache_usage_perc").read().decode()
    assert "# TYPE vllm:prefix_cache_hits_total counter" in text
    assert 'vllm:kv_cache_usage_perc{engine="1",model_name="oracle"} 0.0' in text
    assert "vllm:kv_cache_usage_perc" in only and "prefix_cache" not in only


def test_a_server_without_metrics_is_asked_once_and_reports_nothing() -> None:
    with OracleServer(OracleConfig(ttft_ms=5, itl_ms=2)) as oracle:
        engine = OpenAIEngine(oracle.url)
        try:
            results = [run_benchmark(engine, Workload(input_tokens=8, output_tokens=4,
                                                      requests=2)) for _ in range(2)]
        finally:
            engine.close()
        assert oracle.metrics_requests == 1
    for result in results:
        assert all(result.summary[k] is None for k in SERVER_KEYS)
        assert not any("metric" in w for w in result.warnings)  # nothing said about it


def test_a_served_session_reports_server_metrics_and_gates_on_them(
    pytester: pytest.Pytester,
) -> None:
    """Known amounts (see _OracleMetrics): 7 prompts (1 warm-up) of 64 tokens sharing 40 words
    after BOS; the counters cover the 6 measured ones (the warm-up is before the window):
    queries 6 x 64; each prompt after the first hits 41 tokens, rounded down to 2 blocks of
    16: hits 6 x 32, a hit rate of 1/2 (3/7 if the warm-up's cold prompt counted).
    Preemptions 6 x 2; speculation 3 of 4 draft tokens accepted (rate 0.75, mean accepted
    length 4). KV-cache usage is 0 when the oracle is idle, so a peak above 0 was sampled
    during the run."""
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(min_prefix_hit_rate=0.6, max_kv_usage=0.9, min_spec_accept_rate=0.7,
                 max_preemptions=100)
        def test_served(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(
                input_tokens=64, output_tokens=40, requests=6, concurrency=2,
                shared_prefix_tokens=40))
            assert result.errors == 0
        """
    )
    out, junit, html = (pytester.path / n for n in ("out.json", "junit.xml", "report.html"))
    config = OracleConfig(ttft_ms=20, itl_ms=10, metrics=True, kv_capacity_tokens=1000,
                          preemptions_per_request=2, spec_tokens=4, spec_accepted=3)
    with OracleServer(config) as oracle:
        result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                    f"--llmperf-json={out}", f"--junitxml={junit}",
                                    f"--llmperf-html={html}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*min_prefix_hit_rate 0.5* < 0.6*"])
    test = json.loads(out.read_text())["tests"][0]
    s = test["runs"][0]["summary"]
    assert s["prefix_hit_rate"] == pytest.approx(1 / 2)
    assert s["preemptions"] == 12
    assert s["spec_accept_rate"] == pytest.approx(0.75)
    assert s["spec_accept_len"] == pytest.approx(4.0)
    # Sampled while requests were in flight: at least one prompt (64 tokens), at most two
    # prompts with their answers (2 x 104) on one engine, over 1000 tokens.
    assert 0.064 <= s["peak_kv_usage"] <= 0.208
    assert test["outcome"] == "failed" and "min_prefix_hit_rate" in test["message"]
    assert not any(name in test["message"] for name in
                   ("max_kv_usage", "min_spec_accept_rate", "max_preemptions"))
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert float(props["prefix_hit_rate"] or "nan") == pytest.approx(1 / 2)
    page = html.read_text()
    assert "Server metrics" in page and 'data-metric="prefix_hit_rate"' in page
