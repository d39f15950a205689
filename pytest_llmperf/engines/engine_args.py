"""Engine arguments (``--llmperf-engine-arg KEY=VALUE``, the marker's ``engine_args``)
checked against what the installed engine accepts, with the nearest names as a hint."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from .base import EngineError


def check_engine_args(args: Mapping[str, Any], valid: Collection[str] | None, *, engine: str,
                      reserved: Mapping[str, str] | None = None, what: str = "") -> None:
    """EngineError unless every key of ``args`` (``--llmperf-engine-arg``) is one of ``valid``
    (the installed engine's argument names; None: not known yet, only ``reserved`` is checked)
    and none of ``reserved`` (arguments the plugin sets from its own settings: key -> the
    option to use instead). An unknown key gets the closest names as a hint, a reserved one
    named with the option that sets it."""
    reserved = reserved or {}
    for key in sorted(args):
        if key in reserved:
            raise EngineError(f"{engine} engine argument {key!r} is set by the plugin; use "
                              f"{reserved[key]}")
    if valid is None:
        return
    allowed = sorted(set(valid) - set(reserved))
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        def named(name: str) -> str:
            use = reserved.get(name)
            return f"{name}, set by {use}" if use and use.startswith("--") else name

        known = [*allowed, *reserved]
        hints = [f"{key} (did you mean {' or '.join(named(c) for c in close)}?)" if close
                 else key
                 for key in unknown
                 for close in [difflib.get_close_matches(key, known, n=2)]]
        raise EngineError(f"unknown {engine} engine argument {', '.join(hints)}; valid"
                          f"{f' ({what})' if what else ''}: {', '.join(allowed)}")
