"""Runs a workload against an engine with asyncio and records per-request timestamps.

Closed loop: ``concurrency`` workers, each sending its next request when the last one ends.
Open loop: arrivals at ``rate`` per second (Poisson, or gamma with ``burstiness``) from a seed,
optionally capped at ``concurrency`` in flight; the time a request waited for a free slot is
recorded apart from its latency (``scheduled_ns`` is when it was due, ``send_ns`` when it went).
Warm-up requests run first and are excluded from the measured window. Every result carries the
measured window, the achieved against the asked rate, the event loop's lag and how late the
client dispatched requests, and a warning when it fell behind.

The send time is stamped before ``engine.generate`` is called; an engine that knows when its
request's bytes actually left calls ``on_chunk(t_ns, 0)`` (zero tokens) to move it there.

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
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.base import Engine, EngineError, GenerationParams, RequestError
from .metrics import NS_PER_MS, RequestRecord
from .workload import Prompt, Workload, arrival_offsets_s

Progress = Callable[[int, int], None]
Window = tuple[Callable[[], None], Callable[[], None]]
# Prompts and records by request index: the whole run's lists, or a worker's share of them.
Prompts = Sequence[Prompt] | Mapping[int, Prompt]
Records = list[RequestRecord] | dict[int, RequestRecord]


@dataclass
class LoadResult:
    records: list[RequestRecord]
    client: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class _LagMonitor:
    """Measures how late the event loop wakes up: a client that lags distorts its numbers."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.lags_ns: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        while True:
            t = time.perf_counter_ns()
            await asyncio.sleep(self.interval_s)
            self.lags_ns.append(max(0, time.perf_counter_ns() - t - interval_ns))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> dict[str, float | None]:
        """The lag's p50, p99 and maximum in ms (None when the loop was never sampled)."""
        lags = np.asarray(self.lags_ns, dtype=float) / NS_PER_MS
        return {
            "loop_lag_p50_ms": float(np.percentile(lags, 50)) if lags.size else None,
            "loop_lag_p99_ms": float(np.percentile(lags, 99)) if lags.size else None,
            "loop_lag_max_ms": float(lags.max()) if lags.size else None,
        }


async def _one(
    engine: Engine,
    prompt: Prompt,
    params: GenerationParams,
    record: RequestRecord,
    t0: int,
) -> None:
    chunk_ns = record.chunk_ns
    chunk_tokens = record.chunk_tokens

    def on_chunk(t_ns: int, n_tokens: int) -> None:
        if n_tokens == 0:  # an engine that knows when its request's bytes left says so
            record.send_ns = t_ns - t0
            return
        chunk_ns.append(t_ns - t0)
        chunk_tokens.append(n_tokens)

    record.send_ns = time.perf_counter_ns() - t0
    try:
        gen = await engine.generate(prompt, params, on_chunk)
    except RequestError as exc:
        record.error, record.error_kind = str(exc), exc.kind
    except asyncio.CancelledError:
        record.error, record.error_kind = "cancelled", "cancelled"
        raise
    except Exception as exc:  # a run never crashes on one bad request
        record.error, record.error_kind = f"{type(exc).__name__}: {exc}", "exception"
    else:
        record.output_tokens = gen.output_tokens
        record.output_tokens_source = gen.source
        record.client_token_count = gen.client_token_count
        if not chunk_ns:
            record.error, record.error_kind = "no tokens were generated", "empty"
        else:
            short = truncation(params, gen.output_tokens, gen.source, prompt.input_tokens)
            if short:
                record.error, record.error_kind = short, "truncated"
    finally:
        record.done_ns = time.perf_counter_ns() - t0


def truncation(params: GenerationParams, got: int, source: str, prompt_tokens: int
               ) -> str | None:
    """Why an answer is shorter than the exact length the workload asked for (None when it
    is not, or when no exact length was asked: end-of-generation allowed, or a count from
    the chunks alone, which is not a token count)."""
    if not params.ignore_eos or source == "chunks" or got >= params.max_tokens:
        return None
    prompt = f"{prompt_tokens} prompt + " if prompt_tokens else ""
    return (f"truncated: {got} of the {params.max_tokens} output tokens asked for ({source} "
            f"count); {prompt}{params.max_tokens} output tokens may not fit the context "
            "(--llmperf-context-len), or the engine stopped early")


