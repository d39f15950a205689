"""Any OpenAI-compatible server (vLLM, trtllm-serve, llama.cpp's servers, TGI, Ollama) over HTTP.

Streams ``/v1/completions`` or ``/v1/chat/completions`` (server-sent events) over a lean
HTTP/1.1 client (``http_client``) that stamps the request when its bytes are written and every
received segment as it is received, before any parsing; ``sse`` reads each event,
``tokenizers`` builds exact-length prompts, ``server_metrics`` reads the server's Prometheus
``/metrics`` around each run (``metrics_snapshot``).

Output token counts come from the server's ``usage`` (``stream_options.include_usage``);
without it, from ``max_tokens`` when the server says it stopped for length (unless a local
tokenizer counts well fewer: a context that filled up), else from a local tokenizer, else the
chunk count; the source is recorded. Per-chunk token counts come from
per-chunk usage (vLLM's ``continuous_usage_stats``) or logprobs when present, else the
authoritative count is spread over the chunks by their text length. Chat streams that carry
thinking (``reasoning`` / ``reasoning_content`` deltas) are split into a reasoning and an answer
phase, with the reasoning tokens counted (``reasoning``).

Every failure becomes a ``RequestError`` with a kind: ``http_<status>``, ``timeout``,
``connection``, ``dropped``, ``malformed_sse``, ``stream_error``, ``incomplete``, ``bad_usage``
(a ``usage`` count that is not a whole number between 0 and twice ``max_tokens`` + 16: a
server's impossible count never becomes a throughput), ``context`` (the server refused because
prompt + output exceed its context: vLLM's "maximum context length" or, having cut
``max_tokens`` to fit, "min_tokens must be less than or equal to max_tokens", llama.cpp's
"exceeds the available context size", OpenAI's ``context_length_exceeded``, TGI's
"``max_new_tokens`` must be <="), ``exception``. An answer shorter than asked is the load
generator's ``truncated``.

Nothing a server says reaches a record unredacted: every ``RequestError`` and ``EngineError``
message leaves the engine through its ``Redactor`` (``pytest_llmperf.redact``), which knows the
API key and the ``--llmperf-headers`` values, so a gateway that echoes the request's headers
into its error body cannot put the key into a report or a baseline.

A malformed ``--llmperf-url`` (a fragment included: it is never sent) is a one-line
``EngineError`` when the engine is made. Its query (``?key=...``, ``?api-version=...``: a
gateway that authenticates or versions through it) goes with every request, each at its own
path (``request_target``); records show the parameter names, not their values. When the
server's tokenizer cannot be used (no endpoint, or it does not answer within
``--llmperf-request-timeout``), the engine says so in ``warnings``, which every run's result
carries.

Every call has a deadline for its whole answer: a streamed request ``--llmperf-request-timeout``
(``asyncio.timeout`` around the request and its body); the model list, the tokenizer and
``/metrics`` go through ``blocking_http``, whose deadline holds against a server that answers a
byte at a time (the model list: 30 s at most). A server that does not speak HTTP is a one-line
``EngineError`` (the model list) or a ``malformed`` request; a server-sent-event line longer than
``MAX_SSE_LINE`` is the request's ``malformed_sse``. Headers (``--llmperf-headers``, the API
key) that HTTP cannot carry are an ``EngineError`` naming the header before any request
(``auth.check_headers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..redact import Redactor, header_secrets, redact, strip_controls
from . import embeddings, fingerprint
from .auth import check_headers, parse_headers
from .base import (
    Embedded,
    Engine,
    EngineError,
    Generation,
    GenerationParams,
    OnChunk,
    Prompt,
    RequestError,
    Tokenizer,
)
from .blocking_http import FetchError, fetch
from .http_client import Client, HTTPError
from .reasoning import count_reasoning, reasoning_delta, usage_reasoning
from .server_metrics import scrape
from .servers import start_server_from_settings
from .sse import chunk_tokens, spread
from .tokenizers import GgufTokenizer, HFTokenizer, ServerTokenizer, excerpt, local_tokenizer

_loads: Callable[[bytes], Any]
try:  # a faster decoder for the one JSON object per streamed token, where installed
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; json if it is missing
    _loads = json.loads

if TYPE_CHECKING:
    from ..settings import Settings
    from .servers import ManagedServer

# The longest server-sent-event line read (a data line is one chunk: a token or a few, with
# their logprobs); a longer one is the request's malformed_sse error, not unbounded memory.
MAX_SSE_LINE = 16 << 20
MODELS_TIMEOUT_S = 30.0  # GET /v1/models in all, at most (less with --llmperf-request-timeout)


def ssl_context(verify: str | bool | None) -> ssl.SSLContext | bool:
    """True/None: verify with the system CAs; False: no verification; a path: that CA bundle."""
    if verify is None or verify is True:
        return True
    if verify is False:
        return False
    text = str(verify).strip()
    if text.lower() in ("1", "true", "yes", "on", ""):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    path = Path(text).expanduser()
    if not path.is_file():
        raise EngineError(
            f"--llmperf-tls-verify={text!r}: give true, false or the path of a CA bundle file"
        )
    return ssl.create_default_context(cafile=str(path))


def check_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, or a one-line EngineError naming what is wrong
    with it (a scheme other than http/https, no host, a bad port, spaces, a fragment). A
    query (``?key=...``, ``?api-version=...``) is kept: every request carries it."""
    def bad(why: str, shown: str = base_url) -> EngineError:
        return EngineError(
            f"--llmperf-url {redact(shown)!r} {why}: give the server's address as "
            "http://HOST:PORT or https://HOST[:PORT][/PATH][?QUERY]")

    if not isinstance(base_url, str) or not base_url.strip():
        raise bad("is empty")
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise bad("must start with http:// or https://")
    if "#" in url:  # what follows is the fragment's: not shown
        raise bad("has a fragment (#...), which is never sent to a server",
                  url.partition("#")[0] + "#...")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise bad("contains spaces or control characters")
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port  # ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise bad(f"is not a valid URL ({exc})") from None
    if not u.hostname:
        raise bad("has no host")
    if port is not None and not 0 < port < 65536:
        raise bad(f"has port {port}, outside 1..65535")
    return url


