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
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.commits import bisect
from pytest_llmperf.commits.nightly import Finding
from pytest_llmperf.engines import openai as openai_engine
from pytest_llmperf.engines.auth import parse_headers
from pytest_llmperf.engines.base import EngineError, RequestError
from pytest_llmperf.engines.openai import OpenAIEngine, _SSEParser
from pytest_llmperf.engines.servers import ManagedServer
from pytest_llmperf.redact import (
    SECRET_MARK,
    Redactor,
    redact,
    redact_argv,
    redact_url,
    strip_controls,
)
from pytest_llmperf.run.ab_flag import describe
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


# Issue 23, item 7: every credential a URL can carry, in its query (whatever the parameter is
# named), its user information or its fragment.
URL_CASES = {
    "https://gw.example.com:8443/v1?key=K1": "https://gw.example.com:8443/v1?key=***",
    "https://h/v1?sig=S1&token=T1&access_token=A1&code=C1":
        "https://h/v1?sig=***&token=***&access_token=***&code=***",
    "https://b.s3.amazonaws.com/o?X-Amz-Signature=ab12&X-Amz-Credential=AKX%2F1":
        "https://b.s3.amazonaws.com/o?X-Amz-Signature=***&X-Amz-Credential=***",
    "https://user:p4ss@h:1/p?q": "https://user:***@h:1/p?***",
    "https://ghp_tokenAsUser@h/": "https://***@h/",
    "https://h/cb#access_token=F1&state=x": "https://h/cb#access_token=***&state=***",
    "http://127.0.0.1:8000/v1": "http://127.0.0.1:8000/v1",
    "http://h/p#section": "http://h/p#section",
    "http://[::1": "http://[::1",
    "not a url ?key=1": "not a url ?key=1",
}


@pytest.mark.parametrize(("url", "stored"), URL_CASES.items())
def test_a_url_keeps_its_place_but_not_its_credentials(url: str, stored: str) -> None:
    assert redact_url(url) == stored
    assert redact_url(stored) == stored  # redacting twice changes nothing
    # The redactor finds URLs in any text (an error message, a JSON string, an argument).
    assert redact(f"cannot reach {url}; is it up?") == f"cannot reach {stored}; is it up?"
    assert redact(f'{{"url": "{url}"}}') == f'{{"url": "{stored}"}}'
    assert redact_argv(["--llmperf-url", url]) == ["--llmperf-url", stored]
    assert redact_argv([f"--llmperf-url={url}"]) == [f"--llmperf-url={stored}"]


def test_a_url_in_a_sentence_keeps_the_punctuation_after_it() -> None:
    assert redact("(see https://h/x?key=abc).") == "(see https://h/x?key=***)."


# Issue 23, item 10.
def test_control_characters_and_terminal_escapes_are_removed_whole() -> None:
    text = ("a\x1b]0;title\x07b\x1b[1;31mred\x1b[0m\tc\nd\re\x00\x7f\x9b2J"
            "\x1b]8;;http://x\x1b\\link\x1b(B \u202eevil\u2066\u2069 \u00e9\u4e2d \x1b")
    assert strip_controls(text) == "abred\tc\ndelink evil \u00e9\u4e2d "
    plain = "HTTP 500 Internal Server Error: {\"error\": \"über\"}\n\tat line 2"
    assert strip_controls(plain) is plain
    # The redactor strips them before anything else: every server text it sees.
    assert Redactor()("\x1b[31mHTTP 500\x1b[0m token=\x1b[1mabc") == "HTTP 500 token=***"


