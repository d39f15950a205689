"""Runs a workload against an engine with asyncio and records per-request timestamps.

Each request is a job of the scheduler core (run/schedule.py: closed or open loop, warm-up
first, the event loop's lag, the client record); a multi-turn workload runs its sessions on
the same core (run/conversation.py). Closed loop: ``concurrency`` workers, each sending its
next request when the last one ends. Open loop: arrivals at ``rate`` per second (Poisson, or
gamma with ``burstiness``) from a seed, optionally capped at ``concurrency`` in flight.

``workers=N`` (``--llmperf-load-workers``) spreads a run's connections over N processes, for
loads one Python process cannot keep up with: each process makes its own engine from the
engine's ``worker_spec()`` (the HTTP engine has one; in-process engines cannot be split),
runs its share of the concurrency (and of an open loop's arrivals, on one shared schedule),
its share of the warm-up, then, once every process is ready, its share of the measured
requests. Every timestamp is ``time.perf_counter_ns``, which on Linux is
``clock_gettime(CLOCK_MONOTONIC)``: one clock for every process of the machine, so each
process's records are on the parent's timeline (the same ``t0``) and merge into one record
list as if one process had made them. The event-loop lag is measured in every process and
summarised over all of them.

``window`` (start, stop): called at the edges of the measured window (energy counters,
run/energy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engines.base import Engine, EngineError, Prompt
from .conversation import run_sessions
from .cpu import usable_cores
from .embeddings import check_engine as check_embeddings
from .embeddings import send_embedding
from .metrics import RequestRecord
from .schedule import (
    Job,
    LagMonitor,
    Measurement,
    Phase,
    Schedule,
    Window,
    counter,
    generation_params,
    open_loop_cap,
    run_jobs,
    send_one,
)
from .schedule import LoadResult as LoadResult
from .schedule import Progress as Progress
from .schedule import truncation as truncation
from .workload import Workload, arrival_offsets_s

# Prompts and records by request index: the whole run's lists, or a worker's share of them.
Prompts = Sequence[Prompt] | Mapping[int, Prompt]
Records = list[RequestRecord] | dict[int, RequestRecord]


async def run_load(
    engine: Engine,
    prompts: Sequence[Prompt],
    workload: Workload,
    progress: Progress | None = None,
    *,
    workers: int = 1,
    window: Window | None = None,
) -> LoadResult:
    """Send warm-up requests, then the measured ones, closed- or open-loop (over ``workers``
    processes, see the module docstring). A multi-turn workload runs its sessions
    (run/conversation.py; ``prompts`` unused: they are built from the answers)."""
    if workload.multi_turn:
        if workers > 1:
            raise EngineError("--llmperf-load-workers: multi-turn sessions run in one process")
        return await run_sessions(engine, workload, progress, window=window)
    if workload.embeddings:  # issue 24, item 6: one line when the engine serves none
        check_embeddings(engine)
    schedule = Schedule(engine, workload)
    records = [
        RequestRecord(index=i, prompt_tokens=p.input_tokens, warmup=i < workload.warmup)
        for i, p in enumerate(prompts)
    ]
    if workers > 1:
        return await _run_workers(schedule, prompts, progress, records, workers, window)
    warm = list(range(workload.warmup))
    measured = list(range(workload.warmup, len(prompts)))
    job = request_job(engine, workload, prompts, records, schedule.t0)
    m = await schedule.run(job, warm, measured, counter(progress, len(measured)), window)
    return schedule.finish(records, len(measured), m)


def request_job(engine: Engine, workload: Workload, prompts: Prompts, records: Records,
                t0: int) -> Job:
    """Request ``i`` as a scheduler job: sent with the workload's parameters, into
    ``records[i]`` (its due time too, in an open loop)."""
    async def job(i: int, due_ns: int | None, phase: Phase) -> None:
        if due_ns is not None:
            records[i].scheduled_ns = due_ns - t0
        if workload.embeddings:  # issue 24, item 6 (run/embeddings.py)
            await send_embedding(engine, prompts[i], records[i], t0)
        else:
            model = workload.model_of(i)  # a model mix (Workload.models)
            records[i].model = model
            await send_one(engine, prompts[i], generation_params(workload, prompts[i], model),
                           records[i], t0)
        if phase.tick is not None:
            phase.tick()

    return job


def interleave_problem(workload: Workload) -> str | None:
    """Why a workload cannot be interleaved request by request (None when it can)."""
    if workload.multi_turn:
        return ("request-level interleaving does not apply to multi-turn sessions; use "
                "interleave='runs'")
    if workload.concurrency != 1 or workload.rate is not None or workload.duration_s:
        return ("request-level interleaving needs a sequential workload (concurrency=1, no "
                "rate, no duration_s); use interleave='runs' for concurrent or open-loop load")
    return None


@dataclass(frozen=True)
class HostLoad:
    """What an engine keeps busy on this host: ``what`` it is, in words, and its threads
    (None: unknown, e.g. an in-process vLLM engine or a server the session started)."""

    what: str
    threads: int | None = None


# Engines that run on this host with a thread count they do not report.
_IN_PROCESS = {"vllm": "an in-process vLLM engine", "trtllm": "an in-process TensorRT-LLM engine"}


def host_load(info: Mapping[str, Any]) -> HostLoad | None:
    """What the engine of this ``info()`` keeps busy on this host: llama.cpp's ``n_threads``
    (any engine's ``settings.n_threads``); an in-process vLLM or TensorRT-LLM engine, or a
    server the session started (``info()['server']``), with their threads unknown; None for
    what runs elsewhere or says nothing (a server at a URL, an engine without threads)."""
    settings = info.get("settings")
    threads = settings.get("n_threads") if isinstance(settings, Mapping) else None
    kind = str(info.get("kind") or "engine")
    if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        return HostLoad(f"{kind} with {threads} thread(s)", threads)
    if kind in _IN_PROCESS:
        return HostLoad(_IN_PROCESS[kind])
    server = info.get("server")
    if isinstance(server, Mapping):
        return HostLoad(f"a {server.get('recipe') or 'model'} server started on this host")
    return None


# Up to this many usable cores, two engines of unknown thread counts (in-process vLLM, a
# started server) cannot be busy at once: two vLLM engines on 2 cores kept 5 runnable threads
# in-process, 8-17 served, and a served concurrency-1 test's TTFT p95 reached 989 ms.
SMALL_HOST_CORES = 2


def choose_interleave(workload: Workload, loads: tuple[HostLoad | None, HostLoad | None],
                      cores: int | None = None, asked: str = "auto",
                      one_engine: bool = False) -> tuple[str, str]:
    """How a paired A/B interleaves, and why, in words: ("requests" | "runs", reason).

    ``asked`` "requests" or "runs" is taken as asked (a workload that cannot take turns
    request by request is the caller's error, ``interleave_problem``). "auto": by runs when
    the workload cannot take turns request by request, or when the host cannot hold both
    engines busy at once: their threads (``loads``, from ``host_load``) together exceed the
    ``cores`` (default ``usable_cores()``), or, their threads unknown, both run on a host of
    at most ``SMALL_HOST_CORES`` cores; else by requests. ``one_engine``: A and B are the
    same engine (an A/A of one instance), which shares nothing.
    """
    if asked in ("requests", "runs"):
        return asked, f"asked for (interleave={asked!r})"
    if interleave_problem(workload):
        what = "multi-turn sessions" if workload.multi_turn else "concurrent or open-loop load"
        return "runs", f"{what} cannot take turns request by request"
    a, b = loads
    if one_engine or a is None or b is None:
        return "requests", "a sequential workload, A and B taking turns request by request"
    if a.threads is not None and b.threads is not None:
        # Engines that compute only while they answer (llama.cpp): taking turns request by
        # request keeps one of them busy at a time, whatever their thread counts.
        return "requests", (f"a sequential workload: A ({a.threads} threads) and B "
                            f"({b.threads}) take turns, one busy at a time")
    n = usable_cores() if cores is None else cores
    if n <= SMALL_HOST_CORES:
        return "runs", f"{n} core(s) cannot run A ({a.what}) and B ({b.what}) side by side"
    return "requests", (f"a sequential workload, and {n} cores hold A ({a.what}) and B "
                        f"({b.what}) side by side")


async def run_interleaved_load(
    engines: tuple[Engine, Engine],
    prompts: tuple[Sequence[Prompt], Sequence[Prompt]],
    workload: Workload,
    *,
    b_first: bool = False,
    progress: Progress | None = None,
) -> tuple[LoadResult, LoadResult]:
    """Run one sequential workload on two engines at once, request by request: A B B A A B ...

    Both engines see the machine in the same state within a second of each other, so a slow
    drift of the machine (other jobs, clock changes) hits both sides of the comparison alike.
    Each engine's records live on that engine's own timeline: the time the other engine spent
    is taken out (its origin moves forward by it), so an engine's duration, and its tokens/s,
    are what it would have shown running its requests back to back. Warm-up requests of both
    engines run first (A then B), unmeasured.
    """
    problem = interleave_problem(workload)
    if problem:
        raise ValueError(problem)
    if workload.embeddings:  # issue 24, item 6
        for engine in engines:
            check_embeddings(engine)
    n = len(prompts[0])
    if len(prompts[1]) != n:
        raise ValueError("both engines need the same number of prompts")
    now = time.perf_counter_ns()
    origin = [now, now]  # each engine's t0, moved on by the other engine's time
    records = [[RequestRecord(index=i, prompt_tokens=p.input_tokens, warmup=i < workload.warmup)
                for i, p in enumerate(side)] for side in prompts]
    other_ns = [0, 0]
    monitor = LagMonitor()
    total = n - workload.warmup

    async def one(side: int, i: int) -> None:
        start = time.perf_counter_ns()
        if workload.embeddings:  # issue 24, item 6 (run/embeddings.py)
            await send_embedding(engines[side], prompts[side][i], records[side][i],
                                 origin[side])
        else:
            model = records[side][i].model = workload.model_of(i)  # a model mix
            await send_one(engines[side], prompts[side][i],
                           generation_params(workload, prompts[side][i], model),
                           records[side][i], origin[side])
        spent = time.perf_counter_ns() - start
        origin[1 - side] += spent
        other_ns[1 - side] += spent

    async with contextlib.AsyncExitStack() as stack:
        distinct = [engines[0]] + ([engines[1]] if engines[1] is not engines[0] else [])
        for engine in distinct:  # an A/A comparison may pass the same engine twice
            await stack.enter_async_context(engine.run_context())
        monitor.start()
        for i in range(workload.warmup):
            await one(0, i)
            await one(1, i)
        for k, i in enumerate(range(workload.warmup, n)):
            first = 1 if (k % 2 == 1) != b_first else 0
            await one(first, i)
            await one(1 - first, i)
            if progress is not None:
                progress(k + 1, total)
        await monitor.stop()
    lag_stats = monitor.summary()
    out = []
    for side in (0, 1):
        client: dict[str, Any] = {
            "concurrency": 1,
            "asked_concurrency": 1,
            "asked_rate_rps": None,
            "arrival": "closed",
            "interleaved": True,
            "first": "B" if b_first else "A",
            "other_engine_s": other_ns[side] / 1e9,
            "t0_ns": origin[side],
            **lag_stats,
        }
        out.append(LoadResult(records=records[side], client=client))
    return out[0], out[1]


# --------------------------------------------------------------------------- load workers


@dataclass
class _Share:
    """What one load-worker process runs (pickled to it)."""

    worker: int
    engine_spec: tuple[str, str, dict[str, Any]]  # module, class, keyword arguments
    workload: Workload
    prompts: dict[int, Prompt]
    records: list[dict[str, Any]]
    warm: list[int]
    measured: list[int]
    offsets: list[float] | None  # open loop: each measured request's due time from the start
    concurrency: int
    cap: int | None
    t0: int


def split_concurrency(concurrency: int, workers: int) -> list[int]:
    """Each worker's connections: ``concurrency`` dealt as evenly as it goes (no worker
    without one: at most ``concurrency`` workers)."""
    n = max(1, min(workers, concurrency))
    return [concurrency // n + (1 if i < concurrency % n else 0) for i in range(n)]


def deal(indices: Sequence[int], shares: Sequence[int]) -> list[list[int]]:
    """Requests dealt to workers in proportion to their connections: the k-th request goes
    to the owner of connection slot ``k mod sum(shares)``."""
    owner = [w for w, k in enumerate(shares) for _ in range(k)]
    out: list[list[int]] = [[] for _ in shares]
    for k, i in enumerate(indices):
        out[owner[k % len(owner)]].append(i)
    return out


def shared_clock_problem() -> str | None:
    """Why worker processes cannot share the parent's timeline (None when they can)."""
    info = time.get_clock_info("perf_counter")
    if "CLOCK_MONOTONIC" not in info.implementation:
        return (f"--llmperf-load-workers needs a system-wide monotonic clock; perf_counter is "
                f"{info.implementation} here (Linux only)")
    return None


def _worker_spec(engine: Engine) -> tuple[str, str, dict[str, Any]]:
    spec = getattr(engine, "worker_spec", None)
    if spec is None:
        raise EngineError(
            f"--llmperf-load-workers: the {engine.kind} engine runs in this process and "
            "cannot be split over processes; load workers drive a server (--llmperf-url, "
            "--llmperf-server)")
    return spec()  # type: ignore[no-any-return]


async def _run_workers(
    schedule: Schedule,
    prompts: Sequence[Prompt],
    progress: Progress | None,
    records: list[RequestRecord],
    workers: int,
    window: Window | None,
) -> LoadResult:
    problem = shared_clock_problem()
    if problem:
        raise EngineError(problem)
    engine, workload, concurrency = schedule.engine, schedule.workload, schedule.concurrency
    warnings, t0 = schedule.warnings, schedule.t0
    spec = _worker_spec(engine)
    total = len(prompts) - workload.warmup
    offsets = arrival_offsets_s(workload, total)
    cap_total = open_loop_cap(engine, workload, concurrency)
    if offsets is not None and cap_total is None:
        conc = [1] * workers  # an uncapped open loop: arrivals dealt round-robin
    else:
        conc = split_concurrency(concurrency, workers)
    if len(conc) < workers:
        warnings.append(f"{workers} load workers were asked for {concurrency} connection(s): "
                        f"{len(conc)} used")
    warm = deal(range(workload.warmup), conc)
    measured = deal(range(workload.warmup, len(prompts)), conc)
    due = {i: off for i, off in zip(range(workload.warmup, len(prompts)), offsets or [],
                                    strict=False)}
    ctx = multiprocessing.get_context("forkserver")
    # The fork server imports the client once; each worker forks from it warm.
    ctx.set_forkserver_preload(["pytest_llmperf.run.loadgen", "pytest_llmperf.engines.openai"])
    procs, conns = [], []
    for w, k in enumerate(conc):
        share = _Share(
            worker=w, engine_spec=spec, workload=workload,
            prompts={i: prompts[i] for i in (*warm[w], *measured[w])},
            records=[records[i].to_dict() for i in (*warm[w], *measured[w])],
            warm=warm[w], measured=measured[w],
            offsets=[due[i] for i in measured[w]] if offsets is not None else None,
            concurrency=k, cap=k if cap_total is not None else None, t0=t0)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child, share), daemon=True,
                           name=f"llmperf-load-{w}")
        proc.start()
        child.close()
        procs.append(proc)
        conns.append(parent)
    try:
        await _gather(procs, conns, "ready")
        if window is not None:
            window[0]()
        measure_start = time.perf_counter_ns()
        deadline = (measure_start + int(workload.duration_s * 1e9)
                    if workload.duration_s else None)
        for c in conns:
            c.send(("go", measure_start, deadline))
        results = await _gather(procs, conns, "done", counter(progress, total))
        measure_end = time.perf_counter_ns()
        if window is not None:
            window[1]()
    finally:
        for c in conns:
            c.close()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    lags: list[int] = []
    dispatch_ns: dict[int, int] = {}
    cpu_s = 0.0
    for payload in results:
        cpu_s += float(payload["cpu_s"])
        for d in payload["records"]:
            rec = RequestRecord.from_dict(d)
            records[rec.index] = rec
        dispatch_ns.update({int(k): int(v) for k, v in payload["dispatch_ns"].items()})
        lags.extend(payload["lags_ns"])
    monitor = LagMonitor()
    monitor.lags_ns = lags
    return schedule.finish(records, total,
                           Measurement(measure_start, measure_end, dispatch_ns,
                                       monitor.summary()),
                           {"load_workers": len(conc), "worker_concurrency": conc,
                            "load_workers_cpu_s": round(cpu_s, 4)})


