"""Reasoning ("thinking") in a streamed chat answer: which chunks carry it, and how many
tokens it took.

Reasoning servers stream the thinking in a field of its own beside ``content``: ``reasoning``
(vLLM since its rename of late 2025, OpenRouter) or ``reasoning_content`` (DeepSeek's API,
SGLang, vLLM before the rename; some servers send both with the same text). A chunk whose
delta carries reasoning text and no answer text is a *reasoning chunk*; the first chunk with
answer text (``content``) begins the answer. Both kinds are token-bearing: TTFT is the first
of either (vLLM's definition), the time to the first answer token (TTFA) the first answer
chunk's.

Reasoning tokens come from the server's ``usage.completion_tokens_details.reasoning_tokens``
where it gives them (vLLM with a reasoning parser, OpenAI) and they are not fewer than the
reasoning chunks seen, else from a local tokenizer on the reasoning text, else from the chunks
(the per-chunk token counts of the reasoning chunks); the source is recorded. Pure functions,
no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import RequestError
from .tokenizers import excerpt

REASONING_FIELDS: tuple[str, ...] = ("reasoning", "reasoning_content")


def reasoning_delta(obj: Mapping[str, Any]) -> tuple[str, bool]:
    """(reasoning text, is a reasoning chunk) of a chat event's first choice's delta: its
    ``reasoning`` (else ``reasoning_content``) text ("" when it has none), and whether the
    chunk is thinking: a reasoning field holding a string (an empty one too: a token whose
    bytes do not make a character yet) and no ``content`` text (with some, the chunk belongs
    to the answer)."""
    choices = obj.get("choices")
    if not choices or type(choices) is not list or type(choices[0]) is not dict:
        return "", False
    delta = choices[0].get("delta")
    if type(delta) is not dict:
        return "", False
    text = delta.get("reasoning")
    if not isinstance(text, str) or not text:
        other = delta.get("reasoning_content")
        text = other if isinstance(other, str) else text
    if not isinstance(text, str):
        return "", False
    return text, not delta.get("content")


def usage_reasoning(usage: Mapping[str, Any], completion_tokens: int) -> int | None:
    """``usage.completion_tokens_details.reasoning_tokens`` (None when the server gives none),
    or RequestError ``bad_usage`` when it is not a whole number from 0 to the answer's
    ``completion_tokens``."""
    details = usage.get("completion_tokens_details")
    if type(details) is not dict:
        return None
    value = details.get("reasoning_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= completion_tokens:
        raise RequestError(
            "bad_usage", "the server reported usage.completion_tokens_details.reasoning_tokens"
            f"={excerpt(repr(value), 60)}, not a whole number from 0 to its completion_tokens "
            f"({completion_tokens})")
    return value


@dataclass(frozen=True)
class Reasoning:
    """One answer's reasoning: the leading chunks that carried it (the reasoning phase), its
    tokens and where that count came from ("usage", "tokenizer" or "chunks")."""

    chunks: int
    tokens: int
    source: str


def count_reasoning(
    indices: Sequence[int],
    texts: Sequence[str],
    per_chunk: Sequence[int],
    usage_tokens: int | None,
    tokenize: Callable[[str], int] | None,
) -> Reasoning | None:
    """The answer's ``Reasoning`` from the indices of its reasoning chunks (``indices``, in
    order), the reasoning text of every chunk that had some (``texts``), the tokens each chunk
    carried (``per_chunk``), the server's count (``usage_tokens``) and a local tokenizer's
    counter (``tokenize``); None when the answer had no reasoning (no reasoning chunk and no
    reasoning token in ``usage``). A server's count below the reasoning chunks seen (each
    carries a token at least) is not used: vLLM counts only the tokens after a ``<think>`` it
    generated, so a chat template that opens the answer with ``<think>`` (DeepSeek-R1-0528,
    Qwen3) has it report 0."""
    if not indices and not usage_tokens:
        return None
    leading = 0
    for i in indices:
        if i != leading:
            break
        leading += 1
    if usage_tokens is not None and usage_tokens >= len(indices):
        return Reasoning(leading, usage_tokens, "usage")
    if tokenize is not None:
        return Reasoning(leading, tokenize("".join(texts)), "tokenizer")
    return Reasoning(leading, sum(per_chunk[i] for i in indices if i < len(per_chunk)),
                     "chunks")