def test_a_server_log_is_shown_without_its_escapes(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("starting\n\x1b[32mINFO\x1b[0m ready at http://h/?token=plainT\n"
                   "ERROR \x1b]0;pwned\x07boom\n")
    server = ManagedServer(["serve"], port=1, log_path=log)
    tail = server.log_tail()
    assert tail.splitlines() == ["    starting", "    INFO ready at http://h/?token=***",
                                 "    ERROR boom"]


# Issue 23, item 6: the flags whose value is structured.
HEADERS = "X-Gateway-Token: plainGw0815; Authorization: Bearer plainBe4711; Accept: text/plain"
HIDDEN = f"X-Gateway-Token: {SECRET_MARK}; Authorization: Bearer {SECRET_MARK}; Accept: text/plain"


def test_header_lists_and_command_lines_in_an_argv_are_redacted() -> None:
    r = Redactor()
    assert r.argv(["--llmperf-headers", HEADERS]) == ["--llmperf-headers", HIDDEN]
    assert r.argv([f"--llmperf-headers={HEADERS}"]) == [f"--llmperf-headers={HIDDEN}"]
    assert r.argv(["-o", f"llmperf_headers={HEADERS}"]) == ["-o", f"llmperf_headers={HIDDEN}"]
    assert r.argv([f"--override-ini=llmperf_headers={HEADERS}"]) == [
        f"--override-ini=llmperf_headers={HIDDEN}"]
    assert r.argv(["--llmperf-ab", "headers=X-Key: plainV"]) == [
        "--llmperf-ab", f"headers=X-Key: {SECRET_MARK}"]
    assert r.headers('{"X-Key": "plainV", "Content-Type": "a/b"}') == (
        f'{{"X-Key": "{SECRET_MARK}", "Content-Type": "a/b"}}')
    assert r.argv(["--llmperf-server-cmd", "serve --api-key 'plain v' --port 1"]) == [
        "--llmperf-server-cmd", f"serve --api-key {SECRET_MARK} --port 1"]
    assert r.command("env HF_TOKEN=plainHf python s.py --port {port} --name 'a b'") == (
        f"env HF_TOKEN={SECRET_MARK} python s.py --port {{port}} --name 'a b'")
    assert r.command("python s.py --port {port}") == "python s.py --port {port}"
    assert r.command("python 's.py --token=plainX") == f"python 's.py --token={SECRET_MARK}"
    # What is no secret stays as it was: a flag that merely mentions headers, its argument.
    args = ["--no-header", "tests/test_x.py", "-o", "llmperf_repeats=3", "--llmperf-ab",
            "threads=2", "-k", "chat"]
    assert r.argv(args) == args


def test_an_ab_label_is_redacted() -> None:
    assert describe({"url": "https://h/v1?key=plainK", "headers": "X-Key: plainV",
                     "threads": "2"}) == (
        f"headers=X-Key: {SECRET_MARK} threads=2 url=https://h/v1?key={SECRET_MARK}")


def test_the_nightly_shows_no_secret_an_older_store_recorded() -> None:
    """Baselines saved before the URL rule hold the key: the nightly's bisect command, issue
    body and JSON show the arguments redacted (the replay still gets them as stored)."""
    args = ("--llmperf", "--llmperf-url=https://h/v1?key=plainOld", "--llmperf-headers",
            "X-Key: plainOld2", "tests/test_perf.py")
    finding = Finding("p", "tests/test_perf.py::t", "ttft_p50_ms", "regression", "a" * 40, "s",
                      "b" * 40, "s", 0, 1.0, 2.0, 100.0, 50.0, 150.0, 0.01, 3, 3, args, True)
    shown = json.dumps(finding.to_dict())
    assert "plainOld" not in shown and "plainOld" not in finding.bisect_command
    assert f"key={SECRET_MARK}" in finding.bisect_command
    assert finding.pytest_args == args


def test_bisect_json_stores_no_secret_of_its_command_line() -> None:
    args = ["tests/test_perf.py", "--llmperf-url=https://h/v1?key=plainK", "--llmperf-headers",
            "X-Key: plainV"]
    opts = bisect.Options(good="a", bad="b", pytest_args=args)
    good, bad = bisect.Commit("a" * 40, "good"), bisect.Commit("b" * 40, "bad")
    doc = bisect.result_document(opts, good, bad, [bad], {}, False, None)
    assert doc["settings"]["pytest_args"] == [
        "tests/test_perf.py", f"--llmperf-url=https://h/v1?key={SECRET_MARK}",
        "--llmperf-headers", f"X-Key: {SECRET_MARK}"]
    assert opts.pytest_args == args  # what the sessions run is the user's


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
