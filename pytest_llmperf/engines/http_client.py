"""A lean HTTP/1.1 client for streaming benchmarks, on asyncio protocols.

Why not aiohttp: a benchmark client must stamp a request when its bytes leave and a chunk when
its bytes arrive. Here the request (headers and body) goes out in one write and its send time
is taken when the write is done; every received segment is stamped as it is received, before
any parsing, so a burst of streams being parsed one after another does not shift their
timestamps. While a response body is piped into a parser (``Stream.pipe``), received
segments are stamped and queued, and parsed together once per event-loop pass (``_Batcher``),
not by waking each request's task for each segment: the parse costs no task switch and still
never delays another segment's stamp.

It speaks what OpenAI-compatible servers answer with: a status line, headers, and a
body framed by ``Transfer-Encoding: chunked``, ``Content-Length``, or the connection's close.
An answer that does not begin as HTTP is a ``malformed`` error at once, naming what the server
said ("does not speak HTTP"); a head over 64 KiB, or a chunk-size or trailer line over 64 KiB,
is ``malformed`` too. The caller's ``asyncio.timeout`` is the request's deadline.
Connections are kept alive and reused (a pool per run); TLS through ``ssl``.

Plain-TCP connections on Linux skip asyncio's transports (``_Poller``): their sockets sit in a
private epoll set whose own descriptor is the one thing the event loop watches, so each loop
pass makes one call of ours that receives and stamps every ready socket, then parses the lot,
instead of one transport callback per socket and a second loop pass for the parse. TLS
connections (and other platforms) use asyncio's transports.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

MAX_HEADER = 64 * 1024
RECV_SIZE = 64 * 1024
# Plain-TCP connections read through one private epoll set (``_Poller``) where there is one;
# LLMPERF_HTTP_POLLER=0 reads them through asyncio transports, as TLS connections are.
USE_POLLER = hasattr(select, "epoll") and os.environ.get("LLMPERF_HTTP_POLLER", "1") != "0"


class HTTPError(Exception):
    """A transport-level failure; ``kind`` is connection, dropped or malformed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _http_start(buf: bytes) -> bool:
    """Whether ``buf`` (the start of an answer) can be the start of an HTTP response."""
    head = buf.lstrip(b"\r\n")[:5]
    return b"HTTP/".startswith(head)


class BodySink(Protocol):
    """What ``Stream.pipe`` feeds: each piece of the body with its arrival time."""

    def body(self, t_ns: int, data: bytes) -> None: ...


class _Batcher:
    """The segments received during one event-loop pass, handed to their streams' parsers by
    one callback after every segment of the pass has been stamped."""

    def __init__(self) -> None:
        self.items: list[tuple[Stream, int, bytes | None]] = []
        self.scheduled = False

    def add(self, stream: Stream, t_ns: int, data: bytes | None) -> None:
        self.items.append((stream, t_ns, data))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        items, self.items = self.items, []
        self.scheduled = False
        for stream, t, data in items:
            if data is None:
                stream._lost()
            else:
                stream._segment(t, data)


