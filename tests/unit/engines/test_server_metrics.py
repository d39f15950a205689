"""Server metrics: a server's Prometheus metrics read before, during and after each run into
the summary (prefix-cache hit rate, peak KV-cache usage, preemptions, speculative decoding),
with marker thresholds on them.

The served checks use the test oracle in its metrics mode: vLLM's exposition, written by
prometheus_client as vLLM's is, with counters that move by known amounts per request
(``testing.oracle._OracleMetrics``).

Split by tier from tests/test_server_metrics.py: these are its unit tests; the others are in
tests/sessions/test_server_metrics_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.engines.server_metrics import (
    ServerMetricsSampler,
    parse_text,
    registry_snapshot,
    run_figures,
)
from pytest_llmperf.metric_table import SERVER_KEYS, SUMMARY_KEYS
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