def effective_concurrency(engine: Engine, workload: Workload) -> tuple[int, str | None]:
    cap = engine.max_concurrency
    if cap is not None and workload.concurrency > cap:
        return cap, (
            f"the {engine.kind} engine serves {cap} request(s) at a time in-process: "
            f"concurrency={workload.concurrency} was asked, the run used {cap}. "
            "For concurrent load, benchmark a server: --llmperf-url URL, or "
            "--llmperf-server llama_cpp to start llama.cpp's server on the same model."
        )
    return workload.concurrency, None


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
        from .conversation import run_sessions

        return await run_sessions(engine, workload, progress, window=window)
    concurrency, warning = effective_concurrency(engine, workload)
    warnings = [warning] if warning else []
    t0 = time.perf_counter_ns()
    records = [
        RequestRecord(index=i, prompt_tokens=p.input_tokens, warmup=i < workload.warmup)
        for i, p in enumerate(prompts)
    ]

    def params_for(p: Prompt) -> GenerationParams:
        return _params(workload, p)

    if workers > 1:
        return await _run_workers(engine, prompts, workload, progress, concurrency, warnings,
                                  t0, records, workers, window)
    async with engine.run_context():
        return await _run(engine, prompts, workload, progress, concurrency, warnings, t0,
                          records, params_for, window)


def _params(workload: Workload, p: Prompt) -> GenerationParams:
    return GenerationParams(
        max_tokens=p.output_tokens,
        ignore_eos=workload.ignore_eos,
        temperature=workload.temperature,
        seed=workload.seed,
        chat=workload.chat,
    )


