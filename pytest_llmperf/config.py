"""Settings: command-line options, ini keys and environment variables, resolved once.

Precedence: command line, then ini file, then environment, then the default.
Each option is declared once in OPTIONS; the plugin registers them from this table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import DEFAULT_MODEL

ENGINES = ("llama_cpp", "openai")


class ConfigError(ValueError):
    """A setting with a bad value."""


@dataclass(frozen=True)
class OptionSpec:
    name: str  # settings attribute; CLI --llmperf-<name with dashes>, ini llmperf_<name>
    kind: type  # str, int, float, bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--llmperf-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "llmperf_" + self.name

    @property
    def env(self) -> str:
        return "LLMPERF_" + self.name.upper()


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("engine", str, "llama_cpp", "engine to benchmark", ENGINES),
    OptionSpec("model", str, DEFAULT_MODEL,
               f"model: a path to a .gguf file, or the packaged {DEFAULT_MODEL!r}"),
    OptionSpec("threads", int, None, "llama.cpp threads (default: all cores)"),
    OptionSpec("n_ctx", int, 2048, "llama.cpp context size in tokens"),
    OptionSpec("n_batch", int, 512, "llama.cpp batch size for prompt processing"),
    OptionSpec("url", str, None, "base URL of a running OpenAI-compatible server"),
    OptionSpec("api_key_env", str, "OPENAI_API_KEY",
               "environment variable that holds the server's API key"),
    OptionSpec("server_model", str, None, "model name to send to the server"),
    OptionSpec("json", str, None, "write every result, with samples, to this JSON file"),
    OptionSpec("repeats", int, 1, "default runs per marked test"),
)
OPTION_BY_NAME: dict[str, OptionSpec] = {o.name: o for o in OPTIONS}


def convert(spec: OptionSpec, raw: Any, source: str) -> Any:
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
    try:
        value = spec.kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {raw!r} is not a valid {spec.kind.__name__}") from None
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{source}: {raw!r} is not one of {', '.join(spec.choices)}")
    if spec.kind is int and value < 1:
        raise ConfigError(f"{source}: {raw!r} must be >= 1")
    return value


@dataclass(frozen=True)
class Settings:
    engine: str = "llama_cpp"
    model: str = DEFAULT_MODEL
    threads: int | None = None
    n_ctx: int = 2048
    n_batch: int = 512
    url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    server_model: str | None = None
    json: str | None = None
    repeats: int = 1

    def engine_key(self) -> tuple[Any, ...]:
        """What identifies an engine instance (for sharing it across a session)."""
        return (self.engine, self.model, self.threads, self.n_ctx, self.n_batch, self.url,
                self.server_model)


def resolve(
    cli: Callable[[OptionSpec], Any],
    ini: Callable[[OptionSpec], Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the three sources; raises ConfigError naming the source of a bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        raw = cli(spec)
        if raw is not None:
            values[spec.name] = convert(spec, raw, spec.flag)
            continue
        raw = ini(spec)
        if raw not in (None, ""):
            values[spec.name] = convert(spec, raw, f"ini key {spec.ini}")
            continue
        raw = environ.get(spec.env)
        if raw not in (None, ""):
            values[spec.name] = convert(spec, raw, f"environment variable {spec.env}")
            continue
        values[spec.name] = spec.default
    engine_given = cli(OPTION_BY_NAME["engine"]) is not None
    if values.get("url") and values["engine"] == "llama_cpp" and not engine_given:
        values["engine"] = "openai"  # a URL means a server
    return Settings(**values)