def usage_count(value: object, max_tokens: int) -> int:
    """A server's ``usage.completion_tokens``, or RequestError ``bad_usage`` when it is not a
    whole number from 0 to ``2 * max_tokens + 16`` (what no server can have generated)."""
    limit = 2 * max_tokens + 16
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        shown = excerpt(repr(value), 60)
        raise RequestError(
            "bad_usage", f"the server reported usage.completion_tokens={shown}, not a whole "
            f"number from 0 to {limit} (max_tokens={max_tokens}); its token counts cannot be "
            "trusted")
    return value


# What servers answer when prompt + max_tokens exceed their context (lower case).
CONTEXT_REFUSALS = (
    "maximum context length",  # vLLM, OpenAI
    "context_length_exceeded",  # OpenAI's error code
    "min_tokens must be less than or equal to max_tokens",  # vLLM cut max_tokens to fit
    "exceeds the available context size",  # llama.cpp's llama-server
    "exceed context window",  # llama-cpp-python's server
    "`max_new_tokens` must be <=",  # TGI
)


def context_refusal(text: str, prompt_tokens: int, max_tokens: int) -> RequestError | None:
    """A server's error text as a ``context`` RequestError when it says prompt + output do
    not fit the server's context (None when it says something else)."""
    lowered = text.lower()
    if not any(marker.lower() in lowered for marker in CONTEXT_REFUSALS):
        return None
    with contextlib.suppress(ValueError, RecursionError, AttributeError, TypeError):
        body = json.loads(text)  # {"error": {"message": ...}}: the message alone
        message = body.get("error", body) if isinstance(body, dict) else body
        message = message.get("message", message) if isinstance(message, dict) else message
        text = message if isinstance(message, str) else text
    asked = (f"{prompt_tokens} prompt + {max_tokens} output tokens" if prompt_tokens
             else f"the prompt + {max_tokens} output tokens")
    return RequestError(
        "context", f"{asked} do not fit the server's context; start it with a longer one "
        f"(--llmperf-context-len) or ask for fewer tokens (the server said: {excerpt(text)})")


