"""Hostile and careless servers (issue 15, classes 2, 3 and 6, server side), what needs no
server: secrets redacted (known values and credential shapes), malformed URLs said in one line;
the SSE line buffer (events split anywhere, a long line held without copies, the line cap) and
headers HTTP cannot carry refused by name (issue 23, items 19 and 24).

Split by tier from tests/test_hostile_servers.py: these are its unit tests; the others, and the
list of what is checked, are in tests/sessions/test_hostile_servers_session.py.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from typing import Any

import pytest

from pytest_llmperf.engines import openai as openai_engine
from pytest_llmperf.engines.auth import parse_headers
from pytest_llmperf.engines.base import EngineError, RequestError
from pytest_llmperf.engines.openai import OpenAIEngine, _SSEParser
from pytest_llmperf.redact import SECRET_MARK, Redactor, redact, redact_argv
from pytest_llmperf.settings import ConfigError, resolve

# Deliberately shapeless: only knowing the value (not a pattern) can redact it.
API_KEY = "Zq8wPlainValue4711Kx"


# --------------------------------------------------------------------------- the redactor


def test_redact_known_values_and_credential_shapes() -> None:
    r = Redactor([API_KEY, "ab"])  # too short a value is never treated as a secret
    assert r(f"echo {API_KEY}!") == f"echo {SECRET_MARK}!"
    assert "ab" in r("abc")
    cases = {
        "Authorization: Bearer abc.def-ghi": "Bearer abc.def-ghi",
        "{'authorization': 'Basic dXNlcjpwYXNz'}": "dXNlcjpwYXNz",
        "token=tok123&model=x": "tok123",
        "GET /v1/models?api_key=k3y-value HTTP/1.1": "k3y-value",
        '{"api-key": "k3y-json", "secret": "s3cr3t"}': "k3y-json",
        "password: hunter22": "hunter22",
        "x-api-key: xk-0000-1111": "xk-0000-1111",
        "use sk-proj-abcdefghijklmnopqrstuvwx now": "sk-proj-abcdefghijklmnopqrstuvwx",
        "hf_abcdefghijklmnopqrstuvwxyz012345": "hf_abcdefghijklmnopqrstuvwxyz012345",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "https://user:p4ss@example.com/v1": "p4ss",
        "serve --api-key k3y-flag --port 1": "k3y-flag",
        "serve --hf-token=hf-flag-value": "hf-flag-value",
    }
    for text, secret in cases.items():
        out = redact(text)
        assert secret not in out and SECRET_MARK in out, (text, out)
    # What is not a credential stays readable.
    for text in ("max_tokens=16", '{"completion_tokens": 5}', "--max-tokens 16",
                 "--api-key-env OPENAI_API_KEY", "tokenizer: server:vllm",
                 "HTTP 400 Bad Request: you requested 4200 tokens"):
        assert redact(text) == text
    assert redact_argv(["serve", "--api-key", "v a l", "--token=t0k", "-m", "m.gguf"]) == [
        "serve", "--api-key", SECRET_MARK, f"--token={SECRET_MARK}", "-m", "m.gguf"]


@pytest.mark.parametrize("url", [
    "localhost:8000", "http://127.0.0.1:99999", "http://127.0.0.1:abc", "http://",
    "not a url", "http://[::1", "http://exa mple.com", "ftp://example.com",
])
def test_a_malformed_url_is_one_line(url: str) -> None:
    with pytest.raises(EngineError) as info:
        OpenAIEngine(url)
    message = str(info.value)
    assert "--llmperf-url" in message and repr(url) in message and "\n" not in message


# --------------------------------------------------------------------------- the SSE line buffer
# (issue 23, item 19): a line is held as its pieces and joined once when it ends; one longer
# than MAX_SSE_LINE is the request's malformed_sse error when it gets there, not memory.


def _event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "text": text}]}).encode() + b"\n\n"


def _parsed(pieces: list[bytes]) -> _SSEParser:
    parser = _SSEParser(chat=False, max_tokens=16, prompt_tokens=0)
    for t, piece in enumerate(pieces):
        parser.body(t, piece)
    return parser


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 16])
def test_events_split_anywhere_parse_as_whole_ones(size: int) -> None:
    stream = (_event(" alpha") + b": ping\r\n\r\n" + _event(" bravo" * 300)
              + b"data: " + json.dumps({"choices": [{"index": 0, "text": " c"}]}).encode()
              + b"\r\n\r\ndata: [DONE]\n\n")
    pieces = [stream[i:i + size] for i in range(0, len(stream), size)]
    parser = _parsed(pieces)
    assert parser.texts == [" alpha", " bravo" * 300, " c"] and parser.done
    # Each event is stamped with the arrival of the piece that ended its line.
    line_ends = [stream.index(b"\n", stream.index(text))
                 for text in (b'" alpha"', b'" bravo', b'" c"')]
    assert parser.times == [end // size for end in line_ends]


def test_a_long_line_is_held_without_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the line costs while it is held: its own bytes, not a copy per piece received.
    line = _event(" x" * (2 << 20))
    pieces = [line[i:i + 4096] for i in range(0, len(line) - 2, 4096)]
    pieces[-1] = pieces[-1].rstrip(b"\n")  # the line's end comes last, on its own
    parser = _SSEParser(chat=False, max_tokens=16, prompt_tokens=0)
    tracemalloc.start()
    try:
        for t, piece in enumerate(pieces):
            parser.body(t, bytes(piece))  # a fresh object per piece, as a socket gives
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(len(p) for p in pieces)
    assert peak < 1.5 * held, (peak, held)
    assert parser.texts == []
    parser.body(len(pieces), b"\n\n")
    assert parser.texts == [" x" * (2 << 20)] and parser.times == [len(pieces)]


def test_a_line_longer_than_the_cap_fails_the_request_once_it_gets_there(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_engine, "MAX_SSE_LINE", 1 << 20)
    parser = _SSEParser(chat=False, max_tokens=16, prompt_tokens=0)
    parser.body(0, _event(" first"))
    piece = b"data: {" + b"x" * 65536
    with pytest.raises(RequestError) as info:
        for t in range(1, 1000):  # an endless data line
            parser.body(t, piece)
    assert info.value.kind == "malformed_sse"
    assert str(info.value) == ("the server sent an SSE line longer than 1 MiB (1 chunk(s) "
                               "before it)")
    assert parser.held <= 1 << 20  # held no more than the cap
    # A line that ends past the cap, in the piece that ends it.
    parser = _SSEParser(chat=False, max_tokens=16, prompt_tokens=0)
    parser.body(0, b"data: " + b"x" * ((1 << 20) - 10))
    with pytest.raises(RequestError, match="longer than 1 MiB"):
        parser.body(1, b"y" * 20 + b"\n\n")
    # Up to the cap, a line is read.
    text = " y" * (((1 << 20) - 100) // 2)
    assert _parsed([_event(text)[:1000], _event(text)[1000:]]).texts == [text]


# --------------------------------------------------------------------------- headers
# (issue 23, item 24): a header that HTTP cannot send is refused where it is parsed, naming the
# header, never its value, before any request.

SECRET_VALUE = "Zq8wPlain\u65e5\u672cValue"


@pytest.mark.parametrize("spec, problem", [
    (f"X-Name: {SECRET_VALUE}", "the value of X-Name has a character that is not Latin-1"),
    (json.dumps({"X-Name": "a\r\nInjected: 1" + SECRET_VALUE}),
     "the value of X-Name has a control character"),
    ("Bad Name: 1", "'Bad Name' is not a header name"),
])
def test_a_header_that_cannot_be_sent_is_refused_by_name(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(cli=lambda s: spec if s.name == "headers" else None, ini=lambda s: None,
                environ={})
    message = str(info.value)
    assert message.startswith(f"--llmperf-headers: {problem}"), message
    assert SECRET_VALUE not in message and "\n" not in message
    # From the environment, the error names the variable.
    from_env = f"^environment variable LLMPERF_HEADERS: {re.escape(problem)}"
    with pytest.raises(ConfigError, match=from_env):
        resolve(cli=lambda s: None, ini=lambda s: None, environ={"LLMPERF_HEADERS": spec})


def test_latin1_header_values_are_sent_as_given() -> None:
    assert parse_headers("X-Name: caf\u00e9; X-Tab: a\tb") == {"X-Name": "caf\u00e9",
                                                              "X-Tab": "a\tb"}


@pytest.mark.parametrize("kwargs, where", [
    ({"headers": {"X-Name": SECRET_VALUE}}, "headers: the value of X-Name"),
    ({"api_key": SECRET_VALUE}, "the API key (--llmperf-api-key-env): the value of "
                                "Authorization"),
])
def test_an_engine_refuses_an_unsendable_header_before_any_request(
        kwargs: dict[str, Any], where: str) -> None:
    # Port 9 (discard) is closed here: a request would be "cannot reach the server".
    with pytest.raises(EngineError) as info:
        OpenAIEngine("http://127.0.0.1:9", **kwargs)
    message = str(info.value)
    assert message.startswith(where) and "not Latin-1" in message, message
    assert SECRET_VALUE not in message
