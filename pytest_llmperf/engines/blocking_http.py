"""Blocking HTTP requests with a total deadline and a bounded answer: the one way the plugin's
synchronous calls talk to a server (the model list, a managed server's health probe, the
server's ``/metrics``, its tokenizer).

The ``timeout`` of ``urllib`` and ``http.client`` limits each socket operation, not the
request: a server that answers a byte a second keeps such a request going for ever. Here each
request has a deadline: before the connect, the send and every receive, the socket's timeout
becomes the time left, and nothing is received after it (``FetchError`` kind ``timeout``). The
body is read up to ``max_body`` bytes; the head is bounded by ``http.client`` (a line of 64 KiB,
100 header lines).

Whatever goes wrong is one ``FetchError``: its ``kind`` says what, its message says what and
where (the URL without its query or credentials), on one line: ``connection`` (refused,
unresolvable), ``tls`` (the handshake or the certificate), ``timeout``, ``not_http`` (the port
answers something that is not HTTP), ``malformed`` (an HTTP answer broken beyond reading: a
header line longer than 64 KiB, too many headers), ``dropped`` (closed before the answer was
complete), ``too_large``, and ``usage`` (a request header HTTP cannot carry: refused before
anything is sent; the options are checked earlier, see ``auth``). A name lookup (DNS) is the
system resolver's and has its own timeout.

The streamed requests go through ``http_client`` instead, whose deadline is the request's
``asyncio.timeout``.
"""

from __future__ import annotations

import functools
import http.client
import io
import math
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

MAX_BODY = 16 << 20  # bytes of an answer's body read at most (MiB: 16)


class FetchError(Exception):
    """A request that got no usable answer; ``kind`` is connection, tls, timeout, not_http,
    malformed, dropped, too_large, or usage (a header that cannot be sent)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def tls_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """An SSLContext as given, else one that verifies with the system CAs (True) or not at
    all (False)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Deadline:
    """When the request in progress on a connection must be over."""

    def __init__(self) -> None:
        self.at = math.inf

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("past the request's deadline")
        return left


class _DeadlineReader(io.RawIOBase):
    """A response's socket reader whose every receive waits at most the time left."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: _Deadline) -> None:
        super().__init__()
        self._raw = raw  # the SocketIO http.client made (it keeps the socket open)
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        self._sock.settimeout(self._deadline.left())
        return cast(int, self._raw.readinto(b))

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _Response(http.client.HTTPResponse):
    """An HTTPResponse reading through a ``_DeadlineReader``."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None, *, deadline: _Deadline) -> None:
        super().__init__(sock, debuglevel, method=method, url=url)
        raw = self.fp.detach()  # nothing read yet: the same socket, without its buffer
        self.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline))


def _where(u: urllib.parse.SplitResult, path: str) -> str:
    """The URL for messages: scheme, host, port and path (no credentials, no query)."""
    host = u.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{host}{port}{path.split('?', 1)[0]}"


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def _shown(data: object, n: int = 80) -> str:
    text = data.decode("latin-1") if isinstance(data, bytes) else str(data)
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return repr(text if len(text) <= n else text[:n] + "...")


