"""The scheduler core: when each job of a run starts, and what the client saw while it ran.

A *job* is one single request (run/loadgen.py) or one multi-turn session
(run/conversation.py); both run on this one core:

- ``Schedule.run``: warm-up jobs first (closed loop, unmeasured), then the measured ones,
  closed loop (``concurrency`` workers, each starting its next job when the last one ends) or
  open loop (arrivals at ``rate`` per second from the seeded schedule,
  ``workload.arrival_offsets_s``, optionally capped at ``concurrency`` in flight), none started
  after ``duration_s``; the event loop's lag is sampled throughout (``LagMonitor``).
- ``run_jobs``: one phase of that (a load-worker process runs its share with it).
- ``send_one``: one request, stamped on the client's monotonic clock (``RequestRecord``).
- ``Schedule.finish``: the run's records and its client record: the measured window, the
  achieved against the asked rate, the loop's lag, how late the client dispatched jobs and
  how long they queued for a slot, and a warning when it fell behind.

The send time is stamped before ``engine.generate`` is called; an engine that knows when its
request's bytes actually left calls ``on_chunk(t_ns, 0)`` (zero tokens) to move it there.
An open-loop job's due time is recorded apart from its latency (``scheduled_ns`` is when it
was due, ``send_ns`` when it went).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.base import Engine, GenerationParams, Prompt, RequestError, UnsupportedError
from .fingerprint import of_output
from .metrics import NS_PER_MS, RequestRecord
from .workload import Workload, arrival_offsets_s

Progress = Callable[[int, int], None]
# Called at the edges of the measured window (start, stop): energy counters, run/energy.py.
Window = tuple[Callable[[], None], Callable[[], None]]


@dataclass
class LoadResult:
    records: list[RequestRecord]
    client: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Phase:
    """What a job is told about the phase it runs in."""

    deadline: int | None = None  # perf_counter_ns: no new request at or after it
    tick: Callable[[], None] | None = None  # once per finished measured request (not warm-up)


# A job: ``job(i, due_ns, phase)`` runs job ``i``; ``due_ns`` is when an open loop wanted it
# started (perf_counter_ns), None in a closed loop.
Job = Callable[[int, int | None, Phase], Awaitable[None]]


@dataclass
class Measurement:
    """The measured phase as the scheduler saw it (perf_counter_ns)."""

    start_ns: int
    end_ns: int
    dispatch_ns: dict[int, int]  # open loop: when each record's job was started, by index
    lag: Mapping[str, float | None]  # LagMonitor.summary()


class LagMonitor:
    """Measures how late the event loop wakes up: a client that lags distorts its numbers.

    Work the run itself does on the loop between its phases, with no request in flight (the
    server's metrics scraped and the energy counters read at the measured window's edges: a
    full vLLM ``/metrics`` takes tens of ms), goes inside ``paused()``: the one sample it
    delays is dropped, since no timestamp could be late for it. Counting it made a served run
    at concurrency 1 warn of a 52 ms lag while its TTFT p95 was 7 ms."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.lags_ns: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._pauses = 0  # paused() sections entered so far

    async def _loop(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        while True:
            t, pauses = time.perf_counter_ns(), self._pauses
            await asyncio.sleep(self.interval_s)
            if self._pauses == pauses:  # else the loop was blocked on purpose: not lag
                self.lags_ns.append(max(0, time.perf_counter_ns() - t - interval_ns))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Blocking work between phases, with nothing in flight: not counted as lag."""
        self._pauses += 1
        try:
            yield
        finally:
            self._pauses += 1

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


def generation_params(workload: Workload, prompt: Prompt,
                      model: str | None = None) -> GenerationParams:
    """What the engine is asked for one prompt of the workload (``model``: its model in the
    workload's mix, ``Workload.model_of``)."""
    return GenerationParams(
        max_tokens=prompt.output_tokens,
        ignore_eos=workload.ignore_eos,
        temperature=workload.temperature,
        seed=workload.seed,
        chat=workload.chat,
        params=workload.params,
        model=model,
    )


async def send_one(
    engine: Engine,
    prompt: Prompt,
    params: GenerationParams,
    record: RequestRecord,
    t0: int,
) -> None:
    """Send one request and fill its record: send time, token-bearing chunks, completion,
    the engine's token count, or why it failed (a run never crashes on one bad request)."""
    chunk_ns = record.chunk_ns
    chunk_tokens = record.chunk_tokens

    def on_chunk(t_ns: int, n_tokens: int) -> None:
        if n_tokens == 0:  # an engine that knows when its request's bytes left says so
            record.send_ns = t_ns - t0
            return
        chunk_ns.append(t_ns - t0)
        chunk_tokens.append(n_tokens)

    record.asked_output_tokens = params.max_tokens
    record.send_ns = time.perf_counter_ns() - t0
    gen = None
    try:
        with failure_recorded(record):
            gen = await engine.generate(prompt, params, on_chunk)
    finally:
        record.done_ns = time.perf_counter_ns() - t0
    if gen is not None:
        record.output_tokens = gen.output_tokens
        record.output_tokens_source = gen.source
        record.client_token_count = gen.client_token_count
        # Reasoning and answer phases (issue 24; engines/reasoning.py).
        record.reasoning_chunks = gen.reasoning_chunks
        record.reasoning_tokens = gen.reasoning_tokens
        record.reasoning_tokens_source = gen.reasoning_tokens_source
        if params.temperature == 0:  # greedy: the answer is fingerprinted (issue 25)
            printed = of_output(gen.token_ids, gen.text)
            if printed is not None:
                record.output_digest, record.output_basis = printed.digest, printed.basis
                record.output_units, record.output_marks = printed.units, list(printed.marks)
        if not chunk_ns:
            record.error, record.error_kind = "no tokens were generated", "empty"
        else:
            short = truncation(params, gen.output_tokens, gen.source, prompt.input_tokens)
            if short:
                record.error, record.error_kind = short, "truncated"


@contextlib.contextmanager
def failure_recorded(record: RequestRecord) -> Iterator[None]:
    """Around one request's call to the engine: a failure is recorded on ``record`` (its
    message and kind: the RequestError's, "unsupported", or "exception" for anything else)
    instead of raised, since a run never crashes on one bad request; a cancellation is
    recorded and goes on up."""
    try:
        yield
    except RequestError as exc:
        record.error, record.error_kind = str(exc), exc.kind
    except UnsupportedError as exc:
        record.error, record.error_kind = str(exc), "unsupported"
    except asyncio.CancelledError:
        record.error, record.error_kind = "cancelled", "cancelled"
        raise
    except Exception as exc:  # a run never crashes on one bad request
        record.error, record.error_kind = f"{type(exc).__name__}: {exc}", "exception"


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


def open_loop_cap(engine: Engine, workload: Workload, concurrency: int) -> int | None:
    """The cap on requests in flight of an open loop: the concurrency when the workload or
    the engine sets one, else None (arrivals are never held back)."""
    return concurrency if (workload.concurrency > 1 or engine.max_concurrency) else None


def counter(progress: Progress | None, total: int) -> Callable[[], None]:
    """The tick to call once per finished measured request: reports (done, total)."""
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


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


async def run_jobs(job: Job, indices: Sequence[int], concurrency: int, phase: Phase, *,
                   offsets_s: Sequence[float] | None = None, cap: int | None = None,
                   dispatch_ns: dict[int, int] | None = None, start: int | None = None) -> None:
    """One phase: the jobs closed-loop, ``concurrency`` at a time, or with ``offsets_s``
    open-loop from ``start`` (default now), at most ``cap`` in flight (None: no cap; the
    wait for a slot is the job's queueing), ``dispatch_ns[i]`` stamped when job i started."""
    if offsets_s is None:
        async def closed(i: int) -> None:
            await job(i, None, phase)

        await drain(indices, concurrency, phase.deadline, closed)
        return
    slot = asyncio.Semaphore(cap) if cap else None

    async def send(i: int, due_ns: int) -> None:
        if dispatch_ns is not None:
            dispatch_ns[i] = time.perf_counter_ns()
        if slot is None:
            await job(i, due_ns, phase)
            return
        async with slot:  # time spent here is client-side queueing: send_ns - scheduled_ns
            await job(i, due_ns, phase)

    await arrive(indices, offsets_s, phase.deadline, send, start)


class Schedule:
    """One run on one engine: the concurrency it can have, its warnings, its origin ``t0``
    (every record's times are relative to it), and the steps every run takes."""

    def __init__(self, engine: Engine, workload: Workload) -> None:
        self.engine = engine
        self.workload = workload
        self.concurrency, warning = effective_concurrency(engine, workload)
        self.warnings = [warning] if warning else []
        self.t0 = time.perf_counter_ns()

    async def run(self, job: Job, warm: Sequence[int], measured: Sequence[int],
                  tick: Callable[[], None], window: Window | None = None) -> Measurement:
        """In the engine's run context: the warm-up jobs (closed loop), then the measured
        ones, closed or open loop as the workload says; ``window`` called at the edges of
        the measured phase."""
        w = self.workload
        monitor = LagMonitor()
        dispatch_ns: dict[int, int] = {}
        async with self.engine.run_context():
            monitor.start()
            await run_jobs(job, warm, self.concurrency, Phase())
            if window is not None:
                with monitor.paused():
                    window[0]()
            start = time.perf_counter_ns()
            deadline = start + int(w.duration_s * 1e9) if w.duration_s else None
            offsets = arrival_offsets_s(w, len(measured))
            await run_jobs(job, measured, self.concurrency, Phase(deadline, tick),
                           offsets_s=offsets, dispatch_ns=dispatch_ns,
                           cap=open_loop_cap(self.engine, w, self.concurrency))
            end = time.perf_counter_ns()
            if window is not None:
                with monitor.paused():
                    window[1]()
            await monitor.stop()
        return Measurement(start, end, dispatch_ns, monitor.summary())

    def finish(self, records: list[RequestRecord], total: int, measurement: Measurement,
               extra: Mapping[str, Any] | None = None,
               arrivals: Callable[[RequestRecord], bool] | None = None) -> LoadResult:
        """The run's records and its client record (rates, window, lags, delays, warnings).
        ``total``: the measured requests asked for; ``arrivals``: which sent records the open
        loop's rate counts (default all; multi-turn sessions: their first turns)."""
        workload, t0, m = self.workload, self.t0, measurement
        dispatch_ns = m.dispatch_ns
        sent = [r for r in records if not r.warmup and r.done_ns is not None]
        # Requests never sent (duration limit) are dropped from the record list entirely.
        records = [r for r in records if r.warmup or r.done_ns is not None]
        window_s = (m.end_ns - m.start_ns) / 1e9
        sends = sorted(r.send_ns for r in sent if arrivals is None or arrivals(r))
        # Achieved rate over the span of the sends (n-1 gaps), comparable with the asked rate.
        send_span_s = (sends[-1] - sends[0]) / 1e9 if len(sends) > 1 else 0.0
        client: dict[str, Any] = {
            "concurrency": self.concurrency,
            "asked_concurrency": workload.concurrency,
            "asked_rate_rps": workload.rate,
            "arrival": ("trace" if workload.trace else workload.arrival
                        if workload.rate is not None else "closed"),
            "achieved_send_rate_rps": ((len(sends) - 1) / send_span_s) if send_span_s > 0
            else None,
            "scheduled_rate_rps": _scheduled_rate(sent),
            "t0_ns": t0,  # the run's origin on the monotonic clock (to align with server logs)
            "measure_start_s": (m.start_ns - t0) / 1e9,
            "measure_end_s": (m.end_ns - t0) / 1e9,
            "measured_window_s": window_s,
            **m.lag,
            "not_sent": total - len(sent),
            **(extra or {}),
        }
        # Open loop: how late the client dispatched each request against its schedule (client
        # lag), and, separately, how long a request then waited for a free slot under the
        # concurrency cap.
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
        warnings = [*self.warnings, *rate_warnings(client)]
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
