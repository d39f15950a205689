"""The headers every request to a server carries: ``--llmperf-headers`` parsed, and the API
key from the environment as ``Authorization: Bearer``. Shared by the OpenAI-compatible engine
(its requests), the managed servers (their health probe) and the session (what to redact)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from .base import EngineError

if TYPE_CHECKING:
    from ..settings import Settings


def parse_headers(spec: str | None) -> dict[str, str]:
    """'Name: value; Other: value' (or one per line, or a JSON object) -> dict."""
    if not spec:
        return {}
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            data = json.loads(spec)
        except ValueError as exc:
            raise EngineError(f"--llmperf-headers is not valid JSON: {exc}") from None
        return {str(k): str(v) for k, v in data.items()}
    out: dict[str, str] = {}
    for part in spec.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        if ":" not in part:
            raise EngineError(
                f"--llmperf-headers: {part.strip()!r} is not 'Name: value' "
                "(separate several headers with ';')"
            )
        name, value = part.split(":", 1)
        out[name.strip()] = value.strip()
    return out


def auth_headers(settings: Settings) -> dict[str, str]:
    """The headers every request to the server carries besides Content-Type: the
    ``--llmperf-headers`` and ``Authorization: Bearer $<--llmperf-api-key-env>`` (unless the
    headers give their own Authorization). The managed server's health probe sends them too."""
    headers = parse_headers(settings.headers)
    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if api_key and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
