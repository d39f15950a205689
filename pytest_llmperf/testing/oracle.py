"""The test oracle: an OpenAI-compatible streaming server with a known schedule.

It answers ``/v1/completions`` and ``/v1/chat/completions`` (SSE) (and ``/v1/embeddings``
after ``embed_ms``, one JSON answer), sends the first token
``ttft_ms`` after it has read a request and then one chunk every ``itl_ms`` (each chunk may carry
``tokens_per_chunk`` tokens), reports ``usage`` when asked for it, and records for every request
when it arrived and how late each of its own sends went out, so a client's measurement can be
compared with what the server really did (both sides use the same monotonic clock,
``time.perf_counter_ns``, which on Linux is system-wide); ``seen_targets`` keeps every
request's target as received (path and query).

It also has a word-level tokenizer (``/tokenize``, ``/detokenize`` in vLLM's shape) so synthetic
prompts of exact token lengths can be built against it, and fault modes (HTTP error, dropped
connection, malformed SSE, stall, answers cut short, vLLM's context refusals) for the error
paths, and hostile modes a gateway or a broken server shows (error bodies that echo the
request's headers or carry terminal escapes, an error event mid-stream, absurd ``usage``
counts, a tokenize endpoint that never answers, answers a byte at a time
(``drip_paths``), a port that does not speak HTTP (``not_http``), a huge response header, a
huge streamed event). With ``metrics=True`` it serves
vLLM's Prometheus metrics on ``/metrics`` (prefix cache, KV-cache usage, preemptions,
speculative decoding), moving by known amounts per request (``_OracleMetrics``). With
``reasoning_tokens=N`` its chat answers stream their first N tokens as reasoning deltas
(``reasoning_field``), so TTFA - TTFT is exactly N * ``itl_ms``. With ``ttft_tail`` each
TTFT is heavy-tailed, the schedule's times a seeded draw of median 1 (``heavy_tail``). Raw
asyncio, HTTP/1.1 keep-alive with chunked transfer encoding: nothing heavy between the
schedule and the socket.

Use it in-process (``with OracleServer(OracleConfig(...)) as oracle: oracle.url``) or as a
process: ``python -m pytest_llmperf.testing.oracle --ttft-ms 50 --itl-ms 10`` prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, SupportsIndex

from . import heavy_tail

WORDS: tuple[str, ...] = tuple(
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu red orange "
    "yellow green blue indigo violet black white grey brown pink gold silver iron copper tin "
    "lead zinc stone river lake sea ocean hill mountain valley forest desert field garden house "
    "door window table chair paper music light water fire earth wind cloud rain snow".split()
)
# What vLLM answers a chat request for a model without a chat template (entrypoints/chat_utils).
NO_CHAT_TEMPLATE = ("As of transformers v4.44, default chat template is no longer allowed, so you "
                    "must provide a chat template if the tokenizer does not define one.")
BOS_ID = 1
UNK_ID = 0
_OFFSET = 2  # ids 0 and 1 are <unk> and <s>


def cached_prefix(ids: Sequence[int], seen: Iterable[Sequence[int]]) -> int:
    """How many leading tokens of ``ids`` a cache holding ``seen`` can reuse: the longest
    prefix shared with one of them, leaving at least one token to evaluate."""
    best = 0
    for other in seen:
        n = 0
        for a, b in zip(ids, other, strict=False):
            if a != b:
                break
            n += 1
        best = max(best, n)
    return max(0, min(best, len(ids) - 1))


class WordTokenizer:
    """The oracle's tokenizer: one token per known word, <s> in front when asked."""

    local = True  # runs in the client process (cheap enough to count every answer)

    def __init__(self) -> None:
        self._ids = {w: i + _OFFSET for i, w in enumerate(WORDS)}

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        ids = [self._ids.get(w, UNK_ID) for w in text.split()]
        return [BOS_ID, *ids] if add_special else ids

    def detokenize(self, ids: Sequence[int]) -> str:
        words = [WORDS[i - _OFFSET] for i in ids if i >= _OFFSET and i - _OFFSET < len(WORDS)]
        return " ".join(words)

    def word_token_ids(self) -> Sequence[int]:
        return list(range(_OFFSET, _OFFSET + len(WORDS)))


