"""Length distributions and local datasets (issue 24) against the known-schedule oracle: the
realized lengths are recorded per request and follow the asked distribution, the server sees
exactly the dataset's prompts and asked lengths, and a real session's JSON and HTML carry
them (the HTML as histograms of the JSON's numbers)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import oracle_bench as bench
from helpers import parse_page

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.metrics import RequestRecord
from pytest_llmperf.run.workload import INPUT_STREAM, OUTPUT_STREAM, Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer


@pytest.fixture
def server() -> Iterator[OracleServer]:
    with OracleServer(OracleConfig(ttft_ms=2.0, itl_ms=0.5)) as srv:
        yield srv


def test_distributed_lengths_are_sent_recorded_and_follow_the_distribution(
        server: OracleServer) -> None:
    w = Workload(input_tokens={"dist": "normal", "mean": 60, "std": 15, "min": 20, "max": 100},
                 output_tokens={"dist": "lognormal", "mean": 12, "std": 6, "min": 2,
                                "max": 40},
                 requests=300, warmup=2, concurrency=16, seed=5)
    result = bench(server, w)
    assert result.summary["errors"] == 0 and result.summary["requests"] == 300
    records = sorted(result.samples, key=lambda r: r.index)
    want_in = w.input_lengths.draw(302, 5, INPUT_STREAM)
    want_out = w.output_lengths.draw(302, 5, OUTPUT_STREAM)
    # Recorded per request: the prompt's tokens, the asked and the generated output length.
    assert [r.prompt_tokens for r in records] == want_in
    assert [r.asked_output_tokens for r in records] == want_out
    assert [r.output_tokens for r in records] == want_out  # the oracle honours max_tokens
    # What the server saw: each prompt of its drawn length (its own tokenizer's count) and
    # the drawn max_tokens, request by request.
    tok = WordTokenizer()
    seen = Counter((len(tok.tokenize(log.prompt)), log.body["max_tokens"])
                   for log in server.logs)
    assert seen == Counter(zip(want_in, want_out, strict=True))
    # The realized lengths follow the asked distributions (300 draws: within 4 std errors).
    measured = [r for r in records if not r.warmup]
    x = np.array([r.prompt_tokens for r in measured])
    assert x.min() >= 20 and x.max() <= 100
    assert abs(x.mean() - 60) < 4 * 15 / np.sqrt(300)
    assert x.std() == pytest.approx(15, rel=0.15)
    y = np.array([r.output_tokens for r in measured])
    assert abs(y.mean() - 12) < 4 * 6 / np.sqrt(300)
    assert np.median(y) < y.mean()  # log-normal: skewed right
    assert result.summary["input_tokens"] == int(x.sum())
    assert result.summary["output_tokens"] == int(y.sum())
    # A stored record keeps the asked length (JSON round trip).
    again = RequestRecord.from_dict(json.loads(json.dumps(records[7].to_dict())))
    assert again.asked_output_tokens == want_out[7]


def test_a_dataset_run_sends_the_datasets_prompts_and_lengths(server: OracleServer,
                                                              tmp_path: Path) -> None:
    rows = [{"question": f"tell me about item {i} please", "n": 3 + i % 5} for i in range(12)]
    path = tmp_path / "qa.csv"
    path.write_text("question,n\n" + "".join(f"{r['question']},{r['n']}\n" for r in rows))
    w = Workload(dataset=str(path), dataset_columns={"prompt": "question",
                                                     "output_tokens": "n"},
                 requests=24, warmup=0, concurrency=4, seed=3)
    result = bench(server, w)
    assert result.summary["errors"] == 0
    # Every row twice (24 requests of 12 rows, shuffled then cycled), each with its length.
    sent = Counter((log.prompt, log.body["max_tokens"]) for log in server.logs)
    assert sent == Counter({(r["question"], r["n"]): 2 for r in rows})
    by_index = sorted(result.samples, key=lambda r: r.index)
    assert [r.asked_output_tokens for r in by_index[:12]] == [
        r.output_tokens for r in by_index[:12]]
    assert sorted(r.asked_output_tokens or 0 for r in by_index) == sorted(
        [r["n"] for r in rows] * 2)


def test_multi_turn_user_messages_draw_their_lengths(server: OracleServer) -> None:
    w = Workload(input_tokens={"dist": "uniform", "min": 4, "max": 30},
                 output_tokens={"dist": "uniform", "min": 2, "max": 6},
                 requests=4, warmup=0, turns=3, concurrency=1, seed=2)
    result = bench(server, w)
    assert result.summary["errors"] == 0
    by_session: dict[int, list[RequestRecord]] = {}
    for r in sorted(result.samples, key=lambda r: (r.session or 0, r.turn or 0)):
        by_session.setdefault(r.session or 0, []).append(r)
    for s, turns in by_session.items():
        users = w.input_lengths.draw(3, 2, INPUT_STREAM, s)
        answers = w.output_lengths.draw(3, 2, OUTPUT_STREAM, s)
        assert [r.asked_output_tokens for r in turns] == answers
        # Turn k's prompt: BOS + the users' messages so far + the answers before it.
        for k, r in enumerate(turns):
            assert r.prompt_tokens == 1 + sum(users[:k + 1]) + sum(answers[:k])


SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf(max_errors=0)
def test_mixed(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(
        input_tokens={"dist": "uniform", "min": 8, "max": 64},
        output_tokens={"dist": "normal", "mean": 10, "std": 3, "min": 2},
        requests=40, warmup=0, concurrency=1))
"""