class Connection:
    """A kept-alive connection to one server (scheme, host and port of ``url``); each
    ``request`` has its own deadline. Not thread-safe: one request at a time."""

    def __init__(self, url: str, ssl_ctx: ssl.SSLContext | bool = True) -> None:
        self._url = urllib.parse.urlsplit(url)
        self._ssl = ssl_ctx
        self._conn: http.client.HTTPConnection | None = None
        self._deadline = _Deadline()

    def _open(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self._url.hostname or "127.0.0.1", self._url.port
            conn: http.client.HTTPConnection
            if self._url.scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                                   context=tls_context(self._ssl))
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
            conn.response_class = cast("type[http.client.HTTPResponse]", functools.partial(
                _Response, deadline=self._deadline))
            self._conn = conn
        return self._conn

    def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, timeout_s: float,
                max_body: int = MAX_BODY) -> Reply:
        """The answer to one request, read in full within ``timeout_s`` seconds, or a
        FetchError. A kept-alive connection the server had closed is retried once."""
        self._deadline.at = time.monotonic() + timeout_s
        where = _where(self._url, path)
        try:
            for attempt in range(2):
                reused = self._conn is not None and self._conn.sock is not None
                try:
                    return self._exchange(method, path, dict(headers or {}), body, max_body,
                                          where, timeout_s)
                except _Stale:
                    self.close()
                    if not reused or attempt:
                        raise FetchError("dropped", f"{where} closed the connection without "
                                                    "answering") from None
                except BaseException:
                    self.close()
                    raise
            raise AssertionError("unreachable")
        finally:
            self._deadline.at = math.inf

    def _exchange(self, method: str, path: str, headers: dict[str, str], body: bytes | None,
                  max_body: int, where: str, timeout_s: float) -> Reply:
        phase = "connect"
        try:
            conn = self._open(self._deadline.left())
            if conn.sock is None:
                conn.timeout = self._deadline.left()
                conn.connect()
            phase = "send"
            assert conn.sock is not None
            conn.sock.settimeout(self._deadline.left())
            try:
                conn.request(method, path, body=body, headers=headers)
            except ValueError:  # UnicodeEncodeError, or a line break in a header
                raise FetchError("usage", f"a request header for {where} is not valid HTTP "
                                          "(a name is letters, digits and -, a value Latin-1 "
                                          "text without line breaks)") from None
            resp = conn.getresponse()
            phase = "body"
            data = bytearray()
            while piece := resp.read(64 << 10):
                data += piece
                if len(data) > max_body:
                    raise FetchError("too_large", f"{where} answered more than "
                                                  f"{_size(max_body)}")
            if resp.length:  # closed before its Content-Length (http.client returns it short)
                raise http.client.IncompleteRead(bytes(data), resp.length)
            return Reply(resp.status, resp.reason,
                         {k.lower(): v for k, v in resp.getheaders()}, bytes(data))
        except TimeoutError:
            raise FetchError("timeout", f"{where} gave no complete answer within "
                                        f"{timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise FetchError("tls", f"TLS with {where} failed: {exc}; for a self-signed "
                                    "certificate give --llmperf-tls-verify=CA.pem (or "
                                    "false)") from None
        except http.client.RemoteDisconnected:  # before the status line (also an OSError)
            raise _Stale() from None
        except http.client.IncompleteRead as exc:
            raise FetchError("dropped", f"{where} sent an incomplete answer "
                                        f"({len(exc.partial)} bytes of its body read)") from None
        except http.client.BadStatusLine as exc:
            raise FetchError("not_http", f"{where} does not speak HTTP: it answered "
                                         f"{_shown(exc.args[0] if exc.args else exc)}") from None
        except http.client.LineTooLong as exc:
            line = str(exc).rpartition(" reading ")[2] or "line"  # "status line", ...
            if line == "status line":
                raise FetchError("not_http", f"{where} does not speak HTTP: it answered "
                                             "64 KiB without a line end") from None
            raise FetchError("malformed", f"{where} sent a broken HTTP answer: a {line} "
                                          "longer than 64 KiB") from None
        except http.client.HTTPException as exc:
            raise FetchError("malformed", f"{where} sent a broken HTTP answer: "
                                          f"{_shown(str(exc) or type(exc).__name__)}") from None
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
            if phase == "connect":
                raise FetchError("connection", f"cannot connect to {where}: {why}") from None
            if phase == "send" and isinstance(exc, BrokenPipeError | ConnectionResetError):
                raise _Stale() from None
            raise FetchError("dropped", f"{where} broke the connection ({why})") from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _Stale(Exception):
    """The server closed the connection before answering (a kept-alive one it had closed)."""


def fetch(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
          body: bytes | None = None, ssl_ctx: ssl.SSLContext | bool = True,
          timeout_s: float, max_body: int = MAX_BODY) -> Reply:
    """One request to ``url`` on a connection of its own, answered in full within
    ``timeout_s`` seconds (any status), or a FetchError."""
    u = urllib.parse.urlsplit(url)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn = Connection(url, ssl_ctx)
    try:
        return conn.request(method, path, headers=headers, body=body, timeout_s=timeout_s,
                            max_body=max_body)
    finally:
        conn.close()
