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

A setting with its own reader (``parse=``) takes any form its sources give: the engine
arguments (``--llmperf-engine-arg KEY=VALUE``, repeatable; one item per line or ``;`` in the
ini file and ``LLMPERF_ENGINE_ARG``; a dict from the marker or the engine factory) are stored
as one canonical JSON object, so equal argument sets share one engine.

Imports nothing heavy: the plugin reads it on every pytest run.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from . import limits
from .decision import DEFAULT_ALPHA, alpha_problem
from .engines.auth import parse_headers
from .engines.base import EngineError
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


def count(limit: limits.Limit) -> Check:
    """A whole count from 1 up to ``limit`` (its reason in the message)."""
    def check(value: float) -> str | None:
        if value < 1:
            return "must be >= 1"
        return None if value <= limit.maximum else f"must be {limit.words()}"

    return check


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


# A setting's own reader: (the raw value from any source, the source's name) -> the value.
Parse = Callable[[Any, str], Any]


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
            engine: bool = False, check: Check | None = None, parse: Parse | None = None,
            repeat: bool = False) -> Any:
    """A Settings field: ``engine=True`` when it identifies an engine instance (the engine
    cache key: two tests with the same engine settings share one loaded engine). ``check``:
    the range rule of a number (int fields default to ``at_least_one``). ``parse``: the
    field's own reader instead of the type conversion; ``repeat``: the command-line option
    may be given several times (the reader gets the list)."""
    return field(default=default,
                 metadata={"help": help, "choices": choices, "engine": engine,
                           "check": check, "parse": parse, "repeat": repeat})


# -- engine arguments ----------------------------------------------------------------------

_ARG_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")


def _arg_name(key: Any, what: str, source: str) -> str:
    """An engine argument's name, ``-`` read as ``_``; ConfigError, saying ``what`` is
    wrong, unless it is a name."""
    name = key.strip().replace("-", "_") if isinstance(key, str) else None
    if not name or not _ARG_NAME.match(name):
        raise ConfigError(f"{source}: {what} a name such as max_num_seqs (a-z, 0-9, _)")
    return name


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: not JSON numbers, so the text itself