def interleave_problem(workload: Workload) -> str | None:
    """Why a workload cannot be interleaved request by request (None when it can)."""
    if workload.multi_turn:
        return ("request-level interleaving does not apply to multi-turn sessions; use "
                "interleave='runs'")
    if workload.concurrency != 1 or workload.rate is not None or workload.duration_s:
        return ("request-level interleaving needs a sequential workload (concurrency=1, no "
                "rate, no duration_s); use interleave='runs' for concurrent or open-loop load")
    return None


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
    n = len(prompts[0])
    if len(prompts[1]) != n:
        raise ValueError("both engines need the same number of prompts")
    now = time.perf_counter_ns()
    origin = [now, now]  # each engine's t0, moved on by the other engine's time
    records = [[RequestRecord(index=i, prompt_tokens=p.input_tokens, warmup=i < workload.warmup)
                for i, p in enumerate(side)] for side in prompts]
    other_ns = [0, 0]
    monitor = _LagMonitor()
    total = n - workload.warmup

    async def one(side: int, i: int) -> None:
        start = time.perf_counter_ns()
        await _one(engines[side], prompts[side][i], _params(workload, prompts[side][i]),
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


def counter(progress: Progress | None, total: int) -> Callable[[], None]:
    """The tick to call once per finished measured request: reports (done, total)."""
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


def open_loop_cap(engine: Engine, workload: Workload, concurrency: int) -> int | None:
    """The cap on requests in flight of an open loop: the concurrency when the workload or
    the engine sets one, else None (arrivals are never held back)."""
    return concurrency if (workload.concurrency > 1 or engine.max_concurrency) else None


async def _run(
    engine: Engine,
    prompts: Sequence[Prompt],
    workload: Workload,
    progress: Progress | None,
    concurrency: int,
    warnings: list[str],
    t0: int,
    records: list[RequestRecord],
    params_for: Callable[[Prompt], GenerationParams],
    window: Window | None = None,
) -> LoadResult:
    monitor = _LagMonitor()
    monitor.start()
    # Warm-up: closed loop, not measured.
    warm = list(range(workload.warmup))
    await _closed_loop(engine, prompts, records, warm, concurrency, params_for, t0, None, None)

    measured = list(range(workload.warmup, len(prompts)))
    total = len(measured)
    tick = counter(progress, total)

    if window is not None:
        window[0]()
    deadline = (
        time.perf_counter_ns() + int(workload.duration_s * 1e9) if workload.duration_s else None
    )
    measure_start = time.perf_counter_ns()
    offsets = arrival_offsets_s(workload, total)
    dispatch_ns: dict[int, int] = {}
    if offsets is None:
        await _closed_loop(engine, prompts, records, measured, concurrency, params_for, t0,
                           tick, deadline)
    else:
        cap = open_loop_cap(engine, workload, concurrency)
        await _open_loop(engine, prompts, records, measured, offsets, cap, params_for, t0,
                         tick, deadline, dispatch_ns)
    measure_end = time.perf_counter_ns()
    if window is not None:
        window[1]()
    await monitor.stop()
    return _finish(workload, concurrency, warnings, t0, records, total, measure_start,
                   measure_end, dispatch_ns, monitor.summary())


def _finish(workload: Workload, concurrency: int, warnings: list[str], t0: int,
            records: list[RequestRecord], total: int, measure_start: int, measure_end: int,
            dispatch_ns: Mapping[int, int], lag_summary: Mapping[str, float | None],
            extra: Mapping[str, Any] | None = None,
            arrivals: Callable[[RequestRecord], bool] | None = None) -> LoadResult:
    """The run's records and its client record (rates, window, lags, delays, warnings).
    ``arrivals``: which sent records the open loop's rate counts (default all; multi-turn
    sessions: their first turns)."""
    sent = [r for r in records if not r.warmup and r.done_ns is not None]
    # Requests never sent (duration limit) are dropped from the record list entirely.
    records = [r for r in records if r.warmup or r.done_ns is not None]
    window_s = (measure_end - measure_start) / 1e9
    sends = sorted(r.send_ns for r in sent if arrivals is None or arrivals(r))
    # Achieved rate over the span of the sends (n-1 gaps), comparable with the asked rate.
    send_span_s = (sends[-1] - sends[0]) / 1e9 if len(sends) > 1 else 0.0
    client: dict[str, Any] = {
        "concurrency": concurrency,
        "asked_concurrency": workload.concurrency,
        "asked_rate_rps": workload.rate,
        "arrival": workload.arrival if workload.rate is not None else "closed",
        "achieved_send_rate_rps": ((len(sends) - 1) / send_span_s) if send_span_s > 0 else None,
        "scheduled_rate_rps": _scheduled_rate(sent),
        "t0_ns": t0,  # the run's origin on the monotonic clock (to align with server logs)
        "measure_start_s": (measure_start - t0) / 1e9,
        "measure_end_s": (measure_end - t0) / 1e9,
        "measured_window_s": window_s,
        **lag_summary,
        "not_sent": total - len(sent),
        **(extra or {}),
    }
    # Open loop: how late the client dispatched each request against its schedule (client lag),
    # and, separately, how long a request then waited for a free slot under the concurrency cap.
    delays = [(dispatch_ns[r.index] - t0 - r.scheduled_ns) / NS_PER_MS
              for r in sent if r.scheduled_ns is not None and r.index in dispatch_ns]
    if delays:
        client["send_delay_p50_ms"] = float(np.percentile(delays, 50))
        client["send_delay_p99_ms"] = float(np.percentile(delays, 99))
    queued = [(r.send_ns - (dispatch_ns[r.index] - t0)) / NS_PER_MS
              for r in sent if r.index in dispatch_ns]
    if queued:
        client["queue_wait_p50_ms"] = float(np.percentile(queued, 50))
        client["queue_wait_p99_ms"] = float(np.percentile(queued, 99))
        client["queue_wait_max_ms"] = float(np.max(queued))
    warnings.extend(rate_warnings(client))
    return LoadResult(records=records, client=client, warnings=warnings)


def _scheduled_rate(sent: Sequence[RequestRecord]) -> float | None:
    """The rate of the seeded schedule itself (a short Poisson sample differs from the asked)."""
    due = sorted(r.scheduled_ns for r in sent if r.scheduled_ns is not None)
    span = (due[-1] - due[0]) / 1e9 if len(due) > 1 else 0.0
    return (len(due) - 1) / span if span > 0 else None


def rate_warnings(client: dict[str, Any]) -> list[str]:
    """A visible warning when an open-loop run did not send on its schedule."""
    asked, got = client.get("asked_rate_rps"), client.get("achieved_send_rate_rps")
    target = client.get("scheduled_rate_rps") or asked
    out = []
    if asked and got and target and got < 0.9 * target:
        why = (" (the concurrency cap queued requests: see queue_wait_*_ms)"
               if (client.get("queue_wait_p50_ms") or 0) > 1 else " (the client fell behind)")
        out.append(f"asked for {asked:g} requests/s, sent {got:.3g}/s{why}")
    return out


async def _closed_loop(
    engine: Engine,
    prompts: Prompts,
    records: Records,
    indices: list[int],
    concurrency: int,
    params_for: Callable[[Prompt], GenerationParams],
    t0: int,
    tick: Callable[[], None] | None,
    deadline: int | None,
) -> None:
    async def one(i: int) -> None:
        await _one(engine, prompts[i], params_for(prompts[i]), records[i], t0)
        if tick is not None:
            tick()

    await drain(indices, concurrency, deadline, one)


async def drain(indices: Sequence[int], concurrency: int, deadline: int | None,
                run: Callable[[int], Awaitable[None]]) -> None:
    """A closed loop: ``run(i)`` for each index in order, ``concurrency`` at a time, none
    started at or after ``deadline`` (perf_counter_ns)."""
    queue = list(reversed(indices))

    async def worker() -> None:
        while queue:
            if deadline is not None and time.perf_counter_ns() >= deadline:
                return
            await run(queue.pop())

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(indices)))))


