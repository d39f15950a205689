"""``--llmperf-ab KEY=VALUE``: a config change checked in one flag.

Every marked test's workload runs as a paired A/B: A is the engine the test asked for (the
session's settings, the marker's ``engine_args``, a factory's overrides), B is a second engine
built from A's settings with the overrides, and the two are interleaved request by request
exactly as ``llmperf_bench.compare`` does (``run_benchmark_interleaved``, decided by
``verdict.ab.run_paired``). The verdict is reported per test and metric (terminal section
"llmperf A/B", and the test's ``ab`` entry in the JSON results); a regression fails the test
only with ``--llmperf-ab-fail``: the flag answers "is B faster or slower", it is not a gate.

KEY is an engine setting of ``settings.Settings`` (``threads``, ``n_batch``, ``model``,
``url``, ``quantization``, ``context_len``, ...) or ``engine_arg.NAME`` (an engine argument
passed through, merged into A's). Values go through the option's own parsing (``convert``).

B is always its own engine instance (also when the overrides change nothing: an A/A run then
compares two equal engines, not one engine with itself, whose caches would favour the second
of each request pair). For an in-process engine both models are resident at once.

Imports nothing heavy: ``settings`` reads the option through ``overrides_text``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from ..engines.base import EngineError
from ..redact import redact_argv
from ..settings import (
    ARG_PREFIX,
    OPTION_BY_NAME,
    ConfigError,
    Settings,
    convert,
    engine_args_mapping,
    engine_args_text,
)

if TYPE_CHECKING:
    import pytest

    from ..engines.base import Engine


def describe(overrides: Mapping[str, str]) -> str:
    """``threads=1 n_batch=64``: the change, as the reports name B; redacted as a command
    line's ``--llmperf-ab`` values are (``headers=X-Key: ***``, ``url=https://h/v1?key=***``)."""
    argv = [a for k, v in sorted(overrides.items()) for a in ("--llmperf-ab", f"{k}={v}")]
    return " ".join(redact_argv(argv)[1::2])


def b_settings(a: Settings, overrides: Mapping[str, str],
               engines: Sequence[str] | None = None) -> Settings:
    """A's settings with the overrides; ConfigError for a value that cannot work."""
    values: dict[str, Any] = {}
    args: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key.startswith(ARG_PREFIX):
            args.update(engine_args_mapping([f"{key[len(ARG_PREFIX):]}={raw}"],
                                            f"--llmperf-ab {key}"))
            continue
        values[key] = convert(OPTION_BY_NAME[key], raw, f"--llmperf-ab {key}",
                              choices=engines if key == "engine" and engines else None)
    served = values.get("url") or values.get("server") or values.get("server_cmd")
    if served and a.engine == "llama_cpp" and "engine" not in values:
        values["engine"] = "openai"  # a URL or a server to start means a server (as resolve)
    settings = dataclasses.replace(a, **values)
    if args:
        settings = dataclasses.replace(
            settings, engine_arg=engine_args_text({**settings.engine_args(), **args},
                                                  "--llmperf-ab engine_arg"))
    return settings


def _engine_settings(session: Any, engine: Engine) -> Settings | None:
    """The settings the session made ``engine`` from (None: not made by the session)."""
    names = [f.name for f in fields(Settings) if f.metadata["engine"]]
    for key, cached in session.engines.items():
        if cached is engine:
            made: Settings = dataclasses.replace(session.settings,
                                                 **dict(zip(names, key, strict=True)))
            return made
    return None


_B_ENGINES: pytest.StashKey[dict[tuple[Any, ...], Engine]] | None = None


def _b_cache(config: pytest.Config) -> dict[tuple[Any, ...], Engine]:
    """B engines of this session, by engine key: closed with the session."""
    import pytest

    global _B_ENGINES
    if _B_ENGINES is None:
        _B_ENGINES = pytest.StashKey()
    cache = config.stash.get(_B_ENGINES, None)
    if cache is None:
        cache = config.stash[_B_ENGINES] = {}

        config.add_cleanup(lambda: close_b_engines(config))
    return cache


def close_b_engines(config: pytest.Config) -> None:
    """Close this session's B engines (the session does it at its end, before pytest's
    summary, so what they print when they stop comes before it; again at config cleanup)."""
    import contextlib

    cache = config.stash.get(_B_ENGINES, None) if _B_ENGINES is not None else None
    for engine in (cache or {}).values():
        with contextlib.suppress(Exception):  # closing must not mask the outcome
            engine.close()
    if cache:
        cache.clear()


def engine_b(session: Any, engine_a: Engine, overrides: Mapping[str, str]) -> Engine:
    """B's engine for the test whose A is ``engine_a``: a test failure (one line) when it
    cannot be made."""
    import pytest

    a = _engine_settings(session, engine_a)
    if a is None:
        pytest.fail("llmperf: --llmperf-ab needs the test's engine from llm_engine or "
                    "llmperf_engine_factory (it builds B from that engine's settings)",
                    pytrace=False)
    problem = ""
    try:
        b = b_settings(a, overrides, session.engine_names)
    except ConfigError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(f"llmperf: {problem}", pytrace=False)
    cache = _b_cache(session.config)
    key = b.engine_key()
    if key not in cache:
        try:
            made = session.config.hook.pytest_llmperf_make_engine(settings=b)
            if made is None:
                raise EngineError(f"no plugin makes engine {b.engine!r}")
        except EngineError as exc:
            problem = f"llmperf: --llmperf-ab {describe(overrides)}: {exc}"
        else:
            cache[key] = made
    if problem:
        pytest.fail(problem, pytrace=False)
    return cache[key]


# -- reporting ------------------------------------------------------------------------------
