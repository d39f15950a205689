"""Server metrics: a server's Prometheus metrics read before, during and after each run into
the summary (prefix-cache hit rate, peak KV-cache usage, preemptions, speculative decoding),
with marker thresholds on them.

The served checks use the test oracle in its metrics mode: vLLM's exposition, written by
prometheus_client as vLLM's is, with counters that move by known amounts per request
(``testing.oracle._OracleMetrics``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.engines.server_metrics import (
    ServerMetricsSampler,
    parse_text,
    registry_snapshot,
    run_figures,
)
from pytest_llmperf.metric_table import SERVER_KEYS, SUMMARY_KEYS
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer
from pytest_llmperf.verdict.thresholds import MarkerError, evaluate, validate_marker

# What vLLM 0.x's /metrics looks like (two engines, counters with _total and _created, a
# histogram, an info metric), trimmed.
VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 600.0
# HELP vllm:prefix_cache_queries_created Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_created gauge
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e+09
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 400.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 0.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 3.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 8.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 8.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",enable_prefix_caching="True"} 1.0
"""

LLAMA_SERVER_TEXT = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 6886
# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.125
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
"""


def test_vllm_text_is_summed_over_engines_and_gauges_take_the_max() -> None:
    snap = parse_text(VLLM_TEXT)
    assert snap == {
        "vllm:kv_cache_usage_perc": 0.5,
        "vllm:prefix_cache_queries": 1600.0,
        "vllm:prefix_cache_hits": 400.0,
        "vllm:num_preemptions": 3.0,
    }
    assert parse_text(VLLM_TEXT, ["vllm:kv_cache_usage_perc"]) == {
        "vllm:kv_cache_usage_perc": 0.5}
    assert parse_text(LLAMA_SERVER_TEXT) == {"llamacpp:kv_cache_usage_ratio": 0.125,
                                             "llamacpp:prompt_tokens": 6886.0}
    assert parse_text("<html>not metrics</html>\n{") is None


def test_figures_from_deltas_and_absent_stays_absent() -> None:
    before = {"vllm:prefix_cache_queries": 1000.0, "vllm:prefix_cache_hits": 100.0,
              "vllm:num_preemptions": 2.0, "vllm:kv_cache_usage_perc": 0.0,
              "vllm:spec_decode_num_drafts": 10.0, "vllm:spec_decode_num_draft_tokens": 30.0,
              "vllm:spec_decode_num_accepted_tokens": 5.0}
    after = {"vllm:prefix_cache_queries": 1800.0, "vllm:prefix_cache_hits": 700.0,
             "vllm:num_preemptions": 2.0, "vllm:kv_cache_usage_perc": 0.0625,
             "vllm:spec_decode_num_drafts": 60.0, "vllm:spec_decode_num_draft_tokens": 180.0,
             "vllm:spec_decode_num_accepted_tokens": 95.0}
    during = [{"vllm:kv_cache_usage_perc": 0.5}, {"vllm:kv_cache_usage_perc": 0.75}, {}]
    f = run_figures(before, after, during)
    assert f == {"prefix_hit_rate": 0.75, "peak_kv_usage": 0.75, "preemptions": 0,
                 "spec_accept_rate": 0.6, "spec_accept_len": 1 + 90 / 50}
    assert set(f) == set(SERVER_KEYS) <= set(SUMMARY_KEYS)
    # Without speculation or prefix-cache counters: those figures are absent, not 0.
    bare = {"vllm:kv_cache_usage_perc": 0.25}
    assert run_figures(bare, bare) == {"prefix_hit_rate": None, "peak_kv_usage": 0.25,
                                       "preemptions": None, "spec_accept_rate": None,
                                       "spec_accept_len": None}
    # No request looked up the cache (the denominator did not move): no rate.
    same = {"vllm:prefix_cache_queries": 5.0, "vllm:prefix_cache_hits": 5.0}
    assert run_figures(same, same)["prefix_hit_rate"] is None
    # A counter that went down (the server restarted) means nothing.
    assert run_figures({"vllm:num_preemptions": 9.0},
                       {"vllm:num_preemptions": 1.0})["preemptions"] is None
    # llama.cpp's gauge maps; an older vLLM's name too.
    assert run_figures({}, {"llamacpp:kv_cache_usage_ratio": 0.125})["peak_kv_usage"] == 0.125
    assert run_figures({}, {"vllm:gpu_cache_usage_perc": 0.3})["peak_kv_usage"] == 0.3
    assert all(v is None for v in run_figures(None, after).values())


def test_registry_snapshot_reads_the_in_process_registry() -> None:
    from prometheus_client import REGISTRY, Counter, Gauge

    hits = Counter("vllm:prefix_cache_hits", "hits", ["engine"])
    usage = Gauge("vllm:kv_cache_usage_perc", "usage", ["engine"])
    try:
        before = registry_snapshot()
        assert before is not None and before["vllm:prefix_cache_hits"] == 0.0
        hits.labels("0").inc(30)
        hits.labels("1").inc(12)
        usage.labels("0").set(0.4)
        snap = registry_snapshot()
        assert snap is not None
        assert snap["vllm:prefix_cache_hits"] == 42.0
        assert snap["vllm:kv_cache_usage_perc"] == 0.4
        assert registry_snapshot(["vllm:kv_cache_usage_perc"]) == {
            "vllm:kv_cache_usage_perc": 0.4}
    finally:
        REGISTRY.unregister(hits)
        REGISTRY.unregister(usage)


def test_a_failing_source_gives_no_figures_and_no_error() -> None:
    calls: list[object] = []

    def broken(names: object) -> dict[str, float] | None:
        calls.append(names)
        raise RuntimeError("boom")

    with ServerMetricsSampler(broken, interval_s=0.01) as m:
        pass
    assert all(v is None for v in m.figures().values())
    assert calls == [None]  # asked once; no sampling, no after snapshot


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


def test_server_metric_thresholds_are_fractions_where_they_are() -> None:
    for name in ("min_prefix_hit_rate", "max_kv_usage", "min_spec_accept_rate"):
        with pytest.raises(MarkerError, match="is a fraction"):
            validate_marker((), {name: 1.5})
    checks = evaluate(validate_marker((), {"min_prefix_hit_rate": 0.5, "max_preemptions": 0}),
                      {"prefix_hit_rate": None, "preemptions": 3})
    assert [(c.name, c.passed, c.measured) for c in checks] == [
        ("max_preemptions", False, 3.0), ("min_prefix_hit_rate", False, None)]
    assert checks[1].short() == "min_prefix_hit_rate not measured (limit >= 0.5)"


def llama_server_text(prompt: int, cached: int, drafted: int, accepted: int, steps: int) -> str:
    """What llama-server's ``/metrics`` prints (``to_metrics`` in llama.cpp's
    tools/server/server-task.cpp, as vendored in llama-cpp-python 0.3.36): plain counters."""
    rows = [("prompt_tokens_total", prompt), ("prompt_tokens_cached_total", cached),
            ("tokens_predicted_total", 99), ("spec_decode_num_draft_tokens_total", drafted),
            ("spec_decode_num_accepted_tokens_total", accepted),
            ("spec_decode_num_drafts_total", steps)]
    return "".join(f"# HELP llamacpp:{n} x\n# TYPE llamacpp:{n} counter\nllamacpp:{n} {v}\n"
                   for n, v in rows)


def test_llama_server_counters_give_hit_rate_and_acceptance() -> None:
    # Its prompt counter excludes cached tokens: hit rate = cached / (processed + cached).
    before = parse_text(llama_server_text(100, 0, 10, 5, 4))
    after = parse_text(llama_server_text(150, 150, 50, 35, 14))
    figures = run_figures(before, after)
    assert figures["prefix_hit_rate"] == pytest.approx(150 / 200)
    assert figures["spec_accept_rate"] == pytest.approx(30 / 40)
    assert figures["spec_accept_len"] == pytest.approx(1 + 30 / 10)
    assert figures["peak_kv_usage"] is None  # this llama-server exposes no KV-usage gauge
