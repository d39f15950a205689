"""Trace replay on the embedded engine: the first requests of a small Mooncake-format trace
(example_suites/traces/, made by scripts/make_sample_traces.py), sent on the trace's own
timestamps with its prompt and answer lengths; the prompts share token blocks as the trace's
``hash_ids`` say. The summary adds the trace's ideal prefix hit rate and TTFT split by the
requests the trace expects cached and the others (docs/guides/writing-tests.md, "Trace
replay"). Limits are loose, as in test_embedded.py: this must pass on a busy 2-core runner.
"""

from pathlib import Path

from pytest_llmperf import Workload, llmperf

TRACE = Path(__file__).parent.parent / "traces" / "mooncake_sample.jsonl"


@llmperf(e2e_p95_ms=60000, max_errors=0)
def test_replay_a_mooncake_trace(llmperf_bench, llm_engine):
    # Time stretched 20x (trace_speedup=0.05): the in-process engine serves one request at a
    # time, about half a second each here, and the trace's requests come 18-200 ms apart; at
    # the trace's own pace they would queue, and the run would say by how much
    # (ttft_sched_*, docs/metrics.md).
    workload = Workload(trace=str(TRACE), trace_block_size=32, trace_speedup=0.05,
                        requests=4, warmup=1)
    result = llmperf_bench(llm_engine, workload)
    assert result.summary["requests"] == 4
    # The first 4 entries' prompts: their lengths, exactly (BOS included).
    assert result.summary["input_tokens"] == 32 + 154 + 156 + 160
    assert result.summary["trace_ideal_hit_rate"] is not None