def _arg_value(text: str) -> Any:
    """VALUE as JSON where it parses (``8``, ``true``, ``{"method": "ngram"}``), else the
    text itself (``auto``, ``fp8``)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return text


def split_items(text: str) -> list[str]:
    """The items of an ini value or environment variable: separated by newlines or ``;``,
    except inside a JSON value (``k={"a": "x;y"}`` and ``k="x;y"`` are one item each)."""
    items: list[str] = []
    depth, quoted, escaped, start = 0, False, False, 0
    for i, ch in enumerate(text):
        if quoted:  # a JSON string: a value, or inside a value's brackets
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"' and (depth > 0 or text[i - 1:i] == "="):
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch in "\n;" and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def engine_args_mapping(raw: Any, source: str) -> dict[str, Any]:
    """Engine arguments from any source as a checked mapping: a mapping (the marker's or the
    engine factory's ``engine_args``), a list of ``KEY=VALUE`` items (the repeated
    command-line option), or text (ini file, environment: items separated by newlines or
    ``;``; or a JSON object, the stored form). A later item with the same key wins.
    ConfigError, one line naming ``source``, for an item that is not KEY=VALUE with KEY a
    name, or a value that is not JSON."""
    if isinstance(raw, str) and raw.strip().startswith("{"):
        try:
            raw = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise ConfigError(f"{source}: {raw.strip()[:60]!r} is not a JSON object of "
                              "engine arguments") from None
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: not a JSON object of engine arguments")
    if isinstance(raw, Mapping):
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name = _arg_name(key, f"engine argument {key!r} is not", source)
            try:
                out[name] = json.loads(json.dumps(value, allow_nan=False))
            except (TypeError, ValueError, RecursionError):
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise ConfigError(f"{source}: engine argument {name}={shown} is not a JSON "
                                  "value (a number, true/false, text, a list or a dict)"
                                  ) from None
        return out
    if isinstance(raw, str):
        items: list[Any] = split_items(raw)
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ConfigError(f"{source}: {raw!r} is not KEY=VALUE engine arguments")
    out = {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{source}: {item!r} is not KEY=VALUE")
        shown = repr(item.strip()) if len(item.strip()) <= 40 else repr(item.strip()[:37] + "...")
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{source}: {shown} is not KEY=VALUE")
        name = _arg_name(key, f"{shown} is not KEY=VALUE with KEY", source)
        if not value.strip():
            raise ConfigError(f"{source}: {shown} has no value (KEY=VALUE; an empty text is "
                              f'{name}="")')
        out[name] = _arg_value(value.strip())
    return out


def engine_args_text(raw: Any, source: str) -> str | None:
    """The stored form of engine arguments: a JSON object with sorted keys (None when there
    are none), so equal argument sets give equal engine keys."""
    if raw is None:
        return None
    args = engine_args_mapping(raw, source)
    return json.dumps(args, sort_keys=True, separators=(",", ":")) if args else None


# --llmperf-ab's reader (run/ab_flag.py runs the A/B): the overrides, checked against the
# engine settings, stored as a sorted JSON object.

ARG_PREFIX = "engine_arg."
# Settings that make an engine but are not the engine's own (the cache key only).
_NOT_OVERRIDABLE = frozenset({"engine_arg"})


def engine_keys() -> list[str]:
    """The setting names --llmperf-ab takes (the engine settings)."""
    return sorted(f.name for f in fields(Settings)
                  if f.metadata["engine"] and f.name not in _NOT_OVERRIDABLE)


def _items(raw: Any, source: str) -> list[tuple[str, str]]:
    if isinstance(raw, str) and raw.strip().startswith("{"):
        try:
            loaded = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{source}: {raw.strip()[:60]!r} is not KEY=VALUE") from None
        raw = loaded
    if isinstance(raw, Mapping):
        return [(str(k), str(v)) for k, v in raw.items()]
    items = split_items(raw) if isinstance(raw, str) else list(raw)
    out = []
    for item in items:
        text = str(item).strip()
        key, eq, value = text.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{source}: {text!r} is not KEY=VALUE (e.g. threads=1, "
                              "engine_arg.flash_attn=true)")
        out.append((key.strip().replace("-", "_") if not key.strip().startswith(ARG_PREFIX)
                    else key.strip(), value.strip()))
    return out


def parse_overrides(raw: Any, source: str) -> dict[str, str]:
    """The overrides as {KEY: VALUE text}, every key and value checked; ConfigError (one
    line naming ``source``, and the nearest valid key for an unknown one)."""
    out: dict[str, str] = {}
    valid = engine_keys()
    for key, value in _items(raw, source):
        if key.startswith(ARG_PREFIX):
            name = key[len(ARG_PREFIX):]
            engine_args_mapping([f"{name}={value}"], f"{source} {key}")  # checks both
            out[ARG_PREFIX + name.replace("-", "_")] = value
            continue
        if key not in valid:
            near = difflib.get_close_matches(key, [*valid, "engine_arg.NAME"], n=1, cutoff=0.5)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ConfigError(f"{source}: unknown key {key!r}; {hint}valid: "
                              f"{', '.join(valid)}, engine_arg.NAME")
        convert(OPTION_BY_NAME[key], value, f"{source} {key}")
        out[key] = value
    return out


def overrides_text(raw: Any, source: str) -> str | None:
    """The stored form (the Settings field): a JSON object with sorted keys, None if empty."""
    if raw is None:
        return None
    parsed = parse_overrides(raw, source)
    return json.dumps(parsed, sort_keys=True, separators=(",", ":")) if parsed else None


def headers_text(raw: Any, source: str) -> str | None:
    """``--llmperf-headers`` as given, once every header in it parses and can be sent (a name
    that is an HTTP token, a value of Latin-1 text on one line): refused here, before any
    request, naming the header but not its value."""
    if raw is None:
        return None
    text = json.dumps(dict(raw)) if isinstance(raw, Mapping) else str(raw)
    try:
        parse_headers(text, source)
    except EngineError as exc:
        raise ConfigError(str(exc)) from None
    return text or None


@dataclass(frozen=True)
class Settings:
    engine: str = setting(
        "llama_cpp", "engine to benchmark: llama_cpp, openai, vllm, trtllm, or one a plugin "
        "adds (engines/registry.py)", engine=True)
    model: str = setting(
        DEFAULT_MODEL, f"model: llama.cpp (embedded or served): a path to a .gguf file, or the "
        f"packaged {DEFAULT_MODEL!r}; vllm, trtllm and their --llmperf-server recipes: a "
        "Hugging Face model directory (config.json, weights, tokenizer) or hub id",
        engine=True)
    threads: int | None = setting(None, "llama.cpp threads (default: all cores)", engine=True)
    n_ctx: int = setting(
        2048, "llama.cpp's own context size in tokens (--llmperf-context-len, when given, "
        "wins; it applies to every engine)", engine=True)
    n_batch: int = setting(512, "llama.cpp batch size for prompt processing", engine=True)
    url: str | None = setting(None, "base URL of a running OpenAI-compatible server",
                              engine=True)
    api_key_env: str = setting("OPENAI_API_KEY",
                               "environment variable that holds the server's API key")
    server_model: str | None = setting(None, "model name to send to the server", engine=True)
    endpoint: str = setting("completions",
                            "OpenAI endpoint to stream: completions (/v1/completions) or chat "
                            "(/v1/chat/completions: the server applies the model's chat "
                            "template; one without needs the server's --chat-template)",
                            choices=("completions", "chat"), engine=True)
    headers: str | None = setting(
        None, "extra HTTP headers for the server: 'Name: value; Other: value'", engine=True,
        parse=headers_text)
    request_timeout: float = setting(600.0, "seconds one request may take in all", engine=True,
                                     check=positive)
    tls_verify: str = setting(
        "true", "verify the server's TLS certificate: true, false, or a CA bundle path",
        engine=True)
    tokenizer: str = setting(
        "auto", "tokenizer for exact-length prompts against a server: auto, server, none, "
        "a .gguf path (vocabulary loaded locally), or a local Hugging Face tokenizer "
        "directory or tokenizer.json", engine=True)
    server: str | None = setting(
        None, "start this server for the session: " + ", ".join(SERVER_RECIPES),
        choices=SERVER_RECIPES, engine=True)
    server_cmd: str | None = setting(
        None, "custom server command line; {port}, {host} and {model} are filled in",
        engine=True)
    server_args: str | None = setting(
        None, "extra arguments appended to the server command, e.g. '--chat-template "
        "FILE.jinja' for vLLM serving a model without a chat template", engine=True)
    server_timeout: float = setting(300.0, "seconds to wait for the server to be healthy",
                                    check=positive)
    json: str | None = setting(None, "write every result, with samples, to this JSON file")
    html: str | None = setting(
        None, "write a self-contained HTML report (plots, baseline comparison, trends)")
    markdown: str | None = setting(
        None, "write a compact Markdown table (for pull-request comments)")
    repeats: int = setting(1, "default runs per marked test", check=count(limits.REPEATS))
    cost_per_hour: float | None = setting(
        None, "the machine's price in USD per hour: gives usd_per_mtok (USD per million "
        "output tokens at the measured throughput)", check=positive)
    load_workers: int = setting(
        1, "load-generator processes: the connections of a run spread over N processes "
        "(timestamps on the shared monotonic clock, results merged), for loads one Python "
        "process cannot keep up with", check=count(limits.LOAD_WORKERS))
    shard: str | None = setting(
        None, "run one shard of the suite, INDEX/COUNT (e.g. a Kubernetes Indexed Job's "
        "$JOB_COMPLETION_INDEX/4); sorted node ids are dealt round-robin, or balanced by "
        "--llmperf-shard-durations")
    shard_durations: str | None = setting(
        None, "with --llmperf-shard: balance the shards by the test durations recorded in "
        "this earlier --llmperf-json file (unknown tests weigh the median)")
    save: bool = setting(
        False, "save every run as a baseline of the current commit (refuses a dirty tree)")
    save_dirty: bool = setting(
        False, "with --llmperf-save: save even with uncommitted changes (marked dirty)")
    compare: str | None = setting(
        None, "baseline to compare with: a commit, branch or tag (default: the nearest "
        "ancestor of HEAD with a baseline for the same profile)")
    baseline_dir: str | None = setting(
        None, "baseline directory (default: baselines/ at the repository root)")
    store: str | None = setting(
        None, "baseline store shared by CI jobs: pulled into the baseline directory before "
        "the gate looks up baselines, pushed after --llmperf-save; a directory, file://PATH, "
        "an fsspec URL (s3://bucket/prefix, gs://..., memory://...) or git:[REMOTE/]BRANCH "
        "(a dedicated branch, e.g. git:llmperf-baselines)")
    alpha: float = setting(DEFAULT_ALPHA, "significance level of the regression gate "
                           "(one-sided)", check=alpha_problem)
    inconclusive: str = setting(
        "warn", "when the stored gate cannot decide a gated change larger than the tolerance "
        "(repeats=1, few earlier baselines), or a gate or A/B passes blind (the smallest "
        "change it could detect, its MDE, is above the tolerance): warn (the test passes "
        "with a warning) or fail",
        choices=("warn", "fail"))
    quant_formats: str | None = setting(
        None, "model formats the quantized_model fixture runs over, e.g. "
        "'source,Q8_0,Q4_0,F16' (GGUF types made from --llmperf-model; awq, gptq, fp16, bf16, "
        "fp8 on vLLM)")
    quantization: str | None = setting(
        None, "vllm: the checkpoint's quantization (awq, gptq, fp8, ...); TensorRT-LLM takes "
        "pre-quantized (ModelOpt) checkpoints only", engine=True)
    dtype: str = setting("auto", "vllm/trtllm: weight dtype (auto, float16, bfloat16)",
                         engine=True)
    gpu_memory_utilization: float = setting(
        0.9, "vllm: fraction of GPU memory the engine may take", engine=True,
        check=between(0, 1, high_inclusive=True))
    keep_variants: bool = setting(
        False, "quantized_engine: keep every format variant loaded for the session (default: "
        "one at a time, each closed before the next is loaded)")
    context_len: int | None = setting(
        None, "context length in tokens (prompt + output), for every engine: llama.cpp's "
        "n_ctx, vLLM's max_model_len, TensorRT-LLM's max_seq_len, a started server's context "
        "flag; default: the model's own (llama.cpp: --llmperf-n-ctx)", engine=True)
    engine_arg: str | None = setting(
        None, "an engine argument KEY=VALUE, passed to the engine as is (llama.cpp: "
        "Llama(KEY=VALUE); vLLM, TensorRT-LLM: their engine arguments; a started server: "
        "--KEY VALUE, trtllm-serve: --extra_llm_api_options); "
        "repeat the option for several (ini, env: one per line or separated by ';'); VALUE is "
        "JSON where it parses (8, true, {\"method\": \"ngram\"}), else text; KEY: a-z, 0-9, "
        "_ ('-' reads as '_')", engine=True, parse=engine_args_text, repeat=True)
    ab: str | None = setting(
        None, "paired A/B of a config change, KEY=VALUE (repeat for several): every marked "
        "test's workload runs interleaved request by request on its engine (A) and on one "
        "with these settings changed (B); KEY: an engine setting (threads, n_batch, model, "
        "url, quantization, context_len, ...) or engine_arg.NAME; reports each metric's "
        "change, interval and verdict (run/ab_flag.py)", parse=overrides_text, repeat=True)
    ab_fail: bool = setting(
        False, "with --llmperf-ab: fail a test when B is slower than A (a regression "
        "verdict); default: report the verdict only")

    def engine_args(self) -> dict[str, Any]:
        """The engine arguments as a mapping (empty when none were given)."""
        if not self.engine_arg:
            return {}
        return engine_args_mapping(self.engine_arg, "engine_arg")

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
    parse: Parse | None = None  # the setting's own reader (see ``setting``)
    repeat: bool = False  # the command-line option may be repeated

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
               f.metadata["check"] or (at_least_one if _kind(f.type) is int else None),
               f.metadata["parse"], f.metadata["repeat"])
    for f in fields(Settings)
)
OPTION_BY_NAME: dict[str, OptionSpec] = {o.name: o for o in OPTIONS}


def convert(spec: OptionSpec, raw: Any, source: str,
            choices: Collection[str] | None = None) -> Any:
    """``raw`` (text from the command line, ini or environment, or a Python value from the
    engine factory) as the setting's type, checked; raises ConfigError naming ``source``."""
    if raw is None:
        return None
    if spec.parse is not None:
        return spec.parse(raw, source)
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

    ``engines``: the valid ``engine`` names (the plugin passes the registry's and the
    hooks'; None: any name, checked when the engine is made).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        choices = tuple(engines) if spec.name == "engine" and engines is not None else None
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
