"""Reasoning and answer phases against the oracle, whose chat answers stream their first N
tokens as reasoning deltas on an exact schedule: TTFT is the first reasoning token, TTFA the
first answer token, so TTFA - TTFT = N * itl_ms; ITL per phase is itl_ms; the reasoning
tokens come from the server's usage, else a local tokenizer, else the chunks. Then a whole
session: the marker gates on ttfa_p95_ms, and the JSON, HTML and Markdown reports carry the
figures.

Tolerances are generous on this shared machine; the client and the oracle share a clock, so
the client's TTFA - TTFT is also checked against what the oracle sent.
"""

from __future__ import annotations

import json
import statistics

import pytest

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.metric_table import REASONING_KEYS
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.metrics import RunResult
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer

TTFT, ITL, N, OUT = 30.0, 12.0, 6, 16
TOL_MS = 15.0


def _run(oracle: OracleServer, tokenizer: object = "auto", chat: bool = True) -> RunResult:
    engine = OpenAIEngine(oracle.url, chat=chat, tokenizer=tokenizer)  # type: ignore[arg-type]
    try:
        return run_benchmark(engine, Workload(input_tokens=8, output_tokens=OUT, requests=6,
                                              concurrency=2, warmup=1, chat=chat))
    finally:
        engine.close()


@pytest.mark.parametrize(("field", "usage", "tokenizer", "source"), [
    ("reasoning_content", True, "auto", "usage"),  # DeepSeek / SGLang shape, server's count
    ("reasoning", True, "auto", "usage"),  # vLLM's shape
    ("reasoning", False, "auto", "chunks"),  # no count from the server, no local tokenizer
    ("reasoning_content", False, "local", "tokenizer"),  # a local tokenizer counts them
])
def test_reasoning_schedule_gives_exact_ttfa_itl_per_phase_and_tokens(
        field: str, usage: bool, tokenizer: str, source: str) -> None:
    cfg = OracleConfig(ttft_ms=TTFT, itl_ms=ITL, reasoning_tokens=N, reasoning_field=field,
                       reasoning_usage=usage)
    with OracleServer(cfg) as oracle:
        result = _run(oracle, WordTokenizer() if tokenizer == "local" else "auto")
        sent = [log.sent_ns for log in oracle.logs]
    s = result.summary
    assert s["errors"] == 0 and s["requests"] == 6
    measured = [r for r in result.samples if not r.warmup]
    for r in measured:
        assert r.reasoning_chunks == N and len(r.chunk_ns) == OUT
        assert r.reasoning_tokens == N and r.reasoning_tokens_source == source
        assert r.output_tokens == OUT
        assert r.ttft_ns is not None and r.ttfa_ns is not None
        assert abs((r.ttfa_ns - r.ttft_ns) / 1e6 - N * ITL) < TOL_MS
    # The client's TTFA - TTFT against the oracle's own sends (one clock): tight.
    client = statistics.median((r.ttfa_ns - r.ttft_ns) / 1e6 for r in result.samples
                               if r.ttfa_ns is not None and r.ttft_ns is not None)
    server = statistics.median((s_ns[N] - s_ns[0]) / 1e6 for s_ns in sent)
    assert abs(client - server) < 5.0, (client, server)
    assert abs(s["ttft_p50_ms"] - TTFT) < TOL_MS + 10
    assert abs(s["ttfa_p50_ms"] - s["ttft_p50_ms"] - N * ITL) < TOL_MS
    assert abs(s["itl_reasoning_p50_ms"] - ITL) < 5.0
    assert abs(s["itl_answer_p50_ms"] - ITL) < 5.0
    assert s["reasoning_tokens_total"] == 6 * N and s["reasoning_tokens_mean"] == N
    # TTFT is unchanged by reasoning: the first token of any kind.
    assert all(r.ttft_ns is not None and r.ttft_ns < r.ttfa_ns for r in measured)  # type: ignore[operator]


def test_without_reasoning_or_on_completions_the_figures_are_none() -> None:
    with OracleServer(OracleConfig(ttft_ms=TTFT, itl_ms=ITL)) as oracle:
        plain = _run(oracle)
    with OracleServer(OracleConfig(ttft_ms=TTFT, itl_ms=ITL, reasoning_tokens=N)) as oracle:
        completions = _run(oracle, chat=False)  # no deltas: the oracle sends text only
    for result in (plain, completions):
        assert result.summary["errors"] == 0
        assert all(result.summary[k] is None for k in REASONING_KEYS)
        assert all(r.reasoning_chunks == 0 and r.reasoning_tokens is None
                   for r in result.samples)


