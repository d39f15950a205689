"""Settings: command-line options, ini keys and environment variables, declared once.

Each field of ``Settings`` is one setting: its type, default and help text live on the
field, and the option table (``OPTIONS``: ``--llmperf-<name>``, ini ``llmperf_<name>``,
environment ``LLMPERF_<NAME>``) and the engine cache key derive from the fields.
Precedence: command line, then ini file, then environment, then the default.

Every value is checked where it enters, by ``convert`` (command line, ini file, environment
and ``llmperf_engine_factory(**overrides)`` alike): its type; for numbers, that it is finite
(``nan``, ``inf`` and integers too large for a float are refused); then the field's own rule
(``check=``, e.g. ``positive`` or ``between(0, 0.5)``). A bad value is a ``ConfigError``
naming the source and the value; nothing is silently replaced by a default.

Imports nothing heavy: the plugin reads it on every pytest run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .models.packaged import DEFAULT_MODEL
from .values import is_finite_number

# Launch recipes in engines/servers.py (the names only: nothing heavy is imported here).
SERVER_RECIPES = ("llama_cpp", "llama_server", "vllm", "trtllm", "tgi", "ollama")


class ConfigError(ValueError):
    """A setting with a bad value."""


# A field's range rule: None when the (finite) value is acceptable, else what it must be.
Check = Callable[[float], "str | None"]


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def at_least_one(value: float) -> str | None:
    return None if value >= 1 else "must be >= 1"


def between(low: float, high: float, *, high_inclusive: bool = False,
            example: float | None = None) -> Check:
    """``low < value < high`` (``<= high`` with ``high_inclusive``)."""
    if high_inclusive:
        words = f"must be > {low:g} and <= {high:g}"
    else:
        words = f"must be between {low:g} and {high:g} (exclusive)"
    if example is not None:
        words += f", e.g. {example:g}"

    def check(value: float) -> str | None:
        inside = low < value <= high if high_inclusive else low < value < high
        return None if inside else words

    return check


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
            engine: bool = False, check: Check | None = None) -> Any:
    """A Settings field: ``engine=True`` when it identifies an engine instance (the engine
    cache key: two tests with the same engine settings share one loaded engine). ``check``:
    the range rule of a number (int fields default to ``at_least_one``)."""
    return field(default=default,
                 metadata={"help": help, "choices": choices, "engine": engine,
                           "check": check})


@dataclass(frozen=True)
class Settings:
    engine: str = setting(
        "llama_cpp", "engine to benchmark: llama_cpp, openai, vllm, trtllm, or one a plugin "
        "adds (engines/registry.py)", engine=True)
    model: str = setting(DEFAULT_MODEL,
                         f"model: a path to a .gguf file, or the packaged {DEFAULT_MODEL!r}",
                         engine=True)
    threads: int | None = setting(None, "llama.cpp threads (default: all cores)", engine=True)
    n_ctx: int = setting(2048, "llama.cpp context size in tokens", engine=True)
    n_batch: int = setting(512, "llama.cpp batch size for prompt processing", engine=True)
    url: str | None = setting(None, "base URL of a running OpenAI-compatible server",
                              engine=True)
    api_key_env: str = setting("OPENAI_API_KEY",
                               "environment variable that holds the server's API key")
    server_model: str | None = setting(None, "model name to send to the server", engine=True)
    endpoint: str = setting("completions",
                            "OpenAI endpoint to stream: completions (/v1/completions) or chat",
                            choices=("completions", "chat"), engine=True)
    headers: str | None = setting(
        None, "extra HTTP headers for the server: 'Name: value; Other: value'", engine=True)
    request_timeout: float = setting(600.0, "seconds one request may take in all", engine=True,
                                     check=positive)
    tls_verify: str = setting(
        "true", "verify the server's TLS certificate: true, false, or a CA bundle path",
        engine=True)
    tokenizer: str = setting(
        "auto", "tokenizer for exact-length prompts against a server: auto, server, none, "
        "or a .gguf path (vocabulary loaded locally)", engine=True)
    server: str | None = setting(
        None, "start this server for the session: " + ", ".join(SERVER_RECIPES),
        choices=SERVER_RECIPES, engine=True)
    server_cmd: str | None = setting(
        None, "custom server command line; {port}, {host} and {model} are filled in",
        engine=True)
    server_args: str | None = setting(
        None, "extra arguments appended to the server command", engine=True)
    server_timeout: float = setting(300.0, "seconds to wait for the server to be healthy",
                                    check=positive)
    json: str | None = setting(None, "write every result, with samples, to this JSON file")
    html: str | None = setting(
        None, "write a self-contained HTML report (plots, baseline comparison, trends)")
    markdown: str | None = setting(
        None, "write a compact Markdown table (for pull-request comments)")
    repeats: int = setting(1, "default runs per marked test")
    shard: str | None = setting(
        None, "run one shard of the suite, INDEX/COUNT (e.g. a Kubernetes Indexed Job's "
        "$JOB_COMPLETION_INDEX/4); tests are split by a hash of their node id")
    save: bool = setting(
        False, "save every run as a baseline of the current commit (refuses a dirty tree)")
    save_dirty: bool = setting(
        False, "with --llmperf-save: save even with uncommitted changes (marked dirty)")
    compare: str | None = setting(
        None, "baseline to compare with: a commit, branch or tag (default: the nearest "
        "ancestor of HEAD with a baseline for the same profile)")
    baseline_dir: str | None = setting(
        None, "baseline directory (default: baselines/ at the repository root)")
    alpha: float = setting(0.01, "significance level of the regression gate (one-sided)",
                           check=between(0, 0.5, example=0.01))
    quant_formats: str | None = setting(
        None, "model formats the quantized_model fixture runs over, e.g. "
        "'source,Q8_0,Q4_0,F16' (GGUF types made from --llmperf-model; awq, gptq, fp16, bf16, "
        "fp8 on vLLM)")
    quantization: str | None = setting(
        None, "vllm/trtllm: the checkpoint's quantization (awq, gptq, fp8, ...)", engine=True)
    dtype: str = setting("auto", "vllm/trtllm: weight dtype (auto, float16, bfloat16)",
                         engine=True)
    gpu_memory_utilization: float = setting(
        0.9, "vllm: fraction of GPU memory the engine may take", engine=True,
        check=between(0, 1, high_inclusive=True))

    def engine_key(self) -> tuple[Any, ...]:
        """What identifies an engine instance (for sharing it across a session)."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.metadata["engine"])


