"""Trace replay (run/traces.py, run/trace_prompts.py, run/trace_cache.py): the four formats
read and detected, every bad line one WorkloadError naming file, line and field, the
Workload's trace fields, arrival offsets, prompts built from hash-id blocks (exact shared
prefixes, pure per (seed, hash_id)), the offline ideal prefix hit rate, and the TTFT split
by cached / uncached requests. The sample traces are what scripts/make_sample_traces.py
writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import ROOT

from pytest_llmperf.metric_table import LATENCY_KEYS, SECTIONS, SUMMARY_KEYS
from pytest_llmperf.run.metrics import RequestRecord, summarize
from pytest_llmperf.run.trace_cache import (
    expected_cached_tokens,
    ideal_hit_rate,
    mark_records,
    trace_figures,
)
from pytest_llmperf.run.trace_prompts import BlockMaker, trace_prompts, word_pool
from pytest_llmperf.run.traces import TraceEntry, detect_format, parse_trace, read_trace
from pytest_llmperf.run.workload import Workload, WorkloadError, arrival_offsets_s, build_prompts
from pytest_llmperf.testing.oracle import WordTokenizer

SAMPLES = ROOT / "example_suites" / "traces"
MOONCAKE = SAMPLES / "mooncake_sample.jsonl"


def mooncake(*rows: tuple[float, int, int, list[int]]) -> str:
    return "".join(json.dumps({"timestamp": t, "input_length": n, "output_length": o,
                               "hash_ids": h}) + "\n" for t, n, o, h in rows)


def write(tmp_path: Path, text: str, name: str = "t.jsonl") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def entry(n: int, hashes: list[int] | None, t: float = 0.0) -> TraceEntry:
    return TraceEntry(t, n, 4, tuple(hashes) if hashes is not None else None, 1)


# --- reading -------------------------------------------------------------------------------

def test_each_format_is_read_and_detected() -> None:
    text = mooncake((0, 40, 5, [1, 2]), (250, 70, 3, [1, 2, 3]))
    got = parse_trace(text, "m.jsonl")
    assert got == [TraceEntry(0.0, 40, 5, (1, 2), 1), TraceEntry(250.0, 70, 3, (1, 2, 3), 2)]
    assert detect_format(text, "m") == "mooncake"
    plain = '{"timestamp": 5, "input_length": 9, "output_length": 2}\n'
    assert parse_trace(plain, "p") == [TraceEntry(5.0, 9, 2, None, 1)]
    assert detect_format(plain, "p") == "jsonl"
    burst = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
             "5,ChatGPT,100,20,120,Conversation log\n"
             "7,ChatGPT,50,0,50,Conversation log\n"  # a failed request: skipped
             "45.5,GPT-4,200,30,230,API log\n")
    assert parse_trace(burst, "b.csv") == [TraceEntry(5000.0, 100, 20, None, 2),
                                          TraceEntry(45500.0, 200, 30, None, 4)]
    azure = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
             "2023-11-16 18:15:46.6805900,374,44\n"
             "2023-11-16 18:15:50.9951690,396,109\n"
             "2023-11-16 18:16:46,0,7\n")  # no context tokens: skipped
    got = parse_trace(azure, "a.csv")
    assert [(e.input_length, e.output_length, e.line) for e in got] == [(374, 44, 2),
                                                                        (396, 109, 3)]
    assert got[1].timestamp_ms - got[0].timestamp_ms == pytest.approx(4314.579, abs=1e-3)
    # An explicit format overrides detection: mooncake's file read as plain JSONL refuses
    # its hash_ids, and a format that does not fit the header names its columns.
    with pytest.raises(WorkloadError, match=r"m:1: field hash_ids .*trace_format='mooncake'"):
        parse_trace(text, "m", "jsonl")
    with pytest.raises(WorkloadError, match=r"b.csv:1: the header has no column TIMESTAMP, "
                                            r"ContextTokens, GeneratedTokens .*\[read as an "
                                            r"azure trace, as asked\]"):
        parse_trace(burst, "b.csv", "azure")
    # Detected: the message says which format the line was read as.
    with pytest.raises(WorkloadError, match=r"m:1: field output_length=0 .* \[read as a "
                                            r"mooncake trace, detected from the file\]"):
        parse_trace(mooncake((0, 4, 0, [1])), "m")


@pytest.mark.parametrize(("text", "fmt", "message"), [
    ('{"timestamp": 0, "input_length": 5, "output_length": 1}\n{oops\n', None,
     r"t:2: not valid JSON"),
    ('{"timestamp": 0, "output_length": 1}\n', None, r"t:1: field input_length is missing"),
    ('{"timestamp": 0, "input_length": 0, "output_length": 1}\n', None,
     r"t:1: field input_length=0 must be a whole number >= 1"),
    ('{"timestamp": 0, "input_length": true, "output_length": 1}\n', None,
     r"t:1: field input_length=True must be"),
    ('{"timestamp": -1, "input_length": 3, "output_length": 1}\n', None,
     r"t:1: field timestamp=-1 must be a finite number >= 0"),
    ('{"timestamp": 0, "input_length": 99999999, "output_length": 1}\n', None,
     r"t:1: field input_length=99999999 is above the limit"),
    ('{"timestamp": 0, "input_length": 3, "output_length": 1, "hash_ids": 7}\n', None,
     r"t:1: field hash_ids=7 must be a list"),
    ('{"timestamp": 0, "input_length": 3, "output_length": 1, "hash_ids": [1, -2]}\n', None,
     r"t:1: field hash_ids\[1\]=-2 must be a whole number >= 0"),
    ('{"timestamp": 9, "input_length": 3, "output_length": 1}\n'
     '{"timestamp": 2, "input_length": 3, "output_length": 1}\n', None,
     r"t:2: field timestamp goes back \(2 ms after 9 ms on line 1\)"),
    ("[1, 2]\n", "jsonl", r"t:1: expected a JSON object"),
    ("Timestamp,Model,Request tokens,Response tokens\nsoon,x,3,4\n", None,
     r"t:2: field Timestamp='soon' is not a number"),
    ("Timestamp,Model,Request tokens,Response tokens\n1,x,3.5,4\n", None,
     r"t:2: field Request tokens='3.5' must be a whole number"),
    ("Timestamp,Model,Request tokens,Response tokens\n1,x,3\n", None,
     r"t:2: 3 columns, the header has 4"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,3,4\n", None,
     r"t:2: field TIMESTAMP='yesterday' is not a date and time"),
    ("a,b,c\n1,2,3\n", None, r"t: cannot tell the trace's format .* mooncake, jsonl, "
                             r"burstgpt, azure"),
    ("\n\n", "jsonl", r"t: no requests in the trace"),
])
def test_every_bad_line_is_one_error_naming_file_line_and_field(
        text: str, fmt: str | None, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        parse_trace(text, "t", fmt)


def test_read_trace_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"timestamp": 0, "input_length": 3, "output_length": 1}\n\xff\n')
    with pytest.raises(WorkloadError, match=r"bad.jsonl:2: not UTF-8"):
        read_trace(path)


# --- the Workload's fields, arrivals --------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"trace_format": "csv"}, r"trace_format='csv' must be one of mooncake"),
    ({"trace_speedup": 0}, r"trace_speedup=0 must be a finite number > 0"),
    ({"trace_speedup": float("inf")}, r"trace_speedup=inf"),
    ({"trace_block_size": 0}, r"trace_block_size=0 must be a whole number >= 1"),
    ({"trace": "/nonexistent.jsonl"}, r"does not exist"),
    ({"trace": str(MOONCAKE), "rate": 5.0}, r"trace and Workload.rate cannot be combined"),
    ({"trace": str(MOONCAKE), "turns": 2}, r"cannot be combined"),
    ({"trace": str(MOONCAKE), "requests": 49},
     r"requests=49 is more than the trace's 48 requests .* requests=48"),
])
def test_bad_trace_fields_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        Workload(**kwargs)  # type: ignore[arg-type]


def test_arrivals_follow_the_trace_scaled_by_the_speedup(tmp_path: Path) -> None:
    path = write(tmp_path, mooncake((1000, 5, 1, [1]), (1250, 5, 1, [2]), (3000, 5, 1, [3]),
                                    (9000, 5, 1, [4])))
    wl = Workload(trace=path, requests=3, trace_block_size=4)
    assert arrival_offsets_s(wl, 3) == pytest.approx([0.0, 0.25, 2.0])
    fast = Workload(trace=path, requests=3, trace_block_size=4, trace_speedup=4.0)
    assert arrival_offsets_s(fast, 3) == pytest.approx([0.0, 0.0625, 0.5])


# --- prompts from blocks --------------------------------------------------------------------

def lcp(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> int:
    assert a is not None and b is not None
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def test_prompts_share_exactly_the_blocks_their_hash_ids_share(tmp_path: Path) -> None:
    tok = WordTokenizer()
    path = write(tmp_path, mooncake(
        (0, 48, 3, [10, 11, 12]),  # 3 full blocks of 16
        (1, 40, 2, [10, 11, 13]),  # shares 2, its last block partial (8 tokens)
        (2, 48, 2, [20, 11, 12]),  # a different first block: shares nothing
        (3, 37, 2, [10, 11, 12]),  # a prefix of the first, ending inside block 12
        (4, 60, 2, [10]),  # one block, then 44 words of its own
    ))
    wl = Workload(trace=path, requests=5, warmup=2, trace_block_size=16, seed=3)
    prompts = trace_prompts(tok, wl)
    assert len(prompts) == 7
    warm, (a, b, c, d, e) = prompts[:2], prompts[2:]
    assert [p.input_tokens for p in prompts] == [48, 40, 48, 40, 48, 37, 60]
    assert [p.output_tokens for p in prompts[2:]] == [3, 2, 2, 2, 2]
    for p in prompts:  # the text is the tokens: what a server tokenizes is what we built
        assert tuple(tok.tokenize(p.text)) == p.token_ids and len(p.token_ids or ()) == \
            p.input_tokens
    # Shared prefixes end exactly at the blocks' edge (BOS in the first block).
    assert lcp(a.token_ids, b.token_ids) == 32
    assert lcp(a.token_ids, c.token_ids) == 1  # BOS only
    assert lcp(a.token_ids, d.token_ids) == 37 and d.token_ids == (a.token_ids or ())[:37]
    assert lcp(a.token_ids, e.token_ids) == 16 and lcp(b.token_ids, e.token_ids) == 16
    # Block 11 at the same place is the same tokens after a different first block.
    assert (a.token_ids or ())[16:32] == (c.token_ids or ())[16:32]
    # Warm-up prompts have the first entries' lengths and share nothing with the trace.
    assert [p.input_tokens for p in warm] == [48, 40]
    assert all(lcp(w.token_ids, p.token_ids) <= 2 for w in warm for p in prompts[2:])
    # Deterministic for a seed; another seed, other words, the same structure.
    assert trace_prompts(tok, wl) == prompts
    other = trace_prompts(tok, Workload(trace=path, requests=5, warmup=2,
                                        trace_block_size=16, seed=4))
    assert other[2].token_ids != a.token_ids and lcp(other[2].token_ids,
                                                     other[3].token_ids) == 32
    assert build_prompts(tok, wl) == prompts


def test_blocks_of_different_ids_differ_in_their_first_token() -> None:
    tok = WordTokenizer()
    pool = word_pool(tok)
    maker = BlockMaker(pool, seed=0, size=16)
    p = len(pool)
    firsts = [maker.block(h)[0] for h in range(p)]
    assert len(set(firsts)) == p  # ids that differ modulo the pool: the first token
    # Ids equal modulo the pool differ within their first digits' tokens.
    for h, g in ((0, p), (5, 5 + 3 * p), (1, 1 + p * p)):
        a, b = maker.block(h), maker.block(g)
        assert a[0] == b[0] and a[:3] != b[:3]
    assert maker.block(7) == BlockMaker(pool, seed=0, size=16).block(7)  # pure
    first = list(maker.block(0))
    for h in range(1, 5000):  # past the kept blocks: block 0 is made again, the same
        maker.block(h)
    assert maker.block(0) == first
    assert maker.block(7) != BlockMaker(pool, seed=1, size=16).block(7)


def test_a_prompt_with_no_room_after_bos_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"timestamp": 0, "input_length": 1, "output_length": 1}\n')
    with pytest.raises(WorkloadError, match=r"t.jsonl:1: field input_length=1 leaves no room"):
        trace_prompts(WordTokenizer(), Workload(trace=path, requests=1))


# --- the ideal hit rate, the TTFT split -----------------------------------------------------

def test_expected_cached_tokens_by_hand() -> None:
    entries = [
        entry(64, [1, 2, 3, 4]),  # nothing before it
        entry(64, [1, 2, 3, 4]),  # the same prompt: all but the last block of 16 (L - 1 cap)
        entry(80, [1, 2, 5, 6, 7]),  # shares 2 blocks of 16
        entry(40, [1, 2, 3]),  # 2 full + 8 of block 3, floored to 16s: 32
        entry(64, [9, 2, 3, 4]),  # another first block: chains differ, nothing
        entry(30, None),  # no hash ids
        entry(100, [1, 2]),  # hash ids shorter than the prompt: 2 blocks, then its own
    ]
    assert expected_cached_tokens(entries, 16) == [0, 48, 32, 32, 0, 0, 32]
    # A block seen only in part is shared only so far: 20 tokens of block 2 seen, 16 usable
    # at vLLM's granularity, 20 at a granularity of 1 token.
    part = [entry(36, [1, 2, 3]), entry(64, [1, 2, 3, 4])]
    assert expected_cached_tokens(part, 16) == [0, 32]
    assert expected_cached_tokens(part, 16, cache_block=1) == [0, 36]
    # 32-token trace blocks: the cache's 16-token blocks inside them count.
    assert expected_cached_tokens([entry(96, [1, 2, 3]), entry(96, [1, 2, 7])], 32) == [0, 64]
    rate = ideal_hit_rate(entries, 16)
    assert rate == pytest.approx(sum([0, 48, 32, 32, 0, 0, 32]) / sum(
        e.input_length for e in entries))


def test_trace_figures_split_ttft_by_expected_cache() -> None:
    def rec(i: int, prompt: int, cached: int | None, ttft_ms: float) -> RequestRecord:
        return RequestRecord(index=i, prompt_tokens=prompt, send_ns=0,
                             chunk_ns=[int(ttft_ms * 1e6), int(ttft_ms * 1e6) + 1000],
                             chunk_tokens=[1, 1], done_ns=int(ttft_ms * 1e6) + 2000,
                             output_tokens=2, trace_cached_tokens=cached)

    records = [rec(0, 64, None, 99.0), rec(1, 64, 48, 10.0), rec(2, 64, 32, 12.0),
               rec(3, 64, 16, 40.0), rec(4, 64, 0, 50.0), rec(5, 64, 0, 60.0)]
    records[0].warmup = True
    figures = trace_figures(records)
    assert figures == {"trace_ideal_hit_rate": pytest.approx(96 / 320),
                       "trace_cached_requests": 2,
                       "ttft_cached_p50_ms": pytest.approx(11.0),
                       "ttft_uncached_p50_ms": pytest.approx(50.0)}
    summary = summarize(records)
    assert summary["ttft_cached_p50_ms"] == pytest.approx(11.0)
    assert trace_figures(records[:1]) == dict.fromkeys(figures)
    assert summarize(records[:1])["trace_ideal_hit_rate"] is None
    # Gateable by the marker and shown beside the server's prefix hit rate.
    assert {"ttft_cached_p50_ms", "ttft_uncached_p50_ms"} <= set(LATENCY_KEYS)
    assert "trace_ideal_hit_rate" in SUMMARY_KEYS
    (trace,) = [section for section in SECTIONS if section.name == "trace-metrics"]
    assert trace.keys[:2] == ("trace_ideal_hit_rate", "prefix_hit_rate")
    assert trace.present([summary]) and not trace.present([{"prefix_hit_rate": 0.5}])
    # A stored record keeps its expectation.
    assert RequestRecord.from_dict(records[1].to_dict()).trace_cached_tokens == 48


def test_mark_records_numbers_the_measured_requests_from_the_warmup(tmp_path: Path) -> None:
    path = write(tmp_path, mooncake((0, 32, 2, [1, 2]), (1, 32, 2, [1, 2])))
    wl = Workload(trace=path, requests=2, warmup=1, trace_block_size=16)
    records = [RequestRecord(index=i, prompt_tokens=32, warmup=i == 0) for i in range(3)]
    mark_records(records, wl)
    assert [r.trace_cached_tokens for r in records] == [None, 0, 16]


# --- the sample traces ----------------------------------------------------------------------

def test_the_sample_traces_are_what_the_script_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_sample_traces", ROOT / "scripts" / "make_sample_traces.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write_all(tmp_path)
    assert len(written) == 4
    for path in written:
        assert path.read_bytes() == (SAMPLES / path.name).read_bytes(), path.name
    formats = {p.name: detect_format(p.read_text(), p.name) for p in written}
    assert formats == {"mooncake_sample.jsonl": "mooncake", "plain_sample.jsonl": "jsonl",
                       "burstgpt_sample.csv": "burstgpt", "azure_sample.csv": "azure"}
    entries = read_trace(MOONCAKE)
    assert len(entries) == 48 and ideal_hit_rate(entries, 32) == pytest.approx(0.6398, abs=1e-4)