def test_all_budget_spent_thinking_has_no_ttfa() -> None:
    cfg = OracleConfig(ttft_ms=TTFT, itl_ms=ITL, reasoning_tokens=OUT + 4)
    with OracleServer(cfg) as oracle:
        result = _run(oracle)
    s = result.summary
    assert s["errors"] == 0
    assert all(r.reasoning_chunks == OUT and r.ttfa_ns is None for r in result.samples)
    assert s["ttfa_p50_ms"] is None and s["reasoning_tokens_total"] == 6 * OUT
    assert s["itl_answer_p50_ms"] is None and s["itl_reasoning_p50_ms"] is not None


SUITE = """
from pytest_llmperf import Workload, llmperf


@llmperf(ttfa_p95_ms={limit}, max_errors=0)
def test_thinking(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=12, requests=4,
                                                warmup=0, chat=True))
    assert result.summary["reasoning_tokens_total"] == 4 * 5
"""


@pytest.mark.parametrize("oracle", [OracleConfig(ttft_ms=TTFT, itl_ms=ITL, reasoning_tokens=5,
                                                 reasoning_field="reasoning")],
                         indirect=True)
def test_a_session_gates_on_ttfa_and_reports_it(pytester: pytest.Pytester,
                                                oracle: OracleServer) -> None:
    # TTFA is about 30 + 5 * 12 = 90 ms: a 40 ms limit fails (TTFT alone would pass it).
    pytester.makepyfile(test_fails=SUITE.format(limit=40), test_passes=SUITE.format(limit=2000))
    out, html, md = (pytester.path / n for n in ("out.json", "report.html", "summary.md"))
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                f"--llmperf-json={out}", f"--llmperf-html={html}",
                                f"--llmperf-markdown={md}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ttfa_p95_ms*"])
    data = json.loads(out.read_text())
    runs = {t["nodeid"].partition("::")[0]: t["runs"][0] for t in data["tests"]}
    summary = runs["test_passes.py"]["summary"]
    assert abs(summary["ttfa_p50_ms"] - summary["ttft_p50_ms"] - 5 * ITL) < TOL_MS
    assert summary["reasoning_tokens_mean"] == 5
    sample = runs["test_passes.py"]["samples"][0]
    assert sample["reasoning_chunks"] == 5 and sample["reasoning_tokens_source"] == "usage"
    page = html.read_text()
    assert "Reasoning and answer phases" in page and "reasoning-metrics" in page
    assert 'data-metric="ttfa_p95_ms"' in page
    text = md.read_text()
    assert "**Reasoning and answer phases**" in text
    assert "TTFA p50 ms" in text and "reasoning tok/req" in text


def test_a_conversations_history_keeps_the_answer_not_the_thinking() -> None:
    # The oracle's answer words run from WORDS[0]: the first N are thinking, the rest content.
    cfg = OracleConfig(ttft_ms=5, itl_ms=2, reasoning_tokens=3, reasoning_field="reasoning")
    with OracleServer(cfg) as oracle:
        engine = OpenAIEngine(oracle.url, chat=True)
        try:
            result = run_benchmark(engine, Workload(input_tokens=6, output_tokens=5, requests=1,
                                                    warmup=0, turns=2, chat=True))
        finally:
            engine.close()
        bodies = [log.body for log in oracle.logs]
    assert result.summary["errors"] == 0
    assert [r.reasoning_chunks for r in result.samples] == [3, 3]
    assistant = [m["content"] for m in bodies[1]["messages"] if m["role"] == "assistant"]
    tok = WordTokenizer()
    assert [a.split() for a in assistant] == [tok.detokenize([5, 6]).split()]  # WORDS[3:5]


def test_load_workers_carry_the_reasoning_fields() -> None:
    cfg = OracleConfig(ttft_ms=TTFT, itl_ms=ITL, reasoning_tokens=N)
    with OracleServer(cfg) as oracle:
        engine = OpenAIEngine(oracle.url, chat=True)
        try:
            result = run_benchmark(engine, Workload(input_tokens=8, output_tokens=OUT,
                                                    requests=6, concurrency=4, warmup=0,
                                                    chat=True), load_workers=2)
        finally:
            engine.close()
    assert result.client["load_workers"] == 2
    assert [(r.reasoning_chunks, r.reasoning_tokens, r.reasoning_tokens_source)
            for r in result.samples] == [(N, N, "usage")] * 6
    assert abs(result.summary["ttfa_p50_ms"] - result.summary["ttft_p50_ms"] - N * ITL) < TOL_MS
