"""Truncated answers and context refusals, the rules alone: an answer shorter than the exact
length asked for is a ``truncated`` error, and the refusals of known servers whose prompt +
output exceed their context are ``context`` errors.

Split by tier from tests/test_truncation.py: these are its unit tests; the others (sessions on
the oracle server and on real llama.cpp, and the whole rule) are in
tests/sessions/test_truncation_session.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.engines.base import GenerationParams
from pytest_llmperf.engines.openai import context_refusal
from pytest_llmperf.run.loadgen import truncation


def test_the_truncation_rule() -> None:
    exact = GenerationParams(max_tokens=16)
    assert truncation(exact, 16, "usage", 40) is None
    assert truncation(exact, 17, "usage", 40) is None  # longer is not truncated
    assert truncation(exact, 8, "usage", 2040) == (
        "truncated: 8 of the 16 output tokens asked for (usage count); 2040 prompt + 16 output "
        "tokens may not fit the context (--llmperf-context-len), or the engine stopped early")
    assert truncation(exact, 15, "engine", 0) is not None
    # No exact length was asked (end-of-generation allowed), or the count is the chunks',
    # which is not a token count: nothing to hold the answer to.
    assert truncation(GenerationParams(max_tokens=16, ignore_eos=False), 3, "usage", 4) is None
    assert truncation(exact, 3, "chunks", 4) is None


@pytest.mark.parametrize(("text", "context"), [
    ('{"error": {"message": "min_tokens must be less than or equal to max_tokens=8, got 16.", '
     '"type": "BadRequestError", "code": 400}}', True),
    ("This model's maximum context length is 2048 tokens. However, you requested 2056", True),
    ('{"error": {"code": "context_length_exceeded", "message": "too long"}}', True),
    ('{"error": {"code": 400, "message": "the request exceeds the available context size, try '
     'increasing it", "type": "exceed_context_size_error"}}', True),
    ("Requested tokens (600) exceed context window of 512", True),
    ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048.", True),
    ('{"error": {"message": "max_tokens must be at least 1, got 0."}}', False),
    ("rate limited", False),
])
def test_context_refusals_of_known_servers(text: str, context: bool) -> None:
    error = context_refusal(text, 2040, 16)
    assert (error is not None) == context
    if error is not None:
        assert error.kind == "context"
        message = str(error)
        assert message.startswith("2040 prompt + 16 output tokens do not fit the server's "
                                  "context; start it with a longer one (--llmperf-context-len)")
        assert "\n" not in message
        if text.startswith("{"):  # the server's own message, not its JSON
            assert "the server said: {" not in message
