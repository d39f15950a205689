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


def test_the_url_query_goes_with_every_request_target() -> None:
    """--llmperf-url is split once into the server's root (scheme, host, port, path without
    a trailing /v1) and its query, which every request target carries (a gateway that
    authenticates or versions through the query). No request is made: model and tokenizer
    are given."""
    gw = OpenAIEngine("https://gw.example/llm?api-version=2024-10-21", model="m",
                      tokenizer=None)
    assert gw.root == "https://gw.example/llm"
    assert gw.request_target("/v1/chat/completions") == (
        "/llm/v1/chat/completions?api-version=2024-10-21")
    assert gw.request_target("/metrics") == "/llm/metrics?api-version=2024-10-21"
    assert gw.info()["url"] == "https://gw.example/llm?api-version=***"
    for given in ("http://h:1/v1?key=K&x=1", "http://h:1/v1/?key=K&x=1",
                  "http://h:1/?key=K&x=1", "http://h:1?key=K&x=1"):
        engine = OpenAIEngine(given, model="m", tokenizer=None)
        assert engine.root == "http://h:1", given
        assert engine.request_target("/v1/models") == "/v1/models?key=K&x=1", given
        assert engine.info()["url"] == "http://h:1/?key=***&x=***", given
        # A load worker's engine is made from the spec: the query goes with it.
        _, _, spec = engine.worker_spec()
        again = OpenAIEngine(**spec)
        assert again.request_target("/v1/completions") == "/v1/completions?key=K&x=1"
    # Now sent with every request, the query's values are secrets a server may echo.
    signed = OpenAIEngine("http://h:1/?sig=Zq8wQuerySig", model="m", tokenizer=None)
    assert "Zq8wQuerySig" not in signed.redactor("403: bad signature Zq8wQuerySig")
    plain = OpenAIEngine("http://h:1/base/v1/", model="m", tokenizer=None)
    assert plain.root == "http://h:1/base"
    assert plain.request_target("/v1/completions") == "/base/v1/completions"
    assert plain.info()["url"] == "http://h:1/base"


@pytest.mark.parametrize("url", ["http://h:1/v1#frag", "http://h:1/?key=K#x",
                                 "http://h:1#access_token=S3cr3tValue"])
def test_a_url_fragment_is_refused(url: str) -> None:
    """A fragment is never sent to a server: one line saying so, no value of it shown."""
    from pytest_llmperf.engines.openai import check_url

    with pytest.raises(EngineError, match="fragment") as info:
        check_url(url)
    message = str(info.value)
    assert "\n" not in message and "S3cr3tValue" not in message
    with pytest.raises(EngineError, match="fragment"):
        OpenAIEngine(url, model="m", tokenizer=None)
