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

ENGINES = ("llama_cpp", "openai", "vllm", "trtllm")
# Launch recipes in servers.py (the names only: config imports nothing heavy).
SERVER_RECIPES = ("llama_cpp", "llama_server", "vllm", "trtllm", "tgi", "ollama")


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
    OptionSpec("endpoint", str, "completions",
               "OpenAI endpoint to stream: completions (/v1/completions) or chat",
               ("completions", "chat")),
    OptionSpec("headers", str, None,
               "extra HTTP headers for the server: 'Name: value; Other: value'"),
    OptionSpec("request_timeout", float, 600.0, "seconds one request may take in all"),
    OptionSpec("tls_verify", str, "true",
               "verify the server's TLS certificate: true, false, or a CA bundle path"),
    OptionSpec("tokenizer", str, "auto",
               "tokenizer for exact-length prompts against a server: auto, server, none, "
               "or a .gguf path (vocabulary loaded locally)"),
    OptionSpec("server", str, None,
               "start this server for the session: " + ", ".join(SERVER_RECIPES),
               SERVER_RECIPES),
    OptionSpec("server_cmd", str, None,
               "custom server command line; {port}, {host} and {model} are filled in"),
    OptionSpec("server_args", str, None, "extra arguments appended to the server command"),
    OptionSpec("server_timeout", float, 300.0, "seconds to wait for the server to be healthy"),
    OptionSpec("json", str, None, "write every result, with samples, to this JSON file"),
    OptionSpec("html", str, None,
               "write a self-contained HTML report (plots, baseline comparison, trends)"),
    OptionSpec("markdown", str, None,
               "write a compact Markdown table (for pull-request comments)"),
    OptionSpec("repeats", int, 1, "default runs per marked test"),
    OptionSpec("shard", str, None,
               "run one shard of the suite, INDEX/COUNT (e.g. a Kubernetes Indexed Job's "
               "$JOB_COMPLETION_INDEX/4); tests are split by a hash of their node id"),
    OptionSpec("save", bool, False,
               "save every run as a baseline of the current commit (refuses a dirty tree)"),
    OptionSpec("save_dirty", bool, False,
               "with --llmperf-save: save even with uncommitted changes (marked dirty)"),
    OptionSpec("compare", str, None,
               "baseline to compare with: a commit, branch or tag (default: the nearest "
               "ancestor of HEAD with a baseline for the same profile)"),
    OptionSpec("baseline_dir", str, None,
               "baseline directory (default: baselines/ at the repository root)"),
    OptionSpec("alpha", float, 0.01, "significance level of the regression gate (one-sided)"),
    OptionSpec("quant_formats", str, None,
               "model formats the quantized_model fixture runs over, e.g. 'source,Q8_0,Q4_0,F16' "
               "(GGUF types made from --llmperf-model; awq, gptq, fp16, bf16, fp8 on vLLM)"),
    OptionSpec("quantization", str, None,
               "vllm/trtllm: the checkpoint's quantization (awq, gptq, fp8, ...)"),
    OptionSpec("dtype", str, "auto", "vllm/trtllm: weight dtype (auto, float16, bfloat16)"),
    OptionSpec("gpu_memory_utilization", float, 0.9,
               "vllm: fraction of GPU memory the engine may take"),
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
    html: str | None = None
    markdown: str | None = None
    repeats: int = 1
    shard: str | None = None
    save: bool = False
    save_dirty: bool = False
    compare: str | None = None
    baseline_dir: str | None = None
    alpha: float = 0.01
    endpoint: str = "completions"
    headers: str | None = None
    request_timeout: float = 600.0
    tls_verify: str = "true"
    tokenizer: str = "auto"
    server: str | None = None
    server_cmd: str | None = None
    server_args: str | None = None
    server_timeout: float = 300.0
    quant_formats: str | None = None
    quantization: str | None = None
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9

    def engine_key(self) -> tuple[Any, ...]:
        """What identifies an engine instance (for sharing it across a session)."""
        return (self.engine, self.model, self.threads, self.n_ctx, self.n_batch, self.url,
                self.server_model, self.endpoint, self.headers, self.request_timeout,
                self.tls_verify, self.tokenizer, self.server, self.server_cmd, self.server_args,
                self.quantization, self.dtype, self.gpu_memory_utilization)


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
    served = values.get("url") or values.get("server") or values.get("server_cmd")
    if served and values["engine"] == "llama_cpp" and not engine_given:
        values["engine"] = "openai"  # a URL or a server to start means a server
    return Settings(**values)