async def _gather(procs: Sequence[Any], conns: list[Any], want: str,
                  tick: Callable[[], None] | None = None) -> list[Any]:
    """Wait until every worker has sent ``want`` (its payload, for "done"); a worker's error
    or death is an EngineError naming it."""
    got: dict[int, Any] = {}
    while len(got) < len(conns):
        ready = multiprocessing.connection.wait(
            [c for w, c in enumerate(conns) if w not in got], timeout=0.02)
        for c in ready:
            w = conns.index(c)
            try:
                msg = conns[w].recv()
            except (EOFError, OSError):
                code = procs[w].exitcode
                raise EngineError(f"load worker {w} ended without its results (exit code "
                                  f"{code})") from None
            if msg[0] == "tick":
                if tick is not None:
                    tick()
            elif msg[0] == "error":
                raise EngineError(f"load worker {w}: {msg[1]}")
            elif msg[0] == want:
                got[w] = msg[1] if len(msg) > 1 else None
        await asyncio.sleep(0)
    return [got[w] for w in range(len(conns))]


def _worker_main(conn: Any, share: _Share) -> None:
    """A load worker's process: make the engine, run the share, send the records back."""
    try:
        module, name, kwargs = share.engine_spec
        engine = getattr(importlib.import_module(module), name)(**kwargs)
        try:
            asyncio.run(_worker(conn, share, engine))
        finally:
            engine.close()
    except BaseException as exc:  # reported to the parent in one line
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _worker(conn: Any, share: _Share, engine: Engine) -> None:
    records = {d["index"]: RequestRecord.from_dict(d) for d in share.records}
    job = request_job(engine, share.workload, share.prompts, records, share.t0)

    def tick() -> None:
        conn.send(("tick",))

    monitor = LagMonitor()
    dispatch_ns: dict[int, int] = {}
    async with engine.run_context():
        monitor.start()
        await run_jobs(job, share.warm, share.concurrency, Phase())
        conn.send(("ready",))
        _, start, deadline = await asyncio.to_thread(conn.recv)
        await run_jobs(job, share.measured, share.concurrency, Phase(deadline, tick),
                       offsets_s=share.offsets, cap=share.cap, dispatch_ns=dispatch_ns,
                       start=start)
        await monitor.stop()
    conn.send(("done", {
        "records": [records[i].to_dict() for i in (*share.warm, *share.measured)
                    if i in records],
        "dispatch_ns": dispatch_ns,
        "lags_ns": monitor.lags_ns,
        "cpu_s": time.process_time(),  # the whole process's, start-up included
    }))
