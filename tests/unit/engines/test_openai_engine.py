"""The HTTP engine against the test oracle: a server that streams on a known schedule.

Timed checks use generous tolerances (the machine is shared and noisy); the precise figures
are in benchmarks/client_fidelity.py.

Split by tier from tests/test_openai_engine.py: these are its unit tests; the others are in
tests/sessions/test_openai_engine_session.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.engines.auth import parse_headers
from pytest_llmperf.engines.base import EngineError
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.engines.sse import chunk_tokens, spread


def test_chunk_classification() -> None:
    role = {"choices": [{"delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    assert chunk_tokens(role, chat=True)[0] is False
    text = {"choices": [{"delta": {"content": " hi"}, "finish_reason": None}]}
    assert chunk_tokens(text, chat=True) == (True, " hi", None)
    special = {"choices": [{"text": "", "finish_reason": None}]}  # a special token's chunk
    assert chunk_tokens(special, chat=False)[0] is True
    final = {"choices": [{"text": "", "finish_reason": "length"}]}
    assert chunk_tokens(final, chat=False)[0] is False
    usage_only = {"choices": [], "usage": {"completion_tokens": 3}}
    assert chunk_tokens(usage_only, chat=False)[0] is False
    logprobs = {"choices": [{"text": "ab", "logprobs": {"tokens": ["a", "b"]}}]}
    assert chunk_tokens(logprobs, chat=False) == (True, "ab", 2)
    assert spread(6, ["a", "bb", "c"], [None, None, None]) == [1, 3, 2] or sum(
        spread(6, ["a", "bb", "c"], [None, None, None])) == 6
    assert spread(3, ["a", "b", "c"], [None] * 3) == [1, 1, 1]
    assert spread(9, ["x", "y"], [4, 5]) == [4, 5]


def test_header_and_tls_options_are_checked(tmp_path: Path) -> None:
    assert parse_headers("A: 1; B: x:y") == {"A": "1", "B": "x:y"}
    assert parse_headers('{"A": 1}') == {"A": "1"}
    with pytest.raises(EngineError, match="Name: value"):
        parse_headers("no-colon-here")
    with pytest.raises(EngineError, match="CA bundle"):
        OpenAIEngine("https://127.0.0.1:1", tls_verify=str(tmp_path / "missing.pem"),
                     tokenizer=None, model="m")


def test_chunked_decoding_survives_any_segmentation() -> None:
    """The lean client's chunked-transfer decoder, fed a body cut at every possible place."""
    from pytest_llmperf.engines.http_client import Stream

    pieces = [b"data: {\"a\": 1}\n\n", b"x" * 300, b"data: [DONE]\n\n"]
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    for size in (1, 2, 3, 7, 64, len(wire)):
        stream = Stream(None, b"", 0, {"transfer-encoding": "chunked"})  # type: ignore[arg-type]
        out = b"".join(stream._decode(wire[i:i + size]) for i in range(0, len(wire), size))
        assert out == b"".join(pieces), size
        assert stream.complete
