"""The OpenAI streaming format, event by event: which server-sent event carries generated
tokens, its text, and how many tokens each chunk carried.

A chunk carries tokens when it carries generated text, or is an empty-text chunk that is neither
role-only nor the closing ``finish_reason`` chunk (servers send those for special tokens).
Per-chunk token counts come from per-chunk usage or logprobs when present, else the
authoritative count is spread over the chunks by their text length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def chunk_tokens(obj: Mapping[str, Any], chat: bool) -> tuple[bool, str, int | None]:
    """(carries tokens, its text, tokens it says it carries or None) for one SSE event."""
    choices = obj.get("choices")
    if not choices:
        return False, "", None
    c = choices[0]
    hint: int | None = None
    logprobs = c.get("logprobs")
    if isinstance(logprobs, dict):
        toks = logprobs.get("tokens") if not chat else logprobs.get("content")
        if isinstance(toks, list) and toks:
            hint = len(toks)
    if chat:
        delta = c.get("delta") or {}
        text = delta.get("content") or delta.get("reasoning_content") or delta.get(
            "reasoning") or ""
        if text or hint:
            return True, text, hint
        if c.get("finish_reason") or "role" in delta or delta.get("tool_calls"):
            return False, "", None
        # An empty text is a token too (a special token, or bytes that make no character yet),
        # in the answer or in the reasoning (engines/reasoning.py).
        return ("content" in delta or isinstance(delta.get("reasoning"), str)
                or isinstance(delta.get("reasoning_content"), str)), "", hint
    text = c.get("text") or ""
    if text or hint:
        return True, text, hint
    if c.get("finish_reason"):
        return False, "", None
    return "text" in c, "", hint


def spread(total: int, texts: Sequence[str], hints: Sequence[int | None]) -> list[int]:
    """Tokens per chunk: the hints when every chunk has one, else ``total`` spread by text length.

    Each chunk carries at least one token; when ``total`` is not more than the chunk count,
    every chunk carries one.
    """
    n = len(texts)
    if n == 0:
        return []
    known = [int(h) for h in hints if h is not None]
    if len(known) == len(hints):
        return known
    if total <= n:
        return [1] * n
    extra = total - n
    weights = [max(1, len(t)) for t in texts]
    wsum = sum(weights)
    raw = [extra * w / wsum for w in weights]
    base = [int(r) for r in raw]
    left = extra - sum(base)
    order = sorted(range(n), key=lambda i: raw[i] - base[i], reverse=True)
    for i in order[:left]:
        base[i] += 1
    return [1 + b for b in base]
