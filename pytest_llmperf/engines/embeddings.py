"""The OpenAI-compatible embeddings API (issue 24, item 6): the request body and the check
of the answer. Pure: no I/O (the HTTP engine, engines/openai.py, sends and reads).

Request: ``POST /v1/embeddings`` ``{"model": ..., "input": text}`` (not streamed). Answer:
``{"data": [{"embedding": [floats...], ...}], "usage": {"prompt_tokens": n}}``; the input
count is ``usage.prompt_tokens`` where the server gives it, else the prompt's own count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .base import Embedded, Prompt, RequestError
from .tokenizers import excerpt

PATH = "/v1/embeddings"
# The most of an answer read (a 4096-dimension float vector in JSON is about 90 KB).
MAX_ANSWER_BYTES = 16 << 20


def request_body(model: str | None, prompt: Prompt,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of one embedding request for ``prompt`` (its text as ``input``)."""
    body: dict[str, Any] = {"model": model, "input": prompt.text}
    body.update(extra or {})
    return body


def parse_answer(raw: bytes, prompt: Prompt, *, done_ns: int | None = None,
                 sent_ns: int | None = None) -> Embedded:
    """The checked answer of a 200 response: a ``data`` list holding one embedding (a
    non-empty list of finite numbers, or a base64 string); RequestError ("malformed") naming
    what is wrong otherwise."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError("malformed", "the embeddings answer is not JSON: "
                           f"{excerpt(raw.decode('utf-8', 'replace'), 80)}") from None
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], Mapping):
        raise RequestError("malformed", "the embeddings answer has no \"data\" list of "
                           "embeddings")
    vector = items[0].get("embedding")
    if isinstance(vector, str) and vector:  # encoding_format="base64"
        dims = len(vector) * 3 // 4 // 4
    elif isinstance(vector, list) and vector and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in vector):
        dims = len(vector)
    else:
        raise RequestError("malformed", "the embeddings answer's data[0].embedding is not a "
                           "non-empty list of finite numbers")
    usage = data.get("usage")
    counted = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
    if isinstance(counted, int) and not isinstance(counted, bool) and 0 < counted < 1 << 31:
        n = counted
    else:
        n = prompt.input_tokens
    return Embedded(input_tokens=n, dimensions=dims, done_ns=done_ns, sent_ns=sent_ns)
