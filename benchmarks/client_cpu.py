"""How much CPU does our client spend per streamed token?

Starts the test oracle (``python -m pytest_llmperf.testing.oracle``) as a separate process and
runs the load generator with the HTTP engine against it, closed-loop at ``--concurrency`` (64),
twice: with ``--small`` and with ``--large`` requests. The client's CPU time (user + system of
this process, and of its load-worker processes with ``--workers``) per streamed token is the
difference between the two runs' CPU times over the difference of their token counts, so what
a run costs once (engine creation, connections, worker start-up) cancels out. Repeated
``--repeat`` times; the median is printed, in microseconds per token.

``--minimal`` measures, the same way, a minimal asyncio client instead (asyncio streams, one
``readline`` per SSE line, a timestamp per data line, no parsing): the floor of what any
asyncio client spends per token on this machine.

``--transports`` reads plain-TCP connections through asyncio's transports (the path TLS
connections take) instead of the client's own epoll poller (``http_client._Poller``).

``--replay`` takes the kernel, the network and the server out: the engine's connections are
fake transports that hand every open stream its next segment (the oracle's bytes: one
chunked SSE event per token) once per event-loop pass, so only the client's own code and
asyncio's callbacks and tasks run. Its figure barely moves with the machine's load, which
the end-to-end figure does (other processes' load changes how many segments one loop pass
finds, and each pass costs a system call).

Run: ``python benchmarks/client_cpu.py`` (``--workers 2`` for two load processes).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The oracle is started as a separate process as the fidelity benchmark does (this folder is
# on sys.path when either runs as a script).
from client_fidelity import start_oracle

from pytest_llmperf.engines import http_client
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.loadgen import run_load
from pytest_llmperf.run.workload import Workload, build_prompts


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def one_run(engine: OpenAIEngine, requests: int, concurrency: int, output_tokens: int,
            workers: int, seed: int) -> tuple[float, int, float]:
    """(client CPU seconds, output tokens streamed, wall seconds) of one closed-loop run."""
    workload = Workload(input_tokens=32, output_tokens=output_tokens, requests=requests,
                        warmup=0, concurrency=concurrency, seed=seed)
    prompts = build_prompts(engine.tokenizer, workload)
    c0, w0 = cpu_s(), time.perf_counter()
    load = asyncio.run(run_load(engine, prompts, workload, workers=workers))
    # Load workers are the fork server's children, not ours: each reports its own CPU time.
    c1, w1 = cpu_s() + load.client.get("load_workers_cpu_s", 0.0), time.perf_counter()
    bad = [r for r in load.records if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} request(s) failed, e.g. {bad[0].error}")
    return c1 - c0, sum(r.n_output for r in load.records), w1 - w0


async def _minimal(url: str, requests: int, concurrency: int, output_tokens: int) -> int:
    """A minimal asyncio client: one kept-alive connection per worker, one ``readline`` per
    line of the chunked SSE body, a timestamp per data line."""
    import json
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    body = json.dumps({"model": "oracle", "prompt": "alpha " * 32, "max_tokens": output_tokens,
                       "stream": True}).encode()
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    left = list(range(requests))
    stamps: list[int] = []
    counts: list[int] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(u.hostname or "127.0.0.1", u.port or 80)
        while left:
            left.pop()
            writer.write(head + body)
            tokens = 0
            while line := await reader.readline():
                if line.startswith(b"data: {"):
                    stamps.append(time.perf_counter_ns())
                    tokens += 1
                elif line.startswith(b"data: [DONE]"):
                    await reader.readuntil(b"0\r\n\r\n")  # the last chunk
                    break
            counts.append(tokens)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(counts)


def minimal_run(url: str, requests: int, concurrency: int, output_tokens: int
                ) -> tuple[float, int, float]:
    c0, w0 = cpu_s(), time.perf_counter()
    n = asyncio.run(_minimal(url, requests, concurrency, output_tokens))
    return cpu_s() - c0, n, time.perf_counter() - w0


class _FakeTransport(asyncio.Transport):
    """Answers each request written to it like the oracle, one segment per loop pass."""

    def __init__(self, protocol: asyncio.BaseProtocol, pending: dict[Any, list[bytes]]) -> None:
        super().__init__()
        self._protocol = protocol
        self._pending = pending
        self._closing = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        import json

        body = json.loads(bytes(data).split(b"\r\n\r\n", 1)[1])
        self._pending[self._protocol] = list(_answer(int(body["max_tokens"])))

    def close(self) -> None:
        self._closing = True
        self._pending.pop(self._protocol, None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@functools.cache
def _answer(n: int) -> tuple[bytes, ...]:
    """The oracle's answer of ``n`` tokens, segment by segment (made once: the fake
    server's cost stays out of the client's figure)."""
    import json

    words = ("alpha", "bravo", "charlie", "delta")

    def event(obj: dict[str, Any]) -> bytes:
        raw = b"data: " + json.dumps(obj).encode() + b"\n\n"
        return b"%x\r\n%s\r\n" % (len(raw), raw)

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {"id": "oracle", "object": "text_completion", "model": "oracle",
                "choices": [{"index": 0, "text": text, "finish_reason": finish}]}

    segs = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"]
    segs += [event(choice(" " + words[i % 4], None)) for i in range(n)]
    segs.append(event(choice("", "length")))
    segs.append(event({**choice("", None), "choices": [],
                       "usage": {"prompt_tokens": 33, "completion_tokens": n,
                                 "total_tokens": n + 33}})
                + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    return tuple(segs)


def _deliver(protocol: Any, data: bytes) -> None:
    if isinstance(protocol, asyncio.BufferedProtocol):  # as the selector transport does
        buf = protocol.get_buffer(-1)
        buf[: len(data)] = data
        protocol.buffer_updated(len(data))
    else:
        protocol.data_received(data)


async def _replay(engine: OpenAIEngine, workload: Workload, prompts: Any) -> Any:
    http_client.USE_POLLER = False  # the fake transports stand in for asyncio's
    loop = asyncio.get_running_loop()
    pending: dict[Any, list[bytes]] = {}

    async def create_connection(factory: Any, *args: Any, **kwargs: Any) -> Any:
        protocol = factory()
        transport = _FakeTransport(protocol, pending)
        protocol.connection_made(transport)
        return transport, protocol

    loop.create_connection = create_connection  # type: ignore[method-assign]
    task = asyncio.ensure_future(run_load(engine, prompts, workload))
    while not task.done():
        for protocol, segs in list(pending.items()):
            if segs:
                _deliver(protocol, segs.pop(0))
        await asyncio.sleep(0)
    return task.result()


def replay_run(engine: OpenAIEngine, requests: int, concurrency: int, output_tokens: int,
               seed: int) -> tuple[float, int, float]:
    """(client CPU seconds, output tokens, wall seconds) of one replayed closed-loop run."""
    workload = Workload(input_tokens=32, output_tokens=output_tokens, requests=requests,
                        warmup=0, concurrency=concurrency, seed=seed)
    prompts = build_prompts(engine.tokenizer, workload)
    c0, w0 = cpu_s(), time.perf_counter()
    load = asyncio.run(_replay(engine, workload, prompts))
    c1, w1 = cpu_s(), time.perf_counter()
    bad = [r for r in load.records if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} request(s) failed, e.g. {bad[0].error}")
    return c1 - c0, sum(r.n_output for r in load.records), w1 - w0


def measure(args: argparse.Namespace, itl_ms: float, who: str) -> dict[str, Any]:
    """``who`` ("ours", "minimal" or "replay") at one oracle schedule: the median us/token
    of ``--repeat`` pairs of runs, with the larger run's achieved tokens/s and the client's
    share of one core (CPU seconds over wall seconds) in it."""
    proc, url = start_oracle(args.ttft_ms, itl_ms)
    per_token: list[float] = []
    rates: list[float] = []
    shares: list[float] = []
    try:
        engine = OpenAIEngine(url)
        one_run(engine, args.concurrency, args.concurrency, 8, args.workers, 0)  # warm up

        def run(requests: int, seed: int) -> tuple[float, int, float]:
            if who == "minimal":
                return minimal_run(url, requests, args.concurrency, args.output_tokens)
            if who == "replay":
                return replay_run(engine, requests, args.concurrency, args.output_tokens, seed)
            return one_run(engine, requests, args.concurrency, args.output_tokens,
                           args.workers, seed)

        for i in range(args.repeat):
            cs, ns, ws = run(args.small, 2 * i + 1)
            cl, nl, wl = run(args.large, 2 * i + 2)
            us = (cl - cs) / (nl - ns) * 1e6
            per_token.append(us)
            rates.append(nl / wl)
            shares.append(cl / wl)
            print(f"# {who}, ITL {itl_ms:g} ms, repeat {i + 1}: {ns} tokens {cs:.2f} s CPU "
                  f"({ws:.1f} s wall), {nl} tokens {cl:.2f} s CPU ({wl:.1f} s wall): "
                  f"{us:.1f} us/token", file=sys.stderr)
        engine.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return {"us": statistics.median(per_token), "runs": per_token,
            "tps": statistics.median(rates), "share": statistics.median(shares)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--small", type=int, default=128, help="requests of the smaller run")
    p.add_argument("--large", type=int, default=384, help="requests of the larger run")
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--ttft-ms", type=float, default=5.0)
    p.add_argument("--itl-ms", type=float, nargs="+", default=[20.0],
                   help="the oracle's inter-token gap(s); several: one table row each")
    p.add_argument("--workers", type=int, default=1, help="load-generator processes")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--minimal", action="store_true",
                   help="measure a minimal asyncio client instead of ours")
    p.add_argument("--replay", action="store_true",
                   help="our client against fake transports: its own code only")
    p.add_argument("--with-minimal", action="store_true",
                   help="measure ours and the minimal client, one after the other, per ITL")
    p.add_argument("--transports", action="store_true",
                   help="read plain-TCP connections through asyncio transports, as TLS ones "
                        "are, instead of the client's epoll poller")
    args = p.parse_args()
    if args.transports:  # here and in load workers
        os.environ["LLMPERF_HTTP_POLLER"] = "0"
        http_client.USE_POLLER = False
    who = "minimal" if args.minimal else "replay" if args.replay else "ours"
    names = {"ours": "client", "minimal": "minimal asyncio client",
             "replay": "client (replayed, no kernel or network)"}
    rows = []
    for itl in args.itl_ms:
        row = {w: measure(args, itl, w) for w in ([who, "minimal"] if args.with_minimal
                                                  else [who])}
        rows.append((itl, row))
        if len(args.itl_ms) == 1 and not args.with_minimal:
            m = row[who]
            print(f"{names[who]} CPU per streamed token: {m['us']:.1f} us/token (median of "
                  f"{args.repeat}: {', '.join(f'{u:.1f}' for u in m['runs'])}); concurrency "
                  f"{args.concurrency}, workers {args.workers}, {os.cpu_count()} cores, "
                  f"1-min load {os.getloadavg()[0]:.1f}")
            return
    offered = "offered tokens/s"
    head = f"| ITL ms | {offered} | {names[who]}: us/token | achieved tokens/s | client CPU share |"
    if args.with_minimal:
        head += " minimal client: us/token |"
    print(head)
    print("|" + "---:|" * (head.count("|") - 1))
    for itl, row in rows:
        m = row[who]
        line = (f"| {itl:g} | {args.concurrency * 1000 / itl:.0f} | {m['us']:.1f} | "
                f"{m['tps']:.0f} | {m['share']:.0%} |")
        if args.with_minimal:
            line += f" {row['minimal']['us']:.1f} |"
        print(line)
    print(f"concurrency {args.concurrency}, workers {args.workers}, {os.cpu_count()} cores, "
          f"1-min load {os.getloadavg()[0]:.1f}, median of {args.repeat} per cell")


if __name__ == "__main__":
    main()
