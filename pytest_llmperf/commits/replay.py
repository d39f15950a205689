"""Which stored pytest arguments ``llmperf nightly --bisect`` may replay.

The baseline store is a trust boundary: anyone who can write the shared bucket or the
``llmperf-baselines`` branch writes the ``client.pytest_args`` of its runs, and the nightly job
that replays them may hold write access to the repository and its issues. So nightly replays a
stored argument only when it is on this ALLOW-LIST of arguments that select tests or shape the
measurement and can neither run a command nor name a file, URL or credential:

- test paths and node ids inside the repository: relative, no ``..`` part, not starting with
  ``-`` (an option) or ``@`` (pytest's argument file);
- ``-k EXPR``, ``-m EXPR`` (pytest parses them itself; nothing is evaluated);
- output-shaping flags (``-q``, ``-v``, ``-x``, ``-s``, ``-l``, ``-r CHARS``, ``--tb STYLE``,
  ``--color``, ``--maxfail N``, ``--durations N``, ``--strict-markers``, ``--no-header``), ``-p
  no:NAME`` (only ever disables a plugin), pytest-xdist's ``-n N`` / ``--dist MODE`` and
  pytest-timeout's ``--timeout S``;
- the ``--llmperf-*`` settings that only select or shape the measurement (``MEASUREMENT``: the
  engine by its registered name, a packaged model by name, threads, batch and context sizes,
  timeouts, repeats, alpha, ...), each value checked as the plugin checks it.

Left out without a word (an honest recorder keeps them, and they do not change what is
measured): ``--llmperf-store``, ``--llmperf-baseline-dir`` and ``--llmperf-compare``, which
name where baselines live; a bisect session neither reads nor writes baselines.

Everything else is refused: a finding whose stored arguments hold one is still reported, but
its bisect does not run, and the report names the argument. In particular ``--llmperf-url``,
``--llmperf-server``, ``--llmperf-server-cmd``/``-args``, ``--llmperf-headers``,
``--llmperf-api-key-env``, ``--llmperf-engine-arg``, ``--llmperf-ab``, ``--llmperf-tls-verify``,
``--llmperf-tokenizer`` (but ``auto``/``server``/``none``), a model path, ``--junitxml``,
``--llmperf-json``/``-html``/``-markdown``, ``-c``, ``-o``/``--override-ini``, ``--rootdir``,
``--confcutdir``, ``--basetemp``, ``-p NAME``, ``-W``, ``--pdbcls``, an absolute path, and any
option pytest might read as an abbreviation of one of these. The user who wants them gives the
arguments on the nightly command line (``--bisect-args``): those are the user's own.

Pure logic, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..models.packaged import PACKAGED_MODELS
from ..settings import OPTION_BY_NAME, ConfigError, OptionSpec, convert

# The --llmperf-* settings a stored argument may set: they select or size what is measured.
MEASUREMENT = ("engine", "model", "threads", "n_ctx", "n_batch", "server_model", "endpoint",
               "request_timeout", "server_timeout", "tokenizer", "repeats", "cost_per_hour",
               "load_workers", "shard", "alpha", "inconclusive", "quant_formats",
               "quantization", "dtype", "gpu_memory_utilization", "keep_variants",
               "context_len", "ab_fail")
# Where baselines live: not what is measured, and a bisect session uses no baseline.
DROPPED = ("--llmperf-store", "--llmperf-baseline-dir", "--llmperf-compare")
SAFE_TOKENIZERS = ("auto", "server", "none")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*\Z")
_TEXT = re.compile(r"[A-Za-z0-9_.,:/+\- ]+\Z")
_SHORT_FLAGS = re.compile(r"-[qvxsl]+\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TB = ("auto", "long", "short", "line", "native", "no")


@dataclass(frozen=True)
class Refused:
    """A stored argument nightly does not replay, and why."""

    argument: str  # the option's name, or the positional argument itself (shortened)
    reason: str

    def __str__(self) -> str:
        return f"{self.argument} ({self.reason})"


@dataclass(frozen=True)
class Replay:
    """The arguments to replay (stored ones less ``DROPPED``) or what was refused."""

    args: tuple[str, ...]
    refused: tuple[Refused, ...]
    dropped: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.refused


# A value check: None when the value may be replayed, else why not.
Check = Callable[[str], "str | None"]


def _int(value: str) -> str | None:
    return None if value.isdigit() else "not a whole number"


def _number(value: str) -> str | None:
    try:
        ok = float(value) >= 0
    except ValueError:
        ok = False
    return None if ok else "not a number"


def _choice(*choices: str) -> Check:
    return lambda value: None if value in choices else f"not one of {', '.join(choices)}"


def _workers(value: str) -> str | None:
    return None if value.isdigit() or value in ("auto", "logical") else \
        "not a number of workers"


def _report_chars(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z]+", value) else "not report characters"


def _expression(value: str) -> str | None:
    return None  # -k/-m: pytest's own expression grammar; names only, nothing evaluated


# pytest's own options on the list: option -> check of its value (None: a flag).
PYTEST_OPTIONS: dict[str, Check | None] = {
    "--llmperf": None, "-q": None, "--quiet": None, "-v": None, "--verbose": None,
    "-x": None, "--exitfirst": None, "-s": None, "-l": None, "--showlocals": None,
    "--strict-markers": None, "--no-header": None, "--no-summary": None,
    "-k": _expression, "-m": _expression, "-r": _report_chars, "--tb": _choice(*_TB),
    "--color": _choice("yes", "no", "auto"), "--maxfail": _int, "--durations": _int,
    "-n": _workers, "--numprocesses": _workers,
    "--dist": _choice("no", "load", "loadscope", "loadfile", "loadgroup", "worksteal"),
    "--timeout": _number,
}


def _setting(spec: OptionSpec) -> Check:
    def check(value: str) -> str | None:
        try:
            convert(spec, value, spec.flag)
        except ConfigError as exc:
            return str(exc).removeprefix(f"{spec.flag}: ").removeprefix(f"{value!r} ")
        if spec.name == "model" and value not in PACKAGED_MODELS:
            return "not a packaged model's name (a path or a hub id names what to load)"
        if spec.name == "tokenizer" and value not in SAFE_TOKENIZERS:
            return f"not one of {', '.join(SAFE_TOKENIZERS)} (a path names a file)"
        if spec.name in ("engine", "quantization", "dtype") and not _NAME.match(value):
            return "not a name"
        if spec.name == "shard" and not re.fullmatch(r"\d{1,6}/\d{1,6}", value):
            return "not INDEX/COUNT"
        if spec.kind is str and not _TEXT.match(value):
            return "holds characters no setting nightly replays has"
        return None
    return check


LLMPERF_OPTIONS: dict[str, Check | None] = {
    OPTION_BY_NAME[name].flag: (None if OPTION_BY_NAME[name].kind is bool
                                else _setting(OPTION_BY_NAME[name]))
    for name in MEASUREMENT}
ALLOWED: dict[str, Check | None] = {**PYTEST_OPTIONS, **LLMPERF_OPTIONS}


def shown(arg: str, limit: int = 60) -> str:
    """An argument as a message may show it: one line, at most ``limit`` characters."""
    text = " ".join(_CONTROL.sub(" ", arg).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def path_problem(arg: str) -> str | None:
    """Why a positional argument (a test path or node id) may not be replayed, or None."""
    if not arg:
        return "an empty argument"
    if _CONTROL.search(arg):
        return "holds control characters"
    if arg.startswith("-"):
        return "an option"
    if arg.startswith("@"):
        return "an argument file (@FILE) names a file to read arguments from"
    head = arg.split("::", 1)[0]
    if "\\" in head:
        return "a path with a backslash"
    path = PurePosixPath(head)
    if not head or path.is_absolute() or head.startswith("~"):
        return "a path outside the repository"
    if ".." in path.parts:
        return "a path that leaves the repository (..)"
    return None


def check(args: Sequence[str]) -> Replay:
    """Which of the stored ``args`` nightly may replay (see the module docstring)."""
    out: list[str] = []
    refused: list[Refused] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        arg = str(args[i])
        i += 1
        if not arg.startswith("-") or arg == "-":
            problem = path_problem(arg)
            if problem:
                refused.append(Refused(shown(arg), problem))
            else:
                out.append(arg)
            continue
        if arg == "--":
            refused.append(Refused("--", "ends pytest's options: what follows is unchecked"))
            break
        if _SHORT_FLAGS.match(arg):
            out.append(arg)  # -q, -vv, -qx
            continue
        if arg.startswith("-p") and not arg.startswith("--"):  # as pytest's pre-parse reads
            value = arg[2:]
            if not value:
                value = str(args[i]) if i < len(args) else ""
                i += 1
            if value.startswith("no:") and _NAME.match(value[3:]):
                out += ["-p", value]  # only disables a plugin
            else:
                refused.append(Refused("-p", "loads a plugin (only -p no:NAME is replayed)"))
            continue
        name, eq, value = arg.partition("=")
        attached = False
        if not arg.startswith("--") and len(arg) > 2 and arg[:2] in ALLOWED:
            name, eq, value, attached = arg[:2], "", arg[2:], True  # -kEXPR, -rA, -n4
        if name in DROPPED:
            if not eq and i < len(args):
                i += 1  # its value
            dropped.append(name)
            continue
        if name not in ALLOWED:
            refused.append(Refused(shown(name, 40), _why_not(name)))
            if not eq and i < len(args) and not str(args[i]).startswith("-"):
                i += 1  # most likely its value: not a test path to judge on its own
            continue
        value_check = ALLOWED[name]
        if value_check is None:
            if eq or attached:
                refused.append(Refused(shown(name, 40), "a flag given a value"))
            else:
                out.append(arg)
            continue
        if not eq and not attached:
            if i >= len(args):
                refused.append(Refused(name, "no value"))
                break
            value = str(args[i])
            i += 1
        problem = _value_problem(value) or value_check(value)
        if problem:
            refused.append(Refused(name, f"{shown(value, 40)!r}: {problem}"))
            continue
        out += [name, value]
    return Replay(tuple(out), tuple(refused), tuple(dropped))


def _value_problem(value: str) -> str | None:
    if _CONTROL.search(value):
        return "holds control characters"
    if value.startswith("-"):
        return "a value that looks like an option"
    return None


def _why_not(name: str) -> str:
    if name.startswith("--llmperf-"):
        return ("runs a command, names a file, URL or credential, or is no measurement "
                "setting nightly replays")
    return "not a pytest option nightly replays (it may run code or name a file)"