class _Receiver:
    """What one connection has received: segments with their arrival times, queued for the
    response-head reader or handed to a piped stream's parser (through the batcher)."""

    def __init__(self, batcher: _Batcher | None = None) -> None:
        self.segments: collections.deque[tuple[int, bytes]] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False
        self.lost_exc: BaseException | None = None
        self.used = 0
        self.batcher = batcher or _Batcher()
        self.piped: Stream | None = None  # a stream whose body goes to a parser

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _received(self, t: int, data: bytes) -> None:
        piped = self.piped
        if piped is not None:
            self.batcher.add(piped, t, data)
            return
        self.segments.append((t, data))
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def eof_received(self) -> bool | None:
        self._lose(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(exc)

    def _lose(self, exc: BaseException | None) -> None:
        self.lost = True
        self.lost_exc = exc
        if self.piped is not None:
            self.batcher.add(self.piped, 0, None)  # after the segments queued before it
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def segment(self) -> tuple[int, bytes] | None:
        """The next received segment with its arrival time; None when the peer closed."""
        while not self.segments:
            if self.lost:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.segments.popleft()


class _Conn(_Receiver, asyncio.BufferedProtocol):
    """A connection through an asyncio transport (TLS, or no epoll). A buffered protocol:
    the transport receives into one buffer of ours (``recv_into``) instead of allocating a
    256 KiB bytes object per segment."""

    def __init__(self, batcher: _Batcher | None = None) -> None:
        super().__init__(batcher)
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A connection made by loop.create_connection: a stream transport.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        t = time.perf_counter_ns()  # stamped first, then copied out of the buffer
        self._received(t, bytes(self._view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._received(time.perf_counter_ns(), data)

    async def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _SockConn(_Receiver):
    """A plain-TCP connection read by a ``_Poller``: a non-blocking socket of ours."""

    def __init__(self, sock: socket.socket, poller: _Poller) -> None:
        super().__init__(poller.batcher)
        self.sock = sock
        self.poller = poller
        self.closed = False
        poller.register(self)

    async def send(self, data: bytes) -> None:
        """Write the whole request; a failure is left for the read to report (as a
        transport would: a kept-alive connection the server closed is retried)."""
        try:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n < len(data):  # a large body: the rest as the socket drains
                await asyncio.get_running_loop().sock_sendall(self.sock, memoryview(data)[n:])
        except OSError as exc:
            self.poller.unregister(self)
            self._lose(exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.poller.unregister(self)
        self.sock.close()
        if not self.lost:
            self._lose(None)


class _Poller:
    """One client's plain-TCP connections, read once per event-loop pass.

    The sockets are registered in a private epoll set; the event loop watches that set's own
    descriptor (readable while any socket in it is). Each pass then makes one call here that
    receives from every ready socket and stamps each segment as it arrives, then hands them
    all to their parsers (``_Batcher.flush``): every stamp is taken before any parsing, as
    with transports, without a transport callback per socket or a second loop pass."""

    def __init__(self, loop: asyncio.AbstractEventLoop, batcher: _Batcher) -> None:
        self.loop = loop
        self.batcher = batcher
        self.ep = select.epoll()
        self.conns: dict[int, _SockConn] = {}
        loop.add_reader(self.ep.fileno(), self._drain)

    def register(self, conn: _SockConn) -> None:
        fd = conn.sock.fileno()
        self.conns[fd] = conn
        self.ep.register(fd, select.EPOLLIN)

    def unregister(self, conn: _SockConn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0 and self.conns.get(fd) is conn:
            del self.conns[fd]
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(fd)

    def _drain(self) -> None:
        batcher, conns = self.batcher, self.conns
        batcher.scheduled = True  # hold the parse until every ready socket is stamped
        try:
            for fd, _ in self.ep.poll(0):
                conn = conns.get(fd)
                if conn is None:
                    continue
                try:
                    data = conn.sock.recv(RECV_SIZE)  # (cheaper than recv_into and a copy)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    self.unregister(conn)
                    conn._lose(exc)
                    continue
                t = time.perf_counter_ns()  # stamped before any parsing
                if data:
                    conn._received(t, data)
                else:  # the peer closed
                    self.unregister(conn)
                    conn._lose(None)
        finally:
            batcher.flush()

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.close()
        with contextlib.suppress(Exception):  # the loop may be closed already
            self.loop.remove_reader(self.ep.fileno())
        self.ep.close()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    sent_ns: int  # when the request was handed to the socket (just before the write)


class Stream:
    """A response body, as (arrival time, bytes) pieces in order."""

    def __init__(self, conn: _Receiver, first: bytes, first_ns: int, headers: Mapping[str, str],
                 head_request: bool = False) -> None:
        self._conn = conn
        self._pending: collections.deque[tuple[int, bytes]] = collections.deque()
        if first:
            self._pending.append((first_ns, first))
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        cl = headers.get("content-length")
        self.remaining = int(cl) if cl is not None and not self.chunked else None
        self.keep_alive = headers.get("connection", "").lower() != "close"
        self.complete = head_request or self.remaining == 0
        self._cbuf = b""  # undecoded chunked bytes
        # Bytes left in the current chunk; None: at a size line; -1: in the trailers.
        self._csize: int | None = None
        self._sink: BodySink | None = None
        self._piped: asyncio.Future[None] | None = None

    def pipe(self, sink: BodySink) -> asyncio.Future[None]:
        """Feed the body to ``sink.body(t_ns, data)`` as it arrives, without a task switch
        per segment; the future is done when the body is complete, or fails with the
        HTTPError (or whatever ``sink.body`` raised) that ended it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sink, self._piped = sink, fut
        conn = self._conn
        while not fut.done() and self._pending:
            self._segment(*self._pending.popleft())
        while not fut.done() and conn.segments:
            self._segment(*conn.segments.popleft())
        if not fut.done():
            if conn.lost:
                self._lost()
            else:
                conn.piped = self
        return fut

    def _end(self, exc: BaseException | None) -> None:
        fut = self._piped
        if self._conn.piped is self:
            self._conn.piped = None
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def _segment(self, t: int, data: bytes) -> None:
        fut = self._piped
        if fut is None or fut.done():
            return
        try:
            body = self._body(data)
            if body:
                assert self._sink is not None
                self._sink.body(t, body)
        except BaseException as exc:  # the parser's verdict on what the server sent
            self._end(exc)
            return
        if self.complete:
            self._end(None)

    def _lost(self) -> None:
        fut = self._piped
        if fut is None or fut.done():
            return
        if self.remaining is None and not self.chunked:
            self.complete = True  # close-delimited body: done
            self.keep_alive = False
            self._end(None)
        else:
            self._end(HTTPError("dropped", "the server closed the connection mid-response"))

    def detach(self) -> None:
        """Stop feeding the parser (a request given up: timeout, cancellation)."""
        if self._conn.piped is self:
            self._conn.piped = None

    def _body(self, data: bytes) -> bytes:
        """The body bytes in a received segment, by the response's framing; sets
        ``complete`` at its end."""
        if self.chunked:
            return self._decode(data)
        if self.remaining is None:
            return data
        body = data[: self.remaining]
        self.remaining -= len(body)
        if self.remaining <= 0:
            self.complete = True
        return body

    def _decode(self, data: bytes) -> bytes:
        """Chunked transfer decoding; sets ``complete`` at the terminating chunk."""
        if self.complete:
            return b""
        if self._csize is None and not self._cbuf:
            # The common case, a whole chunk in one segment: "SIZE\r\nDATA\r\n".
            i = data.find(b"\r\n")
            if 0 < i < 9 and data[-2:] == b"\r\n":
                try:
                    whole = int(data[:i], 16)
                except ValueError:
                    whole = 0
                if whole > 0 and len(data) == i + whole + 4:
                    return data[i + 2:i + 2 + whole]
        buf = self._cbuf + data if self._cbuf else data
        out = bytearray()
        pos = 0
        n = len(buf)
        while True:
            size = self._csize
            if size == -1:  # after the last chunk: trailer lines, then an empty line
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                empty = i == pos
                pos = i + 2
                if empty:
                    self.complete = True
                    break
                continue
            if size is None:  # at a chunk-size line
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                size_text = buf[pos:i].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HTTPError("malformed", f"bad chunk size {size_text[:40]!r}") from None
                pos = i + 2
                if size == 0:
                    self._csize = -1  # the last chunk: trailers (ignored) until a blank line
                    continue
                self._csize = size
            elif size > 0:  # inside chunk data
                take = min(size, n - pos)
                if take == 0:
                    break
                out += buf[pos:pos + take]
                pos += take
                self._csize = size - take
            else:  # the CRLF after chunk data
                if n - pos < 2:
                    break
                pos += 2
                self._csize = None
        self._cbuf = buf[pos:]  # a chunk-size or trailer line begun, or a CRLF
        if len(self._cbuf) > MAX_HEADER:
            raise HTTPError("malformed", "a chunk-size or trailer line longer than 64 KiB")
        return bytes(out)

    async def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        while not self.complete:
            if self._pending:
                t, data = self._pending.popleft()
            else:
                seg = await self._conn.segment()
                if seg is None:
                    if self.remaining is None and not self.chunked:
                        self.complete = True  # close-delimited body: done
                        self.keep_alive = False
                        return
                    raise HTTPError("dropped", "the server closed the connection mid-response")
                t, data = seg
            body = self._body(data)
            if body:
                yield t, body

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        out = bytearray()
        async for _, data in self:
            if len(out) < limit:
                out += data[: limit - len(out)]
        return bytes(out)


class Client:
    """Keep-alive connections to one server; ``async with client.request(...) as (resp, body)``.

    Use within one event loop; ``aclose()`` closes the idle connections.
    """

    def __init__(self, base_url: str, ssl_ctx: ssl.SSLContext | bool = True) -> None:
        u = urllib.parse.urlsplit(base_url)
        self.host = u.hostname or "127.0.0.1"
        self.tls = u.scheme == "https"
        self.port = u.port or (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        self.host_header = host if u.port is None else f"{host}:{u.port}"
        if self.tls:
            if isinstance(ssl_ctx, ssl.SSLContext):
                self.ssl: ssl.SSLContext | None = ssl_ctx
            elif ssl_ctx:
                self.ssl = ssl.create_default_context()
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self.ssl = ctx
        else:
            self.ssl = None
        self._idle: list[_Receiver] = []
        self._all: set[_Receiver] = set()
        self._batcher = _Batcher()
        self._poller: _Poller | None = None
        self._addrs: list[tuple[Any, ...]] | None = None

    async def _connect(self) -> _Receiver:
        loop = asyncio.get_running_loop()
        if self.ssl is None and USE_POLLER:
            conn: _Receiver = await self._connect_socket(loop)
            self._all.add(conn)
            return conn
        try:
            _, conn = await loop.create_connection(
                lambda: _Conn(self._batcher), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None)
        except ssl.SSLError as exc:
            raise HTTPError("connection", f"TLS handshake with {self.host} failed: {exc}; "
                                          "for a self-signed certificate give "
                                          "--llmperf-tls-verify=CA.pem (or false)") from None
        except OSError as exc:
            raise HTTPError("connection", f"cannot connect to {self.host}:{self.port}: "
                                          f"{exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    async def _connect_socket(self, loop: asyncio.AbstractEventLoop) -> _SockConn:
        """A plain-TCP connection read by this client's poller (made on first use, in the
        running loop)."""
        where = f"{self.host}:{self.port}"
        if self._addrs is None:  # resolved once per client; an address literal needs no DNS
            try:
                try:
                    infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                               flags=socket.AI_NUMERICHOST)
                except socket.gaierror:
                    infos = await loop.getaddrinfo(self.host, self.port,
                                                   type=socket.SOCK_STREAM)
            except OSError as exc:
                raise HTTPError("connection", f"cannot connect to {where}: "
                                              f"{exc.strerror or exc}") from None
            self._addrs = infos
        last: OSError | None = None
        for family, kind, proto, _, addr in self._addrs:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, addr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            if self._poller is None or self._poller.loop is not loop:
                self._poller = _Poller(loop, self._batcher)
            return _SockConn(sock, self._poller)
        why = (last.strerror or str(last)) if last is not None else "no address"
        raise HTTPError("connection", f"cannot connect to {where}: {why}")

    def _encode(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(self, method: str, path: str, headers: Mapping[str, str],
                      body: bytes = b"") -> tuple[Response, Stream, _Receiver]:
        raw = self._encode(method, path, headers, body)
        for attempt in range(2):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            if conn.lost:
                self._all.discard(conn)
                continue
            try:
                # Stamped just before the write, as `vllm bench serve` does before its post:
                # stamped after it, a thread switch between the write and the stamp (the GIL,
                # a server in this process) would start the clock after the server had read
                # the request, and TTFT would read below what the server took.
                sent_ns = time.perf_counter_ns()
                await conn.send(raw)
                conn.used += 1
                resp, stream = await self._read_head(conn, sent_ns, method == "HEAD")
            except HTTPError as exc:
                self._discard(conn)
                # A kept-alive connection the server had closed: retry once on a new one.
                if reused and attempt == 0 and exc.kind == "stale":
                    continue
                if exc.kind == "stale":
                    raise HTTPError("dropped", "the server closed the connection before "
                                               "answering") from None
                raise
            except BaseException:
                # Given up before the answer's head (a timeout, a cancelled run): closed, so
                # the server can stop generating what no one will read.
                self._discard(conn)
                raise
            return resp, stream, conn
        raise HTTPError("connection", "could not get a working connection")

    async def _read_head(self, conn: _Receiver, sent_ns: int, head: bool
                         ) -> tuple[Response, Stream]:
        buf = b""
        while True:
            seg = await conn.segment()
            if seg is None:
                if buf and not _http_start(buf):
                    raise self._not_http(buf)
                raise HTTPError("stale" if not buf else "dropped",
                                "the server closed the connection before the headers ended")
            t, data = seg
            buf += data
            if not _http_start(buf):  # said at once, not at the timeout: no HTTP will come
                raise self._not_http(buf)
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(buf) > MAX_HEADER:
                raise HTTPError("malformed", "response headers larger than 64 KiB")
        head_text = buf[:i].decode("latin-1").lstrip("\r\n")
        rest = buf[i + 4:]
        lines = head_text.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise self._not_http(buf)
        try:
            status = int(parts[1])
        except ValueError:
            raise HTTPError("malformed", f"bad status line {lines[0][:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        resp = Response(status, parts[2] if len(parts) > 2 else "", headers, sent_ns)
        return resp, Stream(conn, rest, t, headers, head)

    def _not_http(self, buf: bytes) -> HTTPError:
        first = buf.lstrip(b"\r\n").split(b"\n", 1)[0][:80].decode("latin-1")
        shown = "".join(c if c.isprintable() else " " for c in first).strip()
        return HTTPError("malformed", f"{self.host_header} does not speak HTTP: it answered "
                                      f"{shown!r}")

    def release(self, conn: _Receiver, stream: Stream) -> None:
        """Return a connection after its response; reused only when fully read and kept alive."""
        stream.detach()
        if stream.complete and stream.keep_alive and not conn.lost and not conn.segments:
            self._idle.append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Receiver) -> None:
        self._all.discard(conn)
        conn.close()

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        await asyncio.sleep(0)
