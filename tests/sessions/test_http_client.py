"""The HTTP client's two read paths: plain-TCP connections read by its own epoll poller, and
asyncio transports (what TLS connections, and platforms without epoll, use). Both must give
the same answers to the same server, including a request body larger than a socket buffer and
a kept-alive connection the server closed in between."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers import oracle_bench

from pytest_llmperf.engines import http_client
from pytest_llmperf.engines.http_client import Client, HTTPError, _SockConn
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

PATHS = ["poller", "transports"] if http_client.USE_POLLER else ["transports"]


@pytest.fixture(params=PATHS)
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(http_client, "USE_POLLER", request.param == "poller")
    yield request.param


BODY = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]


async def _server(close_after_first: bool) -> tuple[asyncio.Server, list[int]]:
    """A server that reads a whole request (Content-Length bytes) and answers it with a
    chunked body of three pieces sent apart; with ``close_after_first`` it closes the
    connection after its first answer without saying so (a stale kept-alive connection)."""
    received: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                received.append(len(body))
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in BODY:
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                if close_after_first:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, received


class _Sink:
    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytes]] = []

    def body(self, t_ns: int, data: bytes) -> None:
        self.pieces.append((t_ns, data))


async def _exchange(client: Client, payload: bytes) -> tuple[int, bytes, list[int]]:
    resp, stream, conn = await client.request("POST", "/x", {}, payload)
    assert isinstance(conn, _SockConn) == http_client.USE_POLLER  # the path asked for
    sink = _Sink()
    try:
        await stream.pipe(sink)
    finally:
        client.release(conn, stream)
    times = [t for t, _ in sink.pieces]
    assert all(t >= resp.sent_ns for t in times)
    return resp.status, b"".join(d for _, d in sink.pieces), times


def test_a_large_body_and_a_stale_connection_on_either_path(read_path: str) -> None:
    async def main() -> None:
        server, received = await _server(close_after_first=True)
        port = server.sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}")
        try:
            big = b"x" * (8 << 20)  # far more than a socket buffer: written as it drains
            status, body, times = await _exchange(client, big)
            assert (status, body) == (200, b"".join(BODY))
            assert times == sorted(times)
            # The server closed that connection; the client reuses it, finds it closed
            # before any answer and retries once on a new one.
            status, body, _ = await _exchange(client, b"small")
            assert (status, body) == (200, b"".join(BODY))
            assert received == [len(big), 5]
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_refused_connection_is_a_connection_error_on_either_path(read_path: str) -> None:
    async def main() -> None:
        server, _ = await _server(close_after_first=False)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = Client(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(HTTPError) as info:
                await client.request("GET", "/", {})
            assert info.value.kind == "connection"
            assert f"cannot connect to 127.0.0.1:{port}" in str(info.value)
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("cfg", [OracleConfig(ttft_ms=30, itl_ms=10),
                                 OracleConfig(ttft_ms=5, itl_ms=5, drop_after=3)])
def test_both_paths_measure_the_same_schedule(cfg: OracleConfig, read_path: str) -> None:
    """The oracle's schedule (or its dropped connections) read the same way on either path:
    TTFT and ITL near what it injects, every request counted, failures of the same kind."""
    with OracleServer(cfg) as server:
        result = oracle_bench(server, Workload(input_tokens=8, output_tokens=8, requests=12,
                                               concurrency=4))
    s = result.summary
    assert s["requests"] == 12
    if cfg.drop_after:
        assert s["errors"] == 12
        assert {r.error_kind for r in result.samples} == {"dropped"}
        return
    assert s["errors"] == 0 and s["output_tokens"] == 12 * 8
    assert abs(s["ttft_p50_ms"] - 30) < 20, s["ttft_p50_ms"]
    assert abs(s["itl_p50_ms"] - 10) < 5, s["itl_p50_ms"]


def test_a_request_given_up_before_its_answer_closes_its_connection(read_path: str) -> None:
    """A timeout while the server has not answered yet: the connection is closed (the server
    sees its end, and can stop generating), not left open to receive an answer no one reads."""

    async def main() -> None:
        closed = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.read()  # until the client closes
            closed.set()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.request("GET", "/", {}), 0.2)
            await asyncio.wait_for(closed.wait(), 5)
            assert not client._all and not client._idle
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