def chat_template_hint(text: str) -> str:
    """What to do when a chat request was refused for the model's missing chat template (a
    server's error text mentioning one); empty for any other refusal."""
    lowered = text.lower()
    if "chat template" not in lowered and "chat_template" not in lowered:
        return ""
    return ("; the model has no chat template: give the server one (vLLM: --chat-template "
            "FILE.jinja; a server the plugin starts: --llmperf-server-args "
            "\"--chat-template FILE.jinja\"), or stream /v1/completions instead "
            "(--llmperf-endpoint completions, Workload(chat=False))")


def _local_listener_pids(url: str) -> list[int]:
    """Processes (and their children) listening on a localhost URL's port; [] when unknown."""
    u = urllib.parse.urlsplit(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        return []
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        import psutil

        pids = {c.pid for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
        out = set(pids)
        for pid in pids:
            out.update(ch.pid for ch in psutil.Process(pid).children(recursive=True))
    except Exception:  # no permission to see other users' sockets, or a race
        return []
    return sorted(out - {os.getpid()})


class _SSEParser:
    """One streamed answer's server-sent events, parsed as the body arrives (``body`` is
    called synchronously by ``http_client.Stream.pipe`` with each piece and the time its
    segment was received). Collects each token-carrying chunk's arrival time, text and token
    hint, the ``usage`` count, the finish reason and ``[DONE]``; raises RequestError for what a
    server must not send.

    A piece holding one whole ``data:`` event is parsed as it is. Otherwise a line begun is kept
    as its pieces (``pieces``, ``held`` bytes) and joined once, when its newline arrives: the
    cost is linear in the line's length, however many pieces it comes in. A line longer than
    ``MAX_SSE_LINE`` is the request's ``malformed_sse`` error as soon as it gets there."""

    __slots__ = (
        "chat",
        "done",
        "finish",
        "held",
        "hints",
        "max_tokens",
        "pieces",
        "prev_usage",
        "prompt_tokens",
        "reasoning_idx",  # reasoning (engines/reasoning.py): which chunks, their text,
        "reasoning_texts",
        "texts",
        "times",
        "usage_reasoning",  # and the server's count
        "usage_total",
    )

    def __init__(self, chat: bool, max_tokens: int, prompt_tokens: int) -> None:
        self.chat, self.max_tokens, self.prompt_tokens = chat, max_tokens, prompt_tokens
        self.times: list[int] = []
        self.texts: list[str] = []
        self.hints: list[int | None] = []
        self.usage_total: int | None = None
        self.prev_usage = 0
        self.finish: str | None = None
        self.done = False
        self.pieces: list[bytes] = []  # the line begun and not yet ended, as received
        self.held = 0  # its length
        self.reasoning_idx: list[int] = []  # the chunks that carried reasoning and no answer
        self.reasoning_texts: list[str] = []  # every chunk's reasoning text (when it had some)
        self.usage_reasoning: int | None = None  # completion_tokens_details.reasoning_tokens

    def body(self, t: int, data: bytes) -> None:
        if not self.held and data[:5] == b"data:" and data.find(b"\n") == len(data) - 2 \
                and data[-1:] == b"\n":  # the common piece: one whole event, "data: ...\n\n"
            self._event(t, data[5:-2].strip())
            return
        end = data.find(b"\n")
        if end < 0:  # the line goes on: kept as a piece, joined once when it ends (linear)
            self._hold(data)
            return
        if self.held:
            if self.held + end > MAX_SSE_LINE:
                self._too_long()
            self.pieces.append(data)
            data = b"".join(self.pieces)
            self.pieces, self.held = [], 0
        *lines, rest = data.split(b"\n")
        for line in lines:
            if line[:5] == b"data:":
                self._event(t, line[5:].strip())
            # else: comments (": ping"), event names, blank separators
        if rest:
            self._hold(rest)

    def _hold(self, piece: bytes) -> None:
        if self.held + len(piece) > MAX_SSE_LINE:
            self._too_long()
        self.held += len(piece)
        self.pieces.append(piece)

    def _too_long(self) -> None:
        raise RequestError(
            "malformed_sse", f"the server sent an SSE line longer than "
            f"{MAX_SSE_LINE / (1 << 20):g} MiB ({len(self.times)} chunk(s) before it)")

    def _event(self, t: int, raw: bytes) -> None:
        if raw == b"[DONE]":
            self.done = True
            return
        try:
            obj = _loads(raw)
        except ValueError:
            bad = excerpt(raw.decode("utf-8", "replace"), 120)
            raise RequestError("malformed_sse", f"a data line is not JSON: {bad}") from None
        if type(obj) is not dict:
            raise RequestError("malformed_sse", f"a data line is not an object: {raw[:120]!r}")
        if "error" in obj:
            err = obj["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            refusal = context_refusal(json.dumps(err), self.prompt_tokens, self.max_tokens)
            if refusal is not None:
                raise refusal
            raise RequestError(
                "stream_error", f"the server sent an error mid-stream: {excerpt(str(msg))}")
        carries, text, hint = chunk_tokens(obj, self.chat)
        usage = obj.get("usage")
        if usage and type(usage) is dict and usage.get("completion_tokens") is not None:
            value = usage["completion_tokens"]
            if type(value) is float:  # orjson reads an integer beyond 64 bits as a float
                with contextlib.suppress(Exception):
                    value = json.loads(raw)["usage"]["completion_tokens"]
            total = usage_count(value, self.max_tokens)
            if carries and hint is None:
                hint = total - self.prev_usage  # continuous usage stats
                if hint < 0:
                    raise RequestError(
                        "bad_usage", "the server's running usage count "
                        f"went down from {self.prev_usage} to {total}")
            self.prev_usage = total
            self.usage_total = total
            thought_tokens = usage_reasoning(usage, total)
            if thought_tokens is not None:
                self.usage_reasoning = thought_tokens
        if carries:
            # Reasoning and answer phases (engines/reasoning.py); the byte test keeps the
            # cost off plain answers' chunks.
            if self.chat and b"reasoning" in raw:
                thought, thinking = reasoning_delta(obj)
                if thought:
                    self.reasoning_texts.append(thought)
                if thinking:
                    self.reasoning_idx.append(len(self.times))
            self.times.append(t)
            self.texts.append(text)
            self.hints.append(hint)
        choices = obj.get("choices")
        if choices and type(choices) is list:
            reason = choices[0].get("finish_reason") if type(choices[0]) is dict else None
            if reason:
                self.finish = reason


# --------------------------------------------------------------------------- the engine


class OpenAIEngine(Engine):
    kind = "openai"
    max_concurrency = None

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        chat: bool = False,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 600.0,
        tls_verify: str | bool | None = True,
        tokenizer: Tokenizer | str | None = "auto",
        server: ManagedServer | None = None,
        owns_server: bool = False,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        # The URL split once: the server's root (scheme, host, port, path without a trailing
        # /v1) and its query, which every request carries (request_target).
        parts = urllib.parse.urlsplit(check_url(base_url))
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[:-3]
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = path  # the server's root path: "" or "/PREFIX"
        self._query = parts.query
        self.root = self._origin + path  # no query: for messages and the listener's port
        self.base_url = self.root + "/v1"
        # The whole URL (an empty path written as "/" before a query): what info() shows,
        # through the redactor, and what a load worker's engine is made from.
        self.url = (self.root + ("" if path else "/") + "?" + parts.query if parts.query
                    else self.root)
        self.chat_default = chat
        self.timeout_s = timeout_s
        self._ssl = ssl_context(tls_verify)
        self._tls_verify = tls_verify
        self._headers: dict[str, str] = {"Content-Type": "application/json",
                                         **check_headers(headers or {}, "headers")}
        if api_key and not any(k.lower() == "authorization" for k in self._headers):
            self._headers.update(check_headers({"Authorization": f"Bearer {api_key}"},
                                               "the API key (--llmperf-api-key-env)"))
        # Every message from this engine passes through it (see the module docstring).
        # The query's values too: the server may echo the request line into an error.
        self.redactor = Redactor([api_key, *header_secrets(self._headers),
                                  *(v for _, v in urllib.parse.parse_qsl(self._query))])
        self.warnings: list[str] = []  # about the engine itself; every run's result has them
        self.server = server
        self.owns_server = owns_server
        self.extra_body = dict(extra_body or {})
        self._client: Client | None = None
        self._metrics_ok: bool | None = None  # None: /metrics not tried yet
        if timeout_s <= 0:
            raise EngineError(f"--llmperf-request-timeout={timeout_s:g} must be positive")
        try:
            self.model = model or self._discover_model()
            self._tokenizer = self._make_tokenizer(tokenizer)
        except EngineError as exc:
            raise type(exc)(self.redactor(str(exc))) from None

    # -- setup ------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, server: ManagedServer | None = None
                      ) -> OpenAIEngine:
        url = settings.url
        owns_server = False
        if url is None and server is None and (settings.server or settings.server_cmd):
            server = start_server_from_settings(settings)
            owns_server = True
        if server is not None:
            url = server.url
        if url is None:
            raise EngineError(
                "the openai engine needs a server: give --llmperf-url URL of a running "
                "OpenAI-compatible server, or --llmperf-server RECIPE to start one"
            )
        if server is None:  # a server someone else started: its settings are its own
            given = [flag for flag, value in (("--llmperf-engine-arg", settings.engine_arg),
                                              ("--llmperf-context-len", settings.context_len))
                     if value]
            if given:
                raise EngineError(
                    f"{' and '.join(given)} cannot change the server at {redact(url)}, which "
                    "pytest-llmperf did not start: give them to that server's own command "
                    "line, or let pytest-llmperf start it (--llmperf-server RECIPE)")
        api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        tokenizer: Tokenizer | str | None = settings.tokenizer or "auto"
        if tokenizer == "auto" and server is not None and server.tokenizer_path:
            tokenizer = server.tokenizer_path
        try:
            return cls(
                url,
                model=settings.server_model or (server.served_model if server else None),
                chat=settings.endpoint == "chat",
                api_key=api_key,
                headers=parse_headers(settings.headers),
                timeout_s=float(settings.request_timeout or 600.0),
                tls_verify=settings.tls_verify,
                tokenizer=tokenizer,
                server=server,
                owns_server=owns_server,
            )
        except BaseException:
            if server is not None and owns_server:
                server.stop()
            raise

    def request_target(self, path: str) -> str:
        """What a request for ``path`` (``/v1/models``, ``/metrics``) asks the server for: the
        server's root path in front (``https://gw/llm`` -> ``/llm/v1/models``), the
        ``--llmperf-url`` query after (``?key=...``). Every request of the engine, its
        server tokenizer and its metrics scrape is made with it."""
        target = self._path + path
        return f"{target}?{self._query}" if self._query else target

    def _sync_get(self, path: str) -> tuple[int, Any]:
        """GET ``path`` within ``--llmperf-request-timeout`` (30 s at most) in all: (status,
        the JSON body) on 200, (status, an excerpt of the body) otherwise; EngineError in one
        line when there is no usable answer."""
        limit = min(self.timeout_s, MODELS_TIMEOUT_S)
        try:
            reply = fetch(self._origin + self.request_target(path), headers=self._headers,
                          ssl_ctx=self._ssl, timeout_s=limit)
        except FetchError as exc:
            if exc.kind == "connection":
                raise EngineError(f"cannot reach the server at {self.root} ({exc}); is it "
                                  "running? Check --llmperf-url") from None
            if exc.kind == "timeout":
                raise EngineError(f"{exc} (--llmperf-request-timeout, at most "
                                  f"{MODELS_TIMEOUT_S:g} s for the model list)") from None
            if exc.kind == "tls":
                raise EngineError(str(exc)) from None
            raise EngineError(f"{exc}; is --llmperf-url an OpenAI-compatible server?") from None
        if reply.status != 200:
            return reply.status, excerpt(reply.text())
        try:
            return reply.status, json.loads(reply.body or b"null")
        except (ValueError, RecursionError):
            raise EngineError(
                f"the server at {self.root} answered GET {path} with a body that is not JSON "
                f"({excerpt(reply.text(), 80)}); is --llmperf-url an OpenAI-compatible "
                "server?") from None

    def _discover_model(self) -> str | None:
        status, data = self._sync_get("/v1/models")
        if status == 401:
            raise EngineError(
                f"the server at {self.root} refused the API key (HTTP 401): set the environment "
                "variable named by --llmperf-api-key-env (default OPENAI_API_KEY)"
            )
        if status != 200:
            return None
        try:
            return str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            return None

    def _make_tokenizer(self, spec: Tokenizer | str | None) -> Tokenizer | None:
        if spec is None or spec == "none":
            return None
        if not isinstance(spec, str):
            return spec
        if spec not in ("auto", "server"):
            return local_tokenizer(spec)
        tok = ServerTokenizer(self.root, self.model, {k: v for k, v in self._headers.items()
                                                      if k != "Content-Type"}, self._ssl,
                              timeout_s=self.timeout_s, target=self.request_target)
        if tok.probe():
            return tok
        tok.close()
        if spec == "server":
            raise EngineError(
                f"the server at {self.root} cannot tokenize ({tok.failure}); give "
                "--llmperf-tokenizer with a .gguf file or a Hugging Face tokenizer (directory "
                "or tokenizer.json), or use a prompts_file"
            )
        self.warnings.append(
            f"no tokenizer: the server at {self.root} cannot tokenize ({tok.failure}); prompts "
            "are not built to exact token lengths and input token counts are unknown; give "
            "--llmperf-tokenizer with a .gguf file or a Hugging Face tokenizer (directory or "
            "tokenizer.json)")
        return None

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self._tokenizer

    def info(self) -> dict[str, Any]:
        tok = self._tokenizer
        return {
            "kind": self.kind,
            "url": self.redactor(self.url),
            "model": strip_controls(self.model) if self.model else self.model,
            "endpoint": "chat" if self.chat_default else "completions",
            "tokenizer": (
                "none" if tok is None else
                f"server:{tok.flavour[0]}" if isinstance(tok, ServerTokenizer) and tok.flavour
                else f"gguf:{tok.path.name}" if isinstance(tok, GgufTokenizer)
                else tok.label if isinstance(tok, HFTokenizer)
                else type(tok).__name__
            ),
            "server": self.server.info() if self.server is not None else None,
            # Issue 25: a local tokenizer's hashes, for the attribution (not the profile).
            **fingerprint.of(tok),
        }

    def metrics_snapshot(self, names: Collection[str] | None = None) -> dict[str, float] | None:
        """The server's Prometheus ``/metrics`` (vLLM; llama-server with ``--metrics``), read by
        ``server_metrics.scrape``; None when it has none. A server whose first scrape fails is
        not scraped again (no cost per run for a server without metrics)."""
        if self._metrics_ok is False:
            return None
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        snap = scrape(self.root, headers, self._ssl, timeout_s=min(self.timeout_s, 5.0),
                      names=names, target=self.request_target)
        if self._metrics_ok is None:  # none of the metrics read here: as good as none
            self._metrics_ok = bool(snap)
            if not snap:
                return None
        return snap

    def memory_pids(self) -> Sequence[int]:
        """The server's processes: the one we started, or whoever listens on a local URL."""
        if self.server is not None:
            return self.server.pids()
        return _local_listener_pids(self.root)

    def worker_spec(self) -> tuple[str, str, dict[str, Any]]:
        """How a load-worker process makes an engine like this one (``run/loadgen.py``): the
        same server, model, endpoint, headers, timeout and TLS settings; the tokenizer when
        it can be sent to another process (a local one counts answers client-side), else
        none (prompts are already built); never the server it may have started."""
        import pickle

        tok: Tokenizer | None = self._tokenizer
        if not getattr(tok, "local", False):
            tok = None
        else:
            try:
                pickle.dumps(tok)
            except Exception:
                tok = None
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        tls = self._tls_verify if isinstance(self._tls_verify, str | bool | None) else True
        return (type(self).__module__, type(self).__name__, {
            "base_url": self.url, "model": self.model, "chat": self.chat_default,
            "headers": headers, "timeout_s": self.timeout_s, "tls_verify": tls,
            "tokenizer": tok, "extra_body": self.extra_body})

    # -- the HTTP client: one connection pool per run (each run has its own event loop) -----

    @contextlib.asynccontextmanager
    async def run_context(self) -> AsyncIterator[None]:
        """Open the connection pool for one run and close it after."""
        self._client = Client(self.root, self._ssl)
        try:
            yield
        finally:
            client, self._client = self._client, None
            await client.aclose()

    def request_problem(self, params: Mapping[str, Any], models: Sequence[str]) -> str | None:
        """A server takes any request field and any model name it serves (what it refuses
        is a failed request, counted)."""
        return None

    def body(self, prompt: Prompt, params: GenerationParams, chat: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.temperature > 0:
            body["seed"] = params.seed
        if chat:
            body["messages"] = ([{"role": r, "content": c} for r, c in prompt.messages]
                                if prompt.messages else [{"role": "user", "content": prompt.text}])
        else:
            body["prompt"] = prompt.text
        if params.ignore_eos:
            # vLLM, TensorRT-LLM and llama-server honour ignore_eos. llama-cpp-python's server
            # ignores it: there a local GGUF tokenizer names every end-of-generation token for
            # a logit bias, else min_tokens suppresses the main EOS. Never both: llama-cpp-python
            # 0.3.x drops both processors when given both (LogitsProcessorList.extend -> None).
            body["ignore_eos"] = True
            eog = getattr(self._tokenizer, "eog_ids", None)
            if eog:
                body["logit_bias"] = {str(t): -100 for t in eog}
            else:
                body["min_tokens"] = params.max_tokens
        # Per-request parameters and model mixes: the workload's fields after the engine's
        # own (the workload refuses the ones it sets itself), the engine's extra_body last.
        if params.model is not None:
            body["model"] = params.model
        body.update(params.params)
        body.update(self.extra_body)
        return body

    async def generate(
        self, prompt: Prompt, params: GenerationParams, on_chunk: OnChunk
    ) -> Generation:
        """One streamed request; every failure a RequestError whose message is redacted."""
        try:
            return await self._generate(prompt, params, on_chunk)
        except RequestError as exc:
            raise RequestError(exc.kind, self.redactor(str(exc))) from None
        except Exception as exc:  # what the server sent broke something: record it, redacted
            raise RequestError(
                "exception", self.redactor(f"{type(exc).__name__}: {exc}")) from None

    async def _generate(
        self, prompt: Prompt, params: GenerationParams, on_chunk: OnChunk
    ) -> Generation:
        client = self._client
        if client is None:  # called outside run_context (a direct call): a pool of its own
            async with self.run_context():
                return await self._generate(prompt, params, on_chunk)
        chat = params.chat or self.chat_default
        path = self.request_target("/v1/chat/completions" if chat else "/v1/completions")
        payload = json.dumps(self.body(prompt, params, chat)).encode()
        parser = _SSEParser(chat, params.max_tokens, prompt.input_tokens)
        try:
            async with asyncio.timeout(self.timeout_s):
                resp, stream, conn = await client.request("POST", path, self._headers, payload)
                on_chunk(resp.sent_ns, 0)  # 0 tokens: the moment the request's bytes left
                try:
                    if resp.status != 200:
                        text = (await stream.read_all(1 << 16)).decode("utf-8", "replace")
                        refusal = context_refusal(text, prompt.input_tokens,
                                                  params.max_tokens)
                        if refusal is not None and 400 <= resp.status < 500:
                            raise refusal
                        hint = chat_template_hint(text) if chat else ""
                        raise RequestError(
                            f"http_{resp.status}",
                            f"HTTP {resp.status} {resp.reason}: {excerpt(text)}{hint}")
                    # Parsed as the segments arrive, each stamped on receipt (http_client).
                    await stream.pipe(parser)
                finally:
                    client.release(conn, stream)
        except TimeoutError:
            raise RequestError(
                "timeout", f"no complete answer within {self.timeout_s:g} s "
                f"({len(parser.times)} chunks received); raise --llmperf-request-timeout"
            ) from None
        except HTTPError as exc:
            raise RequestError(exc.kind, f"{exc} (after {len(parser.times)} chunk(s))") from None
        times, texts, hints = parser.times, parser.texts, parser.hints
        usage_total, finish = parser.usage_total, parser.finish
        if not parser.done:
            raise RequestError(
                "incomplete", f"the stream ended without [DONE] after {len(times)} chunk(s) "
                "(the server may have failed mid-request; see its log)")
        full = "".join(texts)
        client_count: int | None = None
        tok = self._tokenizer
        if usage_total is not None:
            n, source = usage_total, "usage"
            if tok is not None and getattr(tok, "local", False):
                client_count = len(tok.tokenize(full, add_special=False))
        elif finish == "length":
            n, source = params.max_tokens, "max_tokens"
            if tok is not None and getattr(tok, "local", False):
                # A stop for length well short of max_tokens (a full context) shows in the
                # text; a token or two off is re-tokenization, not a short answer.
                counted = len(tok.tokenize(full, add_special=False))
                if counted < params.max_tokens - max(2, params.max_tokens // 10):
                    n, source = counted, "tokenizer"
        elif tok is not None and getattr(tok, "local", False):
            n, source = len(tok.tokenize(full, add_special=False)), "tokenizer"
        else:
            n, source = len(times), "chunks"
        counts = spread(n, texts, hints)
        for t, k in zip(times, counts, strict=True):
            on_chunk(t, k)
        local = tok if tok is not None and getattr(tok, "local", False) else None
        thought = count_reasoning(
            parser.reasoning_idx, parser.reasoning_texts, counts, parser.usage_reasoning,
            None if local is None else lambda text: len(local.tokenize(text, add_special=False)))
        if thought is None:
            return Generation(output_tokens=n, source=source, client_token_count=client_count,
                              text=full)
        # The answer's text alone: what a conversation's history and accuracy scoring take.
        thinking = set(parser.reasoning_idx)
        answer = "".join(x for i, x in enumerate(texts) if i not in thinking)
        return Generation(output_tokens=n, source=source, client_token_count=client_count,
                          text=answer, reasoning_chunks=thought.chunks,
                          reasoning_tokens=thought.tokens,
                          reasoning_tokens_source=thought.source)


    # -- embeddings (issue 24, item 6): POST /v1/embeddings, engines/embeddings.py ---------

    @property
    def has_embeddings(self) -> bool:
        """A server's ``/v1/embeddings``: one without it (or with a generative model) answers
        each request with an HTTP error, recorded and counted."""
        return True

    async def embed(self, prompt: Prompt) -> Embedded:
        """One embedding request; every failure a RequestError whose message is redacted."""
        try:
            return await self._embed(prompt)
        except RequestError as exc:
            raise RequestError(exc.kind, self.redactor(str(exc))) from None
        except Exception as exc:
            raise RequestError(
                "exception", self.redactor(f"{type(exc).__name__}: {exc}")) from None

    async def _embed(self, prompt: Prompt) -> Embedded:
        client = self._client
        if client is None:  # called outside run_context (a direct call): a pool of its own
            async with self.run_context():
                return await self._embed(prompt)
        payload = json.dumps(embeddings.request_body(self.model, prompt,
                                                     self.extra_body)).encode()
        body, done_ns = bytearray(), None
        try:
            async with asyncio.timeout(self.timeout_s):
                resp, stream, conn = await client.request(
                    "POST", self.request_target(embeddings.PATH), self._headers, payload)
                try:
                    async for t, data in stream:
                        done_ns = t
                        if len(body) < embeddings.MAX_ANSWER_BYTES:
                            body += data
                finally:
                    client.release(conn, stream)
        except TimeoutError:
            raise RequestError("timeout", f"no embeddings answer within {self.timeout_s:g} s; "
                               "raise --llmperf-request-timeout") from None
        except HTTPError as exc:
            raise RequestError(exc.kind, str(exc)) from None
        if resp.status != 200:
            text = bytes(body[:1 << 16]).decode("utf-8", "replace")
            raise RequestError(f"http_{resp.status}",
                               f"HTTP {resp.status} {resp.reason}: {excerpt(text)}")
        return embeddings.parse_answer(bytes(body), prompt, done_ns=done_ns,
                                       sent_ns=resp.sent_ns)

    def close(self) -> None:
        tok = self._tokenizer
        if isinstance(tok, ServerTokenizer):
            tok.close()
        if self.server is not None and self.owns_server:
            self.server.stop()


def from_settings(settings: Settings) -> OpenAIEngine:
    """The registry's factory."""
    return OpenAIEngine.from_settings(settings)