@dataclass(frozen=True)
class OracleConfig:
    ttft_ms: float = 50.0  # first token this long after the request was read
    itl_ms: float = 10.0  # then one chunk every itl_ms
    tokens_per_chunk: int = 1  # tokens carried by each chunk (the last may carry fewer)
    usage: bool = True  # send a usage chunk when stream_options.include_usage asks for it
    usage_offset: int = 0  # report completion_tokens = true count + this (to test disagreement)
    role_chunk: bool = True  # chat: a role-only first chunk, sent at once (not a token)
    finish_reason: str = "length"  # what the closing chunk says
    default_max_tokens: int = 16
    max_model_len: int = 4096  # prompt + max_tokens beyond this: HTTP 400, as vLLM does
    # As vLLM's server: prompt + max_tokens beyond max_model_len cuts max_tokens to fit, and
    # a min_tokens above the cut is HTTP 400 "min_tokens must be less than or equal to ...".
    clamp_max_tokens: bool = False
    truncate_at: int | None = None  # every answer stops after this many tokens ("length")
    fail_status: int | None = None  # answer every generation with this status and a JSON body
    drop_after: int | None = None  # close the connection after this many tokens
    malformed_after: int | None = None  # send a data line that is not JSON after this many
    stall_after: int | None = None  # stop sending (keep the connection) after this many
    # A server that dies: once this many generations were taken, every later generation
    # request's connection is cut without an answer.
    die_after: int | None = None
    api_key: str | None = None  # require "Authorization: Bearer <api_key>"
    # Hostile modes.
    echo_headers: bool = False  # error bodies (fail_status, error_after) carry the headers
    # Error text sent as is (terminal escapes, control characters): with fail_status the
    # whole body (text/plain, as a broken proxy answers), with error_after the event's message.
    error_text: str | None = None
    error_after: int | None = None  # send an {"error": ...} event after this many tokens
    usage_tokens: int | None = None  # report this completion_tokens, whatever was sent
    stall_tokenize: bool = False  # /tokenize and /detokenize never answer
    # A server that answers a byte at a time: requests for these paths get their head at once,
    # then a body (Content-Length 1 MB) of one byte every ``drip_ms``.
    drip_paths: tuple[str, ...] = ()
    drip_ms: float = 100.0
    not_http: bool = False  # every request is answered with an SSH banner, then closed
    huge_header_bytes: int = 0  # > 0: every answer's head carries a header this long
    # > 0: every streamed answer's first token event is a data line this long (its text
    # padded with spaces), written 64 KiB at a time.
    huge_event_bytes: int = 0
    model: str = "oracle"
    # False: the model has no chat template, and chat requests get vLLM's HTTP 400 for it.
    chat_template: bool = True
    # Server metrics (``_OracleMetrics``): /metrics in vLLM's exposition format.
    metrics: bool = False
    kv_capacity_tokens: int = 8192  # KV-cache usage = tokens of requests in flight / this
    preemptions_per_request: int = 0  # vllm:num_preemptions added by every request
    spec_tokens: int = 0  # > 0: speculative decoding, one draft of this many per output token
    spec_accepted: int = 0  # of which this many are accepted
    metrics_delay_ms: float = 0.0  # each /metrics answer this late (vLLM's full one: tens of ms)
    # A queueing capacity: at most this many generations are served at once, the others wait
    # in arrival order (FIFO) and their schedule starts when a slot frees. With every answer
    # taking S = ttft_ms + itl_ms * (chunks - 1), the true capacity is slots / S requests/s.
    slots: int | None = None
    # Prefill: the first token comes ``prefill_ms_per_token`` later per prompt token not in
    # the cache; with ``prefix_cache`` the cache holds every earlier prompt and its answer
    # (the longest common prefix with any of them is reused), else nothing.
    prefill_ms_per_token: float = 0.0
    prefix_cache: bool = False
    # Answers that come in one read (as a client that lags behind its socket sees them): the
    # n-th streamed answer (from 0) sends its first token ``ttft_ms`` in and at once the rest,
    # all in one write, when ``one_read[n % len(one_read)]`` is "1" (e.g. "1100": two of
    # every four answers). The answer's E2E is then its TTFT: TPOT is undefined.
    one_read: str = ""
    # Reasoning and answer phases (issue 24): in chat answers, the first ``reasoning_tokens``
    # tokens are thinking, sent as ``reasoning_field`` deltas ("reasoning_content": DeepSeek's
    # and SGLang's shape, with "content": null; "reasoning": vLLM's, alone), a chunk never
    # mixing the two (a chunk of ``tokens_per_chunk`` is cut at the boundary); with
    # ``reasoning_usage`` the usage chunk says how many in
    # ``completion_tokens_details.reasoning_tokens`` (False: left out, as a server that does
    # not count them).
    reasoning_tokens: int = 0
    reasoning_field: str = "reasoning_content"
    reasoning_usage: bool = True
    # Embeddings (issue 24, item 6): ``/v1/embeddings`` answers (one JSON body, not streamed)
    # ``embed_ms`` + ``embed_ms_per_token`` per prompt token after it read the request (or a
    # slot took it), with a vector of ``embed_dims`` numbers and usage.prompt_tokens.
    embed_ms: float = 5.0
    embed_ms_per_token: float = 0.0
    embed_dims: int = 8
    # Outputs (issue 25): every answer's text changes from this token on (0-based: each
    # token from it is the next word instead), as a build that broke its outputs would.
    diverge_at: int | None = None
    # Model mixes: a request whose body names one of these models gets its TTFT (ms)
    # instead of ``ttft_ms``: ((model, ttft_ms), ...), so per-model figures have a known
    # schedule.
    model_ttft_ms: tuple[tuple[str, float], ...] = ()
    # Heavy-tailed TTFT (issue 25, tails on the oracle): each generation's TTFT (``ttft_ms``
    # or its model's) times a seeded draw of median 1 for its index (the n-th generation the
    # server took, from 0): "lognormal:SIGMA" or "pareto:ALPHA" (``heavy_tail``); the same
    # seed and index give the same factor. None: every TTFT is the schedule's.
    ttft_tail: str | None = None
    ttft_tail_seed: int = 0


