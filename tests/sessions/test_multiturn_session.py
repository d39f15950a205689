"""Multi-turn sessions (run/conversation.py): against the known-schedule oracle server (history
grows with the model's own answers, think time, per-turn TTFT with and without a modelled
prefix cache, the ShareGPT JSONL input, bad input) and against the real llama.cpp engine
(per-turn TTFT with its prefix cache on and off).

Split by tier from tests/test_multiturn.py: these are its sessions tests; the others are in
tests/unit/run/test_multiturn.py, tests/e2e/test_multiturn_e2e.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PREFILL_MS, TTFT_MS
from helpers import multiturn_oracle as oracle
from helpers import oracle_bench as bench

from pytest_llmperf.report.terminal import render_text
from pytest_llmperf.run.metrics import RunResult, turn_ttfts
from pytest_llmperf.run.workload import Workload, WorkloadError
from pytest_llmperf.testing.oracle import OracleServer, WordTokenizer


@pytest.fixture
def cached() -> Iterator[OracleServer]:
    with oracle(prefix_cache=True) as server:
        yield server


@pytest.mark.parametrize("chat", [False, True])
def test_history_grows_with_the_models_answers(cached: OracleServer, chat: bool) -> None:
    wl = Workload(input_tokens=12, output_tokens=5, requests=2, warmup=0, concurrency=2,
                  turns=3, think_time_s=0.05)
    result = bench(cached, wl, chat=chat)
    assert result.summary["errors"] == 0 and result.summary["requests"] == 6
    tok = WordTokenizer()
    samples = {(r.session, r.turn): r for r in result.samples}
    assert sorted(samples) == [(s, t) for s in (0, 1) for t in (1, 2, 3)]
    # What the server saw, per session in turn order (prompts are distinct per session).
    seen: dict[str, list[str]] = {}
    for log in cached.logs:
        first = log.prompt.split()[:12]
        seen.setdefault(" ".join(first), []).append(log.prompt)
    assert sorted(len(p) for p in seen.values()) == [3, 3]
    answer = " ".join(tok.detokenize(range(2, 7)).split())  # the oracle's 5 answer words
    for prompts in seen.values():
        for n in (0, 1):
            before, after = prompts[n].split(), prompts[n + 1].split()
            # Turn n+1 = turn n's prompt + the model's answer to it + 12 new user words.
            assert after[:len(before)] == before
            assert " ".join(after[len(before):len(before) + 5]) == answer
            assert len(after) == len(before) + 5 + 12
        if chat:
            body = next(log.body for log in cached.logs if log.prompt == prompts[2])
            assert [m["role"] for m in body["messages"]] == [
                "user", "assistant", "user", "assistant", "user"]
            assert body["messages"][1]["content"].split() == answer.split()
    # Token counts of the records: 1 BOS + 12, then + 5 + 12 per turn (completion only;
    # the chat prompt's count is the same plain-text history's).
    for r in result.samples:
        assert r.prompt_tokens == 1 + 12 + (r.turn - 1) * 17


def test_think_time_is_respected(cached: OracleServer) -> None:
    wl = Workload(input_tokens=6, output_tokens=3, requests=2, warmup=0, concurrency=2,
                  turns=3, think_time_s=[0.15, 0.25], seed=3)
    result = bench(cached, wl)
    assert result.summary["errors"] == 0
    samples = {(r.session, r.turn): r for r in result.samples}
    gaps = []
    for s in (0, 1):
        for t in (1, 2):
            prev, nxt = samples[(s, t)], samples[(s, t + 1)]
            assert prev.done_ns is not None
            gaps.append((nxt.send_ns - prev.done_ns) / 1e9)
    assert all(0.15 <= g < 0.25 + 0.1 for g in gaps), gaps
    assert len({round(g, 3) for g in gaps}) > 1  # drawn, not fixed
    # Session duration: 3 answers plus two pauses of at least 0.15 s each.
    assert result.summary["session_duration_p50_s"] > 0.3 + 3 * TTFT_MS / 1e3
    assert result.summary["sessions"] == 2 and result.summary["session_turns_mean"] == 3


def test_sessions_arrive_at_the_asked_rate(cached: OracleServer) -> None:
    """Open loop: with ``rate`` a new session starts every 1/rate s (near-constant gaps here)
    whatever the earlier ones are doing, so sessions overlap although concurrency is 1; the
    rate counts sessions, not requests."""
    wl = Workload(input_tokens=6, output_tokens=4, requests=6, warmup=0, turns=3,
                  think_time_s=0.2, rate=10.0, arrival="gamma", burstiness=200.0, seed=2)
    result = bench(cached, wl)
    s = result.summary
    assert s["errors"] == 0 and s["requests"] == 18 and s["sessions"] == 6
    firsts = sorted((r for r in result.samples if r.turn == 1), key=lambda r: r.send_ns)
    starts = [r.send_ns / 1e9 for r in firsts]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.05 < g < 0.15 for g in gaps), gaps  # 0.1 s apart (a loaded machine: +-50 ms)
    assert all(r.scheduled_ns is not None for r in firsts)
    assert all(r.scheduled_ns is None for r in result.samples if r.turn != 1)
    # Each session lasts over 0.4 s (two pauses of 0.2 s): 0.1 s apart they overlap.
    spans = {r.session: (r.send_ns, r.done_ns) for r in firsts}
    for r in result.samples:
        lo, hi = spans[r.session]
        assert r.done_ns is not None and hi is not None
        spans[r.session] = (min(lo, r.send_ns), max(hi, r.done_ns))
    overlapping = sum(1 for a in spans.values() for b in spans.values()
                      if a is not b and a[0] < b[0] < a[1])
    assert overlapping >= 5
    client = result.client
    assert client["asked_rate_rps"] == 10.0 and client["arrival"] == "gamma"
    assert 8.0 < client["achieved_send_rate_rps"] < 12.0, client  # sessions/s, not turns/s
    assert client["send_delay_p99_ms"] < 100, client
    assert not [w for w in result.warnings if "requests/s" in w], result.warnings


def test_per_turn_ttft_equals_the_injected_prefill(tmp_path: Path) -> None:
    """TTFT = ttft_ms + prefill_ms_per_token * uncached prompt tokens. The oracle's cache
    holds every earlier prompt and its answer, so with it a later turn prefills only its new
    user message; without it, the whole growing history."""
    wl = Workload(input_tokens=40, output_tokens=4, requests=2, warmup=0, concurrency=1,
                  turns=3)
    ttfts = {}
    for on in (True, False):
        with oracle(prefix_cache=on) as server:
            result = bench(server, wl)
            assert result.summary["errors"] == 0
            uncached = [log.uncached_tokens for log in server.logs]
        prompt = [1 + 40 + k * 44 for k in range(3)]  # BOS + 40, then + 4 answer + 40 user
        if on:  # a first turn may share a word or two with the other session's by chance
            assert [u for k, u in enumerate(uncached) if k % 3] == [40, 40] * 2, uncached
            assert all(prompt[0] - 3 <= uncached[k] <= prompt[0] for k in (0, 3)), uncached
        else:
            assert uncached == prompt * 2, uncached
        ttfts[on] = turn_ttfts(result.summary)
        assert len(ttfts[on]) == 3
        for k, got in enumerate(ttfts[on]):
            # p50 of the two sessions' turn k: the mean of their two prefills.
            want = TTFT_MS + PREFILL_MS * (uncached[k] + uncached[k + 3]) / 2
            assert got is not None and want <= got < want + 15, (on, k, got, want)
    # Later turns: cheap with reuse, growing without.
    assert ttfts[True][2] < ttfts[False][2] - 80


def test_summary_and_terminal_show_per_turn_figures(cached: OracleServer) -> None:
    from pytest_llmperf.results import TestRecord

    wl = Workload(input_tokens=8, output_tokens=3, requests=2, warmup=1, turns=2)
    result = bench(cached, wl)
    s = result.summary
    assert s["requests"] == 4  # measured turns over all sessions; warm-up session excluded
    assert {"ttft_p50_ms_turn1", "ttft_p50_ms_turn2", "sessions", "session_turns_mean",
            "session_duration_p50_s", "session_duration_max_s"} <= set(s)
    assert "ttft_p50_ms_turn3" not in s
    assert s["sessions"] == 2 and result.client["sessions"] == 2
    assert sum(1 for r in result.samples if r.warmup) == 2  # one warm-up session of 2 turns
    assert all(r.warmup for r in result.samples if r.session == 0)
    back = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert [(r.session, r.turn) for r in back.samples] == [
        (r.session, r.turn) for r in result.samples]
    text = render_text([TestRecord(nodeid="t.py::test_chat", outcome="passed", thresholds={},
                                   runs=[result]).to_dict()])
    assert "TTFT p50 by turn" in text and "sessions 2" in text


def test_conversations_file(cached: OracleServer, tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    lines = [
        {"conversations": [{"from": "human", "value": "red orange yellow"},
                           {"from": "gpt", "value": "not used at all"},
                           {"from": "human", "value": "green blue"}]},
        {"conversations": [{"from": "system", "value": "be brief"},
                           {"from": "human", "value": "river lake sea"}]},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = bench(cached, Workload(output_tokens=2, requests=3, warmup=0,
                                    conversations_file=str(path)))
    assert result.summary["errors"] == 0
    assert [(r.session, r.turn) for r in result.samples] == [
        (0, 1), (0, 2), (1, 1), (2, 1), (2, 2)]  # cycled over the file's conversations
    prompts = [log.prompt.split() for log in cached.logs]
    assert prompts[0] == ["red", "orange", "yellow"]
    assert prompts[1][:3] == ["red", "orange", "yellow"] and prompts[1][-2:] == ["green", "blue"]
    assert "not" not in prompts[1] and len(prompts[1]) == 3 + 2 + 2  # the model's own answer
    assert prompts[2] == ["river", "lake", "sea"]
    assert turn_ttfts(result.summary)[1] is not None
    # turns caps each conversation.
    capped = bench(cached, Workload(output_tokens=2, requests=1, warmup=0, turns=1,
                                    conversations_file=str(path)))
    assert [(r.session, r.turn) for r in capped.samples] == [(0, 1)]


@pytest.mark.parametrize(("text", "message"), [
    ("{not json\n", r"chats.jsonl:1: not valid JSON"),
    ('{"prompt": "x"}\n', r'chats.jsonl:1: expected an object with a "conversations" list'),
    ('{"conversations": [{"from": "human"}]}\n', r"conversations\[0\] must be an object"),
    ('{"conversations": [{"from": "gpt", "value": "hi"}]}\n', 'has no "human" turn'),
    ("\n\n", "no conversations in file"),
])
def test_bad_conversations_file(cached: OracleServer, tmp_path: Path, text: str,
                                message: str) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=message):
        bench(cached, Workload(requests=1, conversations_file=str(path)))


def test_no_tokenizer_needs_a_conversations_file(cached: OracleServer) -> None:
    from pytest_llmperf.run.conversation import session_messages

    with pytest.raises(WorkloadError, match="give a conversations_file instead"):
        session_messages(None, Workload(turns=2))


def test_plugin_session_json_and_terminal(pytester: pytest.Pytester,
                                          cached: OracleServer) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_errors=0)
        def test_chat(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(input_tokens=10, output_tokens=3, requests=2,
                                               warmup=0, concurrency=2, turns=3))

        def test_bad(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(conversations_file="bad.jsonl"))
        """
    )
    (pytester.path / "bad.jsonl").write_text('{"conversations": [{"from": "human"}]}\n')
    out = pytester.path / "out.json"
    result = pytester.runpytest("--llmperf", f"--llmperf-url={cached.url}",
                                f"--llmperf-json={out}")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "multi-turn test_plugin_session_json_and_terminal.py::test_chat: sessions 2" in text
    assert "bad.jsonl:1: conversations[0] must be an object" in text
    assert "pytest_llmperf/" not in text  # one line, no traceback from our internals
    run = json.loads(out.read_text())["tests"][0]["runs"][0]
    assert run["summary"]["sessions"] == 2 and run["summary"]["requests"] == 6
    assert all(run["summary"][f"ttft_p50_ms_turn{k}"] > 0 for k in (1, 2, 3))
    assert sorted((s["session"], s["turn"]) for s in run["samples"]) == [
        (s, t) for s in (0, 1) for t in (1, 2, 3)]
    assert run["workload"]["turns"] == 3
    assert len(cached.logs) == 6
