"""What engines need to know about a workload's per-request fields (``Workload.params``) and
its model mix (``Workload.models``); the workload checks them (run/request_params.py).

Pure logic, no I/O: the JSON schema a ``response_format`` asks for, and the one line an engine
that serves one model gives for a mix it cannot send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def response_schema(value: Any) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` asks for: {} for ``json_object`` (any JSON
    object), the schema for ``json_schema`` (OpenAI's shape: ``{"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}}}``), None for ``text``. ValueError for
    another shape."""
    if not isinstance(value, Mapping) or value.get("type") not in RESPONSE_FORMATS:
        raise ValueError("must be a dict whose 'type' is one of "
                         f"{', '.join(RESPONSE_FORMATS)}")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise ValueError("type 'json_schema' needs 'json_schema': {'name': ..., "
                         "'schema': {...}} (OpenAI's shape)")
    return dict(schema)


def single_model_problem(kind: str, own: str | None, models: Sequence[str],
                         hint: str = "") -> str | None:
    """Why an engine that serves one model (``own``) cannot run a mix of ``models`` (None
    when every name is its own model's)."""
    others = [m for m in models if m != own]
    if not others:
        return None
    return (f"Workload.models: the {kind} engine serves one model ({own or 'its model'}) and "
            f"cannot send requests to {', '.join(repr(m) for m in others)}"
            + (f"; {hint}" if hint else ""))


def unsupported_params_problem(kind: str, params: Mapping[str, Any],
                               supported: Sequence[str]) -> str | None:
    """Why an engine cannot pass ``params`` through (None when it can): the keys it has no
    mapping for, and the ones it has."""
    bad = sorted(k for k in params if k not in supported)
    if not bad:
        return None
    return (f"Workload.params: the {kind} engine cannot apply {', '.join(bad)}; it maps "
            f"{', '.join(sorted(supported))} (an OpenAI-compatible server takes any field)")