async def _open_loop(
    engine: Engine,
    prompts: Prompts,
    records: Records,
    indices: list[int],
    offsets_s: list[float],
    cap: int | None,
    params_for: Callable[[Prompt], GenerationParams],
    t0: int,
    tick: Callable[[], None] | None,
    deadline: int | None,
    dispatch_ns: dict[int, int],
    start: int | None = None,
) -> None:
    sem = asyncio.Semaphore(cap) if cap else None

    async def send(i: int, due_ns: int) -> None:
        dispatch_ns[i] = time.perf_counter_ns()
        records[i].scheduled_ns = due_ns - t0
        if sem is not None:
            async with sem:  # time spent here is client-side queueing: send_ns - scheduled_ns
                await _one(engine, prompts[i], params_for(prompts[i]), records[i], t0)
        else:
            await _one(engine, prompts[i], params_for(prompts[i]), records[i], t0)
        if tick is not None:
            tick()

    await arrive(indices, offsets_s, deadline, send, start)


async def arrive(indices: Sequence[int], offsets_s: Sequence[float], deadline: int | None,
                 run: Callable[[int, int], Coroutine[Any, Any, None]],
                 start: int | None = None) -> None:
    """An open loop: ``run(i, due_ns)`` started for each index at ``start`` (perf_counter_ns,
    default now) plus its offset in seconds, whatever is still running; none due at or after
    ``deadline``. Returns when every one started has finished."""
    start = time.perf_counter_ns() if start is None else start
    tasks = []
    for i, offset in zip(indices, offsets_s, strict=True):
        due = start + int(offset * 1e9)
        if deadline is not None and due >= deadline:
            break
        delay = (due - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(run(i, due)))
    await asyncio.gather(*tasks)


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
    engine: Engine,
    prompts: Sequence[Prompt],
    workload: Workload,
    progress: Progress | None,
    concurrency: int,
    warnings: list[str],
    t0: int,
    records: list[RequestRecord],
    workers: int,
    window: Window | None,
) -> LoadResult:
    problem = shared_clock_problem()
    if problem:
        raise EngineError(problem)
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
    monitor = _LagMonitor()
    monitor.lags_ns = lags
    return _finish(workload, concurrency, warnings, t0, records, total, measure_start,
                   measure_end, dispatch_ns, monitor.summary(),
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
    wl = share.workload

    def params_for(p: Prompt) -> GenerationParams:
        return _params(wl, p)

    def tick() -> None:
        conn.send(("tick",))

    monitor = _LagMonitor()
    dispatch_ns: dict[int, int] = {}
    async with engine.run_context():
        monitor.start()
        await _closed_loop(engine, share.prompts, records, share.warm, share.concurrency,
                           params_for, share.t0, None, None)
        conn.send(("ready",))
        _, start, deadline = await asyncio.to_thread(conn.recv)
        if share.offsets is None:
            await _closed_loop(engine, share.prompts, records, share.measured,
                               share.concurrency, params_for, share.t0, tick, deadline)
        else:
            await _open_loop(engine, share.prompts, records, share.measured, share.offsets,
                             share.cap, params_for, share.t0, tick, deadline, dispatch_ns,
                             start)
        await monitor.stop()
    conn.send(("done", {
        "records": [records[i].to_dict() for i in (*share.warm, *share.measured)
                    if i in records],
        "dispatch_ns": dispatch_ns,
        "lags_ns": monitor.lags_ns,
        "cpu_s": time.process_time(),  # the whole process's, start-up included
    }))