@dataclass
class RequestLog:
    """What the oracle did for one request (perf_counter_ns clock)."""

    prompt: str
    recv_ns: int
    headers: dict[str, str]
    body: dict[str, Any]
    scheduled_ns: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    served_ns: int | None = None  # with ``slots``: when a slot took it (its schedule's start)
    uncached_tokens: int = 0  # prompt tokens not in the prefix cache (0: nothing modelled)
    prefill_ns: int = 0  # added to its TTFT: prefill_ms_per_token * uncached_tokens
    ttft_factor: float = 1.0  # ttft_tail: its TTFT was the schedule's times this


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _OracleMetrics:
    """vLLM's Prometheus metrics for the oracle's requests, in a registry of its own and
    written by prometheus_client, as vLLM's are. Every series is labelled with the model and
    an engine index, request ``i`` going to engine ``i % 2`` (as data-parallel vLLM labels
    them), so readers must sum counters over label sets. Per request, when it arrives:

    - ``vllm:prefix_cache_queries`` += its prompt tokens (the oracle's word tokens, BOS
      included); ``vllm:prefix_cache_hits`` += its longest common prefix with any earlier
      prompt, capped at prompt - 1 and rounded down to whole blocks of ``BLOCK`` tokens;
    - ``vllm:num_preemptions`` += ``preemptions_per_request``;
    - with ``spec_tokens`` > 0, per output token asked: ``vllm:spec_decode_num_drafts`` += 1,
      ``..._num_draft_tokens`` += ``spec_tokens``, ``..._num_accepted_tokens`` +=
      ``spec_accepted`` (absent otherwise, as on a vLLM without speculation).

    ``vllm:kv_cache_usage_perc`` (per engine) is the tokens of its requests in flight (prompt +
    sent so far) / ``kv_capacity_tokens``; 0 when idle. A TTFT histogram is there too, as
    noise a reader must skip.
    """

    BLOCK = 16

    def __init__(self, config: OracleConfig) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.config = config
        self.registry = CollectorRegistry()
        labels = ("model_name", "engine")
        r = self.registry

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, labels, registry=r)

        self.queries = counter("vllm:prefix_cache_queries",
                               "Prefix cache queries, in terms of number of queried tokens.")
        self.hits = counter("vllm:prefix_cache_hits",
                            "Prefix cache hits, in terms of number of cached tokens.")
        self.preemptions = counter("vllm:num_preemptions",
                                   "Cumulative number of preemption from the engine.")
        self.spec: tuple[Any, Any, Any] | None = None
        if config.spec_tokens > 0:
            self.spec = (counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts."),
                         counter("vllm:spec_decode_num_draft_tokens", "Number of draft tokens."),
                         counter("vllm:spec_decode_num_accepted_tokens",
                                 "Number of accepted tokens."))
        self.kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                        labels, registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds",
                              "Histogram of time to first token in seconds.", labels,
                              registry=r)
        self._prompts: list[list[int]] = []
        self._inflight: dict[str, int] = {"0": 0, "1": 0}  # tokens held per engine
        self._held: dict[int, tuple[str, list[int]]] = {}  # id(log) -> engine, [tokens]
        for engine in self._inflight:  # every series exists from the start, as in vLLM
            for metric in (self.queries, self.hits, self.preemptions, *(self.spec or ())):
                metric.labels(config.model, engine)
            self.kv.labels(config.model, engine).set(0.0)

    def _lcp_blocks(self, ids: list[int]) -> int:
        return cached_prefix(ids, self._prompts) // self.BLOCK * self.BLOCK

    def _set_kv(self, engine: str, k: int) -> None:
        self._inflight[engine] += k
        self.kv.labels(self.config.model, engine).set(
            self._inflight[engine] / self.config.kv_capacity_tokens)

    def start(self, log: RequestLog, ids: list[int], n_out: int) -> None:
        cfg = self.config
        engine = str(len(self._prompts) % 2)
        model = (cfg.model, engine)
        self.queries.labels(*model).inc(len(ids))
        self.hits.labels(*model).inc(self._lcp_blocks(ids))
        self._prompts.append(ids)
        self.preemptions.labels(*model).inc(cfg.preemptions_per_request)
        if self.spec is not None:
            drafts, draft_tokens, accepted = self.spec
            drafts.labels(*model).inc(n_out)
            draft_tokens.labels(*model).inc(n_out * cfg.spec_tokens)
            accepted.labels(*model).inc(n_out * cfg.spec_accepted)
        self._held[id(log)] = (engine, [len(ids)])
        self._set_kv(engine, len(ids))

    def tokens(self, log: RequestLog, k: int) -> None:
        """``k`` more tokens of ``log``'s answer were sent (the first: its TTFT observed)."""
        engine, held = self._held[id(log)]
        if len(held) == 1:
            self.ttft.labels(self.config.model, engine).observe(
                max(0.0, (time.perf_counter_ns() - log.recv_ns) / 1e9))
        held.append(k)
        self._set_kv(engine, k)

    def finish(self, log: RequestLog) -> None:
        """``log``'s request ended (answered, failed or dropped): its tokens are freed."""
        engine, held = self._held.pop(id(log), ("0", []))
        if held:
            self._set_kv(engine, -sum(held))

    def exposition(self, query: str) -> bytes:
        """The text a GET /metrics?<query> answers, filtered by ``name[]`` as
        prometheus_client's exporter (and so vLLM's) does."""
        import urllib.parse

        from prometheus_client import generate_latest

        names = urllib.parse.parse_qs(query).get("name[]")
        registry = self.registry.restricted_registry(names) if names else self.registry
        return generate_latest(registry)


