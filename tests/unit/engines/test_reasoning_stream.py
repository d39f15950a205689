"""Reasoning deltas in a streamed chat answer (engines/reasoning.py and the SSE parser):
which chunks are thinking, and the reasoning token count from each source."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_llmperf.engines.base import RequestError
from pytest_llmperf.engines.openai import _SSEParser
from pytest_llmperf.engines.reasoning import (
    Reasoning,
    count_reasoning,
    reasoning_delta,
    usage_reasoning,
)


def _event(delta: dict[str, Any] | None = None, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"object": "chat.completion.chunk", **extra}
    obj["choices"] = [] if delta is None else [{"index": 0, "delta": delta,
                                                "finish_reason": None}]
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _parse(events: list[bytes], chat: bool = True) -> _SSEParser:
    parser = _SSEParser(chat=chat, max_tokens=16, prompt_tokens=0)
    for i, e in enumerate(events):
        parser.body(1000 * (i + 1), e)
    parser.body(10**9, b"data: [DONE]\n\n")
    return parser


@pytest.mark.parametrize("shape", [
    {"reasoning": "think"},  # vLLM since the rename
    {"reasoning_content": "think", "content": None},  # DeepSeek, SGLang, older vLLM
    {"reasoning": "think", "reasoning_content": "think"},  # both, the same text
])
def test_a_reasoning_delta_is_thinking_and_carries_tokens(shape: dict[str, Any]) -> None:
    assert reasoning_delta({"choices": [{"delta": shape}]}) == ("think", True)
    parser = _parse([_event({"role": "assistant", "content": ""}), _event(shape),
                     _event(shape), _event({"content": " answer"})])
    # The role chunk is not a token; both reasoning chunks are (TTFT is the first of them).
    assert parser.times == [2000, 3000, 4000]
    assert parser.texts == ["think", "think", " answer"]
    assert parser.reasoning_idx == [0, 1]
    assert parser.reasoning_texts == ["think", "think"]


def test_answer_text_beside_reasoning_makes_an_answer_chunk() -> None:
    assert reasoning_delta({"choices": [{"delta": {"reasoning": "end", "content": "A"}}]}) == (
        "end", False)
    parser = _parse([_event({"reasoning": "a"}), _event({"reasoning": "b", "content": "c"}),
                     _event({"reasoning": "d"})])
    # The mixed chunk begins the answer; a later reasoning chunk is counted as reasoning but
    # does not move the phase boundary (count_reasoning keeps the leading run only).
    assert parser.reasoning_idx == [0, 2]
    assert parser.reasoning_texts == ["a", "b", "d"]
    found = count_reasoning(parser.reasoning_idx, parser.reasoning_texts, [1, 2, 1], None, None)
    assert found == Reasoning(chunks=1, tokens=2, source="chunks")


def test_an_empty_reasoning_delta_is_a_reasoning_token() -> None:
    # vLLM sends {"reasoning": ""} for a token whose bytes make no character yet: a token of
    # the reasoning phase, as {"content": ""} is one of the answer's.
    assert reasoning_delta({"choices": [{"delta": {"reasoning": ""}}]}) == ("", True)
    parser = _parse([_event({"reasoning": "a"}), _event({"reasoning": ""}),
                     _event({"reasoning_content": ""}), _event({"content": "b"})])
    assert parser.times == [1000, 2000, 3000, 4000]
    assert parser.reasoning_idx == [0, 1, 2] and parser.reasoning_texts == ["a"]
    # DeepSeek's opening chunk (a role, empty reasoning) and closing one are not tokens.
    opened = _parse([_event({"role": "assistant", "content": None, "reasoning_content": ""}),
                     _event({"content": None, "reasoning_content": "x"}),
                     _event({"content": "y", "reasoning_content": None})])
    assert opened.times == [2000, 3000] and opened.reasoning_idx == [0]


def test_a_plain_stream_has_no_reasoning() -> None:
    parser = _parse([_event({"role": "assistant"}), _event({"content": "x"}),
                     _event({"content": "", "reasoning_content": None})])
    assert parser.reasoning_idx == [] and parser.reasoning_texts == []
    assert count_reasoning([], [], [1, 1], None, None) is None
    assert count_reasoning([], [], [1, 1], 0, None) is None  # usage says 0: none
    # Completions have no deltas: text chunks are answer chunks.
    done = _parse([b'data: {"choices": [{"text": "x", "reasoning": "y"}]}\n\n'], chat=False)
    assert done.reasoning_idx == []


def test_usage_reasoning_tokens_are_read_and_checked() -> None:
    usage = {"completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 4}}
    assert usage_reasoning(usage, 9) == 4
    assert usage_reasoning({"completion_tokens": 9}, 9) is None
    assert usage_reasoning({"completion_tokens_details": None}, 9) is None
    assert usage_reasoning({"completion_tokens_details": {"reasoning_tokens": None}}, 9) is None
    for bad in (10, -1, 2.5, "4", True):
        with pytest.raises(RequestError, match="reasoning_tokens") as exc:
            usage_reasoning({"completion_tokens_details": {"reasoning_tokens": bad}}, 9)
        assert exc.value.kind == "bad_usage"
    parser = _parse([_event({"reasoning": "a b"}), _event({"content": "c"}),
                     _event(None, usage={"completion_tokens": 3, "completion_tokens_details":
                                         {"reasoning_tokens": 2}})])
    assert parser.usage_total == 3 and parser.usage_reasoning == 2
    with pytest.raises(RequestError, match="reasoning_tokens"):
        _parse([_event({"reasoning": "a"}), _event(None, usage={
            "completion_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 7}})])


def test_reasoning_tokens_come_from_usage_else_a_tokenizer_else_the_chunks() -> None:
    idx, texts, per_chunk = [0, 1, 2], ["one two", " three", " four five six"], [2, 1, 3, 1]
    assert count_reasoning(idx, texts, per_chunk, 7, len) == Reasoning(3, 7, "usage")
    assert count_reasoning(idx, texts, per_chunk, None, lambda t: len(t.split())) == Reasoning(
        3, 6, "tokenizer")
    assert count_reasoning(idx, texts, per_chunk, None, None) == Reasoning(3, 6, "chunks")
    # A server that counted reasoning the stream did not show as such (no reasoning chunk).
    assert count_reasoning([], [], [1, 1], 5, None) == Reasoning(0, 5, "usage")
    # A server count below the reasoning chunks seen (vLLM's 0 when the chat template opened
    # <think> in the prompt) is not believed: counted instead.
    assert count_reasoning(idx, texts, per_chunk, 0, None) == Reasoning(3, 6, "chunks")
    assert count_reasoning(idx, texts, per_chunk, 2, None) == Reasoning(3, 6, "chunks")
    assert count_reasoning(idx, texts, per_chunk, 3, None) == Reasoning(3, 3, "usage")