_KINDS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class OptionSpec:
    """One setting as the command line, ini file and environment see it."""

    name: str  # Settings attribute; CLI --llmperf-<name with dashes>, ini llmperf_<name>
    kind: type  # str, int, float, bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    check: Check | None = None  # a number's range rule (see ``setting``)

    @property
    def flag(self) -> str:
        return "--llmperf-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "llmperf_" + self.name

    @property
    def env(self) -> str:
        return "LLMPERF_" + self.name.upper()


def _kind(annotation: Any) -> type:
    # Settings is declared with postponed annotations: "int | None" -> int.
    names = [part.strip() for part in str(annotation).split("|")]
    (name,) = [n for n in names if n != "None"]
    return _KINDS[name]


OPTIONS: tuple[OptionSpec, ...] = tuple(
    OptionSpec(f.name, _kind(f.type), None if f.default is MISSING else f.default,
               f.metadata["help"], f.metadata["choices"],
               f.metadata["check"] or (at_least_one if _kind(f.type) is int else None))
    for f in fields(Settings)
)
OPTION_BY_NAME: dict[str, OptionSpec] = {o.name: o for o in OPTIONS}


def convert(spec: OptionSpec, raw: Any, source: str,
            choices: Collection[str] | None = None) -> Any:
    """``raw`` (text from the command line, ini or environment, or a Python value from the
    engine factory) as the setting's type, checked; raises ConfigError naming ``source``."""
    if raw is None:
        return None
    if spec.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{source}: {raw!r} is not a boolean")
    if spec.kind in (int, float) and isinstance(raw, bool):
        raise ConfigError(f"{source}: {raw!r} is not a valid {spec.kind.__name__}")
    try:
        value = spec.kind(raw)
    except OverflowError:
        raise ConfigError(f"{source}: {raw!r} is not a finite number") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {raw!r} is not a valid {spec.kind.__name__}") from None
    choices = spec.choices if choices is None else choices
    if choices and value not in choices:
        raise ConfigError(f"{source}: {raw!r} is not one of {', '.join(choices)}")
    if spec.kind in (int, float):
        if not is_finite_number(value):
            raise ConfigError(f"{source}: {raw!r} is not a finite number")
        problem = spec.check(value) if spec.check is not None else None
        if problem:
            raise ConfigError(f"{source}: {raw!r} {problem}")
    return value


def resolve(
    cli: Callable[[OptionSpec], Any],
    ini: Callable[[OptionSpec], Any],
    environ: Mapping[str, str] | None = None,
    engines: Collection[str] | None = None,
) -> Settings:
    """Settings from the three sources; raises ConfigError naming the source of a bad value.

    ``engines``: the valid ``engine`` names (default: the registry's).
    """
    if engines is None:
        from .engines.registry import engine_names

        engines = engine_names()
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        choices = tuple(engines) if spec.name == "engine" else None
        raw = cli(spec)
        if raw is not None:
            values[spec.name] = convert(spec, raw, spec.flag, choices)
            continue
        raw = ini(spec)
        if raw not in (None, ""):
            values[spec.name] = convert(spec, raw, f"ini key {spec.ini}", choices)
            continue
        raw = environ.get(spec.env)
        if raw not in (None, ""):
            values[spec.name] = convert(spec, raw, f"environment variable {spec.env}", choices)
            continue
        values[spec.name] = spec.default
    engine_given = cli(OPTION_BY_NAME["engine"]) is not None
    served = values.get("url") or values.get("server") or values.get("server_cmd")
    if served and values["engine"] == "llama_cpp" and not engine_given:
        values["engine"] = "openai"  # a URL or a server to start means a server
    return Settings(**values)