def test_a_session_reports_the_lengths_in_json_and_html(pytester: pytest.Pytester,
                                                       server: OracleServer) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}",
                                "--llmperf-json=r.json", "--llmperf-html=r.html")
    result.assert_outcomes(passed=1)
    run = json.loads((pytester.path / "r.json").read_text())["tests"][0]["runs"][0]
    assert run["workload"]["input_tokens"] == {"dist": "uniform", "min": 8, "max": 64}
    samples = [RequestRecord.from_dict(s) for s in run["samples"]]
    ins = [r.prompt_tokens for r in samples]
    outs = [r.output_tokens for r in samples]
    assert [r.asked_output_tokens for r in samples] == outs and len(set(ins)) > 10
    page = parse_page((pytester.path / "r.html").read_text(encoding="utf-8"))
    for kind, values in (("input", ins), ("output", outs)):
        series = page.find("svg", data_plot="lengths", data_kind=kind).find("g",
                                                                             class_="series")
        assert int(series.attrs["data-n"]) == 40
        assert (int(series.attrs["data-min"]), int(series.attrs["data-max"])) == (
            min(values), max(values))
        for bar in series.find_all("rect", class_="bar"):
            lo, hi = int(bar.attrs["data-lo"]), int(bar.attrs["data-hi"])
            assert int(bar.attrs["data-n"]) == sum(1 for v in values if lo <= v < hi)
    assert "uniform in [8, 64] in" in page.text()


def test_load_workers_keep_each_requests_drawn_lengths(server: OracleServer) -> None:
    """--llmperf-load-workers: the workload and its prompts go to other processes, the
    records come back; each keeps its draw."""
    import asyncio

    from pytest_llmperf.run.loadgen import run_load
    from pytest_llmperf.run.workload import build_prompts

    w = Workload(input_tokens={"dist": "uniform", "min": 5, "max": 50},
                 output_tokens={"dist": "empirical", "values": [2, 3, 9]},
                 requests=12, warmup=0, concurrency=4, seed=9)
    engine = OpenAIEngine(server.url, tokenizer=WordTokenizer())
    try:
        prompts = build_prompts(engine.tokenizer, w)
        load = asyncio.run(run_load(engine, prompts, w, workers=2))
    finally:
        engine.close()
    records = sorted(load.records, key=lambda r: r.index)
    assert [r.prompt_tokens for r in records] == w.input_lengths.draw(12, 9, INPUT_STREAM)
    want_out = w.output_lengths.draw(12, 9, OUTPUT_STREAM)
    assert [r.asked_output_tokens for r in records] == want_out
    assert [r.output_tokens for r in records] == want_out


def test_a_bad_dataset_or_distribution_fails_the_test_in_one_line(
        pytester: pytest.Pytester, server: OracleServer) -> None:
    from helpers import no_internal_traceback

    (pytester.path / "qa.csv").write_text("question,n\nhello,3\n")
    pytester.makepyfile(test_suite="""
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_column(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(dataset="qa.csv", dataset_columns={"prompt": "text"}))

@llmperf()
def test_dist(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, input_tokens={"dist": "normal", "mean": 64})
""")
    result = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    no_internal_traceback(out)
    result.stdout.fnmatch_lines([
        "*qa.csv:1: no column 'text' (the prompt, from Workload.dataset_columns); the "
        "columns are: n, question*",
        "*llmperf: bad workload: Workload.input_tokens (normal) needs 'mean' and 'std'*"])
