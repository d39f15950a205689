"""Hostile and careless servers (issue 15, classes 2, 3 and 6, server side), what needs no
server: secrets redacted (known values and credential shapes), malformed URLs said in one line.

Split by tier from tests/test_hostile_servers.py: these are its unit tests; the others, and the
list of what is checked, are in tests/sessions/test_hostile_servers_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.engines.base import EngineError
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.redact import SECRET_MARK, Redactor, redact, redact_argv

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