class _Oracle:
    def __init__(self, config: OracleConfig) -> None:
        self.config = config
        self.tokenizer = WordTokenizer()
        self.metrics = _OracleMetrics(config) if config.metrics else None
        self.metrics_requests = 0  # GET /metrics (answered or 404)
        self.logs: list[RequestLog] = []
        self._cached: list[list[int]] = []  # prefix_cache: prompts and answers seen, as ids
        self.tokenize_requests = 0  # requests to /tokenize (answered or not)
        self.seen_targets: list[str] = []  # every request's raw target (path and query)
        self._writers: set[asyncio.StreamWriter] = set()
        self._slots = asyncio.Semaphore(config.slots) if config.slots else None  # FIFO
        self.streamed = 0  # streamed answers begun (``OracleConfig.one_read`` counts them)
        if config.ttft_tail is not None:
            heavy_tail.parse(config.ttft_tail)  # a bad spec fails here, in one line
        self.tail_draws = 0  # generations given a ttft_tail factor (the next one's index)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        # Stamp bytes as they arrive (in the protocol's data_received), not when this coroutine
        # gets round to parsing them: the request's true arrival time, even when busy.
        arrived = [0]
        feed = reader.feed_data
        clock = time.perf_counter_ns

        def stamped_feed(data: Iterable[SupportsIndex]) -> None:
            arrived[0] = clock()
            feed(data)

        reader.feed_data = stamped_feed  # type: ignore[method-assign]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                body = await reader.readexactly(n) if n else b""
                recv_ns = arrived[0] or clock()
                keep = await self.route(method, path, headers, body, recv_ns, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass  # the client went away, or the oracle is shutting down
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def respond(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> bool:
        data = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
            status, "Error")
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, reason.encode(), len(data), self._padding(), data)
        )
        await writer.drain()
        return True

    async def respond_text(self, writer: asyncio.StreamWriter, status: int, text: str) -> bool:
        data = text.encode()
        writer.write(b"HTTP/1.1 %d Error\r\nContent-Type: text/plain\r\nContent-Length: %d"
                     b"\r\n\r\n%s" % (status, len(data), data))
        await writer.drain()
        return True

    def _padding(self) -> bytes:
        """``huge_header_bytes``: a header line that long (else nothing)."""
        n = self.config.huge_header_bytes
        return b"X-Padding: " + b"a" * n + b"\r\n" if n > 0 else b""

    async def hostile(self, writer: asyncio.StreamWriter, path: str) -> bool | None:
        """The answer of a hostile mode to a request for ``path`` (keep the connection?);
        None when no hostile mode applies."""
        cfg = self.config
        if cfg.not_http:
            writer.write(b"SSH-2.0-OpenSSH_9.6 not http\r\n")
            await writer.drain()
            return False
        if path in cfg.drip_paths:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000\r\n\r\n{")
            await writer.drain()
            for _ in range(1000000):
                await asyncio.sleep(cfg.drip_ms / 1000)
                writer.write(b" ")
                await writer.drain()
            return False
        return None

    async def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, recv_ns: int,
        writer: asyncio.StreamWriter,
    ) -> bool:
        cfg = self.config
        self.seen_targets.append(path)
        path, _, query = path.partition("?")
        hostile = await self.hostile(writer, path)
        if hostile is not None:
            return hostile
        if path == "/metrics" and method == "GET":
            self.metrics_requests += 1
            if self.metrics is not None:
                if cfg.metrics_delay_ms:
                    await asyncio.sleep(cfg.metrics_delay_ms / 1000)
                exposed = self.metrics.exposition(query)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                             b"charset=utf-8\r\nContent-Length: %d\r\n%s\r\n%s"
                             % (len(exposed), self._padding(), exposed))
                await writer.drain()
                return True
            return await self.respond(writer, 404, {"detail": "Not Found"})
        if (cfg.api_key is not None and path.startswith("/v1/")
                and headers.get("authorization") != f"Bearer {cfg.api_key}"):
            return await self.respond(writer, 401, {"error": {"message": "invalid api key"}})
        if path in ("/health", "/v1/models") and method == "GET":
            if path == "/health":
                return await self.respond(writer, 200, {"status": "ok"})
            return await self.respond(writer, 200, {"object": "list", "data": [
                {"id": cfg.model, "object": "model", "max_model_len": cfg.max_model_len}]})
        if path == "/oracle/logs" and method == "GET":
            return await self.respond(writer, 200, [
                {**asdict(log), "body": {}, "headers": {}} for log in self.logs])
        if path == "/oracle/reset" and method == "POST":
            self.logs.clear()
            return await self.respond(writer, 200, {"ok": True})
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return await self.respond(writer, 400, {"error": {"message": "body is not JSON"}})
        if path in ("/tokenize", "/detokenize") and cfg.stall_tokenize:
            self.tokenize_requests += int(path == "/tokenize")
            await asyncio.sleep(3600)
            return False
        if path == "/tokenize":
            self.tokenize_requests += 1
            ids = self.tokenizer.tokenize(str(req.get("prompt", "")),
                                          bool(req.get("add_special_tokens", True)))
            return await self.respond(writer, 200, {"tokens": ids, "count": len(ids),
                                                    "max_model_len": cfg.max_model_len})
        if path == "/detokenize":
            return await self.respond(writer, 200,
                                      {"prompt": self.tokenizer.detokenize(req.get("tokens", []))})
        if path not in ("/v1/completions", "/v1/chat/completions", "/v1/embeddings"):
            return await self.respond(writer, 404, {"error": {"message": f"no route {path}"}})
        if cfg.die_after is not None and len(self.logs) >= cfg.die_after:
            writer.transport.abort()
            return False
        if cfg.fail_status is not None and cfg.error_text is not None:
            return await self.respond_text(writer, cfg.fail_status, cfg.error_text)
        if cfg.fail_status is not None:
            error: dict[str, Any] = {"message": "oracle: injected failure"}
            if cfg.echo_headers:  # what a careless gateway answers
                error["message"] += f"; request headers: {headers}"
                error["request_headers"] = headers
            return await self.respond(writer, cfg.fail_status, {"error": error})
        if path == "/v1/embeddings":
            return await self.embed(writer, req, recv_ns, headers)
        chat = path.endswith("chat/completions")
        if chat and not cfg.chat_template:
            return await self.respond(writer, 400, {"error": {
                "message": NO_CHAT_TEMPLATE, "type": "BadRequestError", "param": None,
                "code": 400}})
        prompt = (" ".join(str(m.get("content", "")) for m in req["messages"])
                  if chat and req.get("messages") else str(req.get("prompt", "")))
        n_prompt = len(self.tokenizer.tokenize(prompt))
        n_out = int(req.get("max_tokens") or cfg.default_max_tokens)
        if cfg.clamp_max_tokens and n_prompt < cfg.max_model_len:
            n_out = min(n_out, cfg.max_model_len - n_prompt)
            min_tokens = int(req.get("min_tokens") or 0)
            if min_tokens > n_out:
                return await self.respond(writer, 400, {"error": {
                    "message": f"min_tokens must be less than or equal to max_tokens={n_out}, "
                               f"got {min_tokens}.",
                    "type": "BadRequestError", "param": None, "code": 400}})
        if cfg.truncate_at is not None:
            n_out = min(n_out, cfg.truncate_at)
        if n_prompt + n_out > cfg.max_model_len:
            return await self.respond(writer, 400, {"error": {"message": (
                f"This model's maximum context length is {cfg.max_model_len} tokens. However, "
                f"you requested {n_prompt + n_out} tokens")}})
        log = RequestLog(prompt=prompt, recv_ns=recv_ns, headers=headers, body=req)
        if cfg.ttft_tail is not None:
            log.ttft_factor = heavy_tail.factor(cfg.ttft_tail, cfg.ttft_tail_seed,
                                                self.tail_draws)
            self.tail_draws += 1
        self._prefill(log, n_out)
        self.logs.append(log)
        if self._slots is not None:  # wait for a free slot, first come first served
            await self._slots.acquire()
            log.served_ns = time.perf_counter_ns()
        if self.metrics is not None:
            self.metrics.start(log, self.tokenizer.tokenize(prompt), n_out)
        try:
            if not req.get("stream"):
                await asyncio.sleep(cfg.ttft_ms * log.ttft_factor / 1e3
                                    + cfg.itl_ms / 1e3 * (n_out - 1))
                text = " ".join(self.word(i) for i in range(n_out))
                return await self.respond(writer, 200, {
                    "object": "text_completion", "model": cfg.model,
                    "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out}})
            return await self.stream(writer, req, chat, n_prompt, n_out, log, headers)
        finally:
            if self.metrics is not None:
                self.metrics.finish(log)
            if self._slots is not None:
                self._slots.release()

    async def embed(self, writer: asyncio.StreamWriter, req: dict[str, Any], recv_ns: int,
                    headers: dict[str, str]) -> bool:
        """An embeddings answer (issue 24, item 6): ``input`` a string (counted by the word
        tokenizer, BOS included) or a list of token ids, answered on the known schedule."""
        cfg = self.config
        raw = req.get("input")
        if isinstance(raw, str):
            prompt, n = raw, len(self.tokenizer.tokenize(raw))
        elif (isinstance(raw, list) and raw
              and all(isinstance(x, int) and not isinstance(x, bool) for x in raw)):
            prompt, n = self.tokenizer.detokenize(raw), len(raw)
        else:
            return await self.respond(writer, 400, {"error": {
                "message": "input must be a string or a list of token ids"}})
        if n > cfg.max_model_len:
            return await self.respond(writer, 400, {"error": {"message": (
                f"This model's maximum context length is {cfg.max_model_len} tokens. However, "
                f"you requested {n} tokens in the input for embedding generation")}})
        log = RequestLog(prompt=prompt, recv_ns=recv_ns, headers=headers, body=req)
        self.logs.append(log)
        if self._slots is not None:
            await self._slots.acquire()
            log.served_ns = time.perf_counter_ns()
        try:
            start = log.served_ns if log.served_ns is not None else recv_ns
            due = start + int((cfg.embed_ms + cfg.embed_ms_per_token * n) * 1e6)
            delay = due - time.perf_counter_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            vector = [round(((n + i) % 7) / 7 - 0.5, 4) for i in range(cfg.embed_dims)]
            log.scheduled_ns.append(due)
            log.tokens.append(0)
            keep = await self.respond(writer, 200, {
                "object": "list", "model": cfg.model,
                "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "usage": {"prompt_tokens": n, "total_tokens": n}})
            log.sent_ns.append(time.perf_counter_ns())
            return keep
        finally:
            if self._slots is not None:
                self._slots.release()

    def word(self, t: int) -> str:
        """The answer's token ``t``: the word list in order, shifted by one from
        ``diverge_at`` on."""
        at = self.config.diverge_at
        return WORDS[(t + (1 if at is not None and t >= at else 0)) % len(WORDS)]

    def _prefill(self, log: RequestLog, n_out: int) -> None:
        """The request's uncached prompt tokens and the prefill time they add."""
        if not self.config.prefill_ms_per_token and not self.config.prefix_cache:
            return  # nothing modelled: no tokenizing on the hot path
        ids = self.tokenizer.tokenize(log.prompt)
        reused = 0
        if self.config.prefix_cache:
            reused = cached_prefix(ids, self._cached)
            answer = [_OFFSET + j % len(WORDS) for j in range(n_out)]
            self._cached.append(ids + answer)
        log.uncached_tokens = len(ids) - reused
        log.prefill_ns = int(self.config.prefill_ms_per_token * 1e6 * log.uncached_tokens)

    async def stream(
        self, writer: asyncio.StreamWriter, req: dict[str, Any], chat: bool, n_prompt: int,
        n_out: int, log: RequestLog, headers: dict[str, str] | None = None,
    ) -> bool:
        cfg = self.config
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choice: dict[str, Any], **extra: Any) -> bytes:
            payload = {"id": "oracle", "object": obj, "model": cfg.model, "choices": [choice],
                       **extra}
            return _chunked(b"data: " + json.dumps(payload).encode() + b"\n\n")

        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n%s\r\n"
                     % self._padding())
        if chat and cfg.role_chunk:
            writer.write(event({"index": 0, "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None}))
        await writer.drain()
        loop_sleep = asyncio.sleep
        clock = time.perf_counter_ns
        sent = 0
        chunk_i = 0
        start = log.served_ns if log.served_ns is not None else log.recv_ns
        one_read = bool(cfg.one_read) and cfg.one_read[self.streamed % len(cfg.one_read)] == "1"
        self.streamed += 1
        held = b""  # one_read: the token events, written together after the last
        ttft_ms = (dict(cfg.model_ttft_ms).get(str(req.get("model")), cfg.ttft_ms)
                   * log.ttft_factor)
        while sent < n_out:
            due = (start + log.prefill_ns + int(ttft_ms * 1e6)
                   + (0 if one_read else int(cfg.itl_ms * 1e6 * chunk_i)))
            delay = due - clock()
            if delay > 0:
                await loop_sleep(delay / 1e9)
            k = min(cfg.tokens_per_chunk, n_out - sent)
            thinking = chat and sent < cfg.reasoning_tokens
            if thinking:  # a reasoning chunk ends where the answer begins
                k = min(k, cfg.reasoning_tokens - sent)
            if cfg.drop_after is not None and sent >= cfg.drop_after:
                writer.transport.abort()
                return False
            if cfg.malformed_after is not None and sent >= cfg.malformed_after:
                writer.write(_chunked(b"data: {not json\n\n"))
                await writer.drain()
                cfg = replace(cfg, malformed_after=None)
            if cfg.stall_after is not None and sent >= cfg.stall_after:
                await asyncio.sleep(3600)
            if cfg.error_after is not None and sent >= cfg.error_after:
                message = ("oracle: upstream failed mid-stream" if cfg.error_text is None
                           else cfg.error_text)
                if cfg.echo_headers:
                    message += f"; request headers: {headers}"
                writer.write(_chunked(b"data: " + json.dumps(
                    {"error": {"message": message, "code": 500}}).encode() + b"\n\n"))
                writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                await writer.drain()
                return True
            words = " " + " ".join(self.word(sent + j) for j in range(k))
            choice = ({"index": 0, "delta": {"content": words}, "finish_reason": None} if chat
                      else {"index": 0, "text": words, "finish_reason": None})
            if thinking:
                choice["delta"] = ({"content": None, "reasoning_content": words}
                                   if cfg.reasoning_field == "reasoning_content"
                                   else {cfg.reasoning_field: words})
            if cfg.huge_event_bytes > 0 and sent == 0:  # one long data line, in pieces
                line = event(choice)[:-2].split(b"\r\n", 1)[1]  # the event, unchunked
                pad = b" " * max(0, cfg.huge_event_bytes - len(line) + 2)
                text = json.dumps(words + pad.decode()).encode()
                line = line.replace(json.dumps(words).encode(), text, 1)
                for i in range(0, len(line), 1 << 16):
                    writer.write(_chunked(line[i:i + (1 << 16)]))
                    await writer.drain()
            elif one_read:
                held += event(choice)
                if sent + k >= n_out:
                    writer.write(held)
            else:
                writer.write(event(choice))
            log.sent_ns.append(clock())
            log.scheduled_ns.append(due)
            log.tokens.append(k)
            if self.metrics is not None:
                self.metrics.tokens(log, k)
            sent += k
            chunk_i += 1
        end = ({"index": 0, "delta": {}, "finish_reason": cfg.finish_reason} if chat
               else {"index": 0, "text": "", "finish_reason": cfg.finish_reason})
        writer.write(event(end))
        opts = req.get("stream_options") or {}
        if cfg.usage and opts.get("include_usage"):
            completion = (n_out + cfg.usage_offset if cfg.usage_tokens is None
                          else cfg.usage_tokens)
            usage: dict[str, Any] = {
                "prompt_tokens": n_prompt, "completion_tokens": completion,
                "total_tokens": (n_prompt + completion if isinstance(completion, int)
                                 else completion)}
            if chat and cfg.reasoning_tokens > 0 and cfg.reasoning_usage:
                usage["completion_tokens_details"] = {
                    "reasoning_tokens": min(cfg.reasoning_tokens, n_out)}
            writer.write(_chunked(b"data: " + json.dumps(
                {"id": "oracle", "object": obj, "model": cfg.model, "choices": [],
                 "usage": usage}).encode() + b"\n\n"))
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True


class OracleServer:
    """The oracle on 127.0.0.1 in a background thread: ``with OracleServer(cfg) as o: o.url``."""

    def __init__(self, config: OracleConfig | None = None, port: int = 0,
                 ssl: Any = None) -> None:
        self.config = config or OracleConfig()
        self._port = port
        self._ssl = ssl  # an ssl.SSLContext to serve HTTPS
        self._oracle = _Oracle(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs(self) -> list[RequestLog]:
        return self._oracle.logs

    @property
    def tokenize_requests(self) -> int:
        return self._oracle.tokenize_requests

    @property
    def seen_targets(self) -> list[str]:
        """Every request's target as received (``/v1/models?key=K``), in order."""
        return self._oracle.seen_targets

    @property
    def metrics_requests(self) -> int:
        """GET /metrics requests received (answered, or 404 without ``metrics``)."""
        return self._oracle.metrics_requests

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._oracle.handle, "127.0.0.1", self._port, backlog=1024, ssl=self._ssl)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        loop.run_until_complete(start())
        loop.run_forever()
        # Shut down: close the listener and every open connection.
        assert self._server is not None
        self._server.close()
        for w in list(self._oracle._writers):
            w.transport.abort()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    def start(self) -> OracleServer:
        self._thread = threading.Thread(target=self._run, name="llmperf-oracle", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the oracle server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> OracleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve(config: OracleConfig, port: int) -> None:
    oracle = _Oracle(config)
    server = await asyncio.start_server(oracle.handle, "127.0.0.1", port, backlog=4096)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pytest_llmperf.testing.oracle",
                                description="A streaming OpenAI-compatible server with a known "
                                            "schedule (the pytest-llmperf test oracle).")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--slots", type=int, default=None,
                   help="serve at most N generations at once, the others queue (FIFO)")
    p.add_argument("--metrics", action="store_true",
                   help="serve vLLM's Prometheus metrics on /metrics")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1/ (/v1/models included)")
    p.add_argument("--drip", action="append", default=[], metavar="PATH",
                   help="answer PATH a byte at a time (repeatable; hostile mode)")
    p.add_argument("--drip-ms", type=float, default=100.0,
                   help="milliseconds between the bytes of a dripped answer")
    p.add_argument("--not-http", action="store_true",
                   help="answer every request with an SSH banner (hostile mode)")
    p.add_argument("--reasoning-tokens", type=int, default=0,
                   help="chat answers: the first N tokens are reasoning deltas")
    p.add_argument("--reasoning-field", default="reasoning_content",
                   choices=("reasoning_content", "reasoning"),
                   help="the delta field reasoning is sent in")
    p.add_argument("--ttft-tail", default=None, metavar="SPEC",
                   help="heavy-tailed TTFT: 'lognormal:SIGMA' or 'pareto:ALPHA' (median 1)")
    p.add_argument("--ttft-tail-seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = OracleConfig(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms,
                       tokens_per_chunk=args.tokens_per_chunk, api_key=args.api_key,
                       metrics=args.metrics, slots=args.slots, drip_paths=tuple(args.drip),
                       drip_ms=args.drip_ms, not_http=args.not_http,
                       reasoning_tokens=args.reasoning_tokens,
                       reasoning_field=args.reasoning_field, ttft_tail=args.ttft_tail,
                       ttft_tail_seed=args.ttft_tail_seed)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg, args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
