"""The headers every request to a server carries: ``--llmperf-headers`` parsed, and the API
key from the environment as ``Authorization: Bearer``. Shared by the OpenAI-compatible engine
(its requests), the managed servers (their health probe) and the session (what to redact).

Headers are checked where they are parsed (``--llmperf-headers``: when pytest reads its
options, a usage error) and where an engine is made (``check_headers``): a name that is not an
HTTP token, a value with a character outside Latin-1 (what HTTP sends) or a control character
is refused in one line that names the header, never its value, before any request."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .base import EngineError

if TYPE_CHECKING:
    from ..settings import Settings


# A header name: an HTTP token (RFC 9110).
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def header_problem(name: str, value: str) -> str | None:
    """What makes ``name: value`` unsendable, naming the header but never showing the value;
    None when it can be sent. HTTP sends a header as Latin-1 bytes: a value may hold tabs and
    Latin-1 characters other than control characters (no line break: it would end the header)."""
    if not _NAME.fullmatch(name):
        return (f"{_cut(name)!r} is not a header name (letters, digits and "
                "!#$%&'*+-.^_`|~, no spaces)")
    for i, c in enumerate(value):
        code = ord(c)
        if code > 0xFF:
            return (f"the value of {name} has a character that is not Latin-1 (character "
                    f"{i + 1} of {len(value)}): HTTP sends header values as Latin-1 bytes; "
                    "give it in ASCII (percent-encoded, for instance)")
        if (code < 0x20 and c != "\t") or code == 0x7F:
            return (f"the value of {name} has a control character (character {i + 1} of "
                    f"{len(value)}, code {code}): a header value is one line of text")
    return None


def check_headers(headers: Mapping[str, str], source: str = "--llmperf-headers"
                  ) -> dict[str, str]:
    """``headers`` when every one can be sent; else EngineError naming the header (its value
    is never shown: it may be a credential)."""
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            raise EngineError(f"{source}: {problem}")
    return dict(headers)


def _cut(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


def parse_headers(spec: str | None, source: str = "--llmperf-headers") -> dict[str, str]:
    """'Name: value; Other: value' (or one per line, or a JSON object) -> dict; EngineError
    (naming ``source``) for a spec that does not parse or a header that cannot be sent."""
    if not spec:
        return {}
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            data = json.loads(spec)
        except (ValueError, RecursionError) as exc:
            raise EngineError(f"{source} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EngineError(f"{source} is not a JSON object of headers")
        return check_headers({str(k): str(v) for k, v in data.items()}, source)
    out: dict[str, str] = {}
    for part in spec.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        if ":" not in part:
            raise EngineError(
                f"{source}: {_cut(part.strip())!r} is not 'Name: value' "
                "(separate several headers with ';')"
            )
        name, value = part.split(":", 1)
        out[name.strip()] = value.strip()
    return check_headers(out, source)


def auth_headers(settings: Settings) -> dict[str, str]:
    """The headers every request to the server carries besides Content-Type: the
    ``--llmperf-headers`` and ``Authorization: Bearer $<--llmperf-api-key-env>`` (unless the
    headers give their own Authorization). The managed server's health probe sends them too."""
    headers = parse_headers(settings.headers)
    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if api_key and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
