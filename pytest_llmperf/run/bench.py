"""One benchmark run: prompts -> load generator -> records -> RunResult. No pytest here.

Beside the load, the engine's processes' memory, the GPU, the CPU and the server's own
metrics (``Engine.metrics_snapshot``: before, during and after the run) are sampled."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..engines.base import Engine
from ..engines.server_metrics import ServerMetricsSampler
from ..metric_table import is_embeddings
from .cpu import CPUContention
from .energy import EnergyMeter
from .gpu import GPUSampler
from .loadgen import LoadResult, Progress, run_interleaved_load, run_load
from .memory import PeakRSS
from .metrics import RunResult, summarize, understatement
from .model_metrics import by_model
from .request_params import check_engine
from .testbed import TestbedRecorder
from .trace_cache import mark_records
from .workload import Workload, build_prompts, prompts_digest

T = TypeVar("T")
# What else of this session's was loaded while a run was measured, for the CPU contention
# warning: (what, advice), e.g. ("the A/B's own second engine, B (threads=1), was loaded
# beside A", "..."); the warning then names it instead of blaming another job.
Sharing = tuple[str, str]


def client_warnings(result: RunResult, stamps_on_loop: bool = True) -> list[str]:
    """Warnings about the measurement itself: a lagging client, disagreeing token counts."""
    out: list[str] = []
    s, c = result.summary, result.client
    loop_lag = c.get("loop_lag_p99_ms") or 0.0 if stamps_on_loop else 0.0
    lag = max(loop_lag, c.get("send_delay_p99_ms") or 0.0)
    ttft, what = s.get("ttft_p50_ms"), "a TTFT"
    if ttft is None and is_embeddings(s):  # embeddings (issue 24, item 6): request latency
        ttft, what = s.get("e2e_p50_ms"), "an E2E"
    if ttft and lag > max(5.0, 0.1 * ttft):
        out.append(
            f"the load generator fell behind: event-loop lag / send delay p99 {lag:.1f} ms "
            f"against {what} p50 of {ttft:.1f} ms; latencies include client overhead"
        )
    hidden = understatement(s)
    if hidden:
        out.append(hidden)
    mismatched = [
        r for r in result.samples
        if r.ok and r.client_token_count is not None and r.output_tokens is not None
        and r.client_token_count != r.output_tokens
    ]
    if mismatched:
        r = mismatched[0]
        out.append(
            f"{len(mismatched)} request(s) had a client-side token count that disagrees with the "
            f"{r.output_tokens_source} count (e.g. request {r.index}: "
            f"client {r.client_token_count}, "
            f"{r.output_tokens_source} {r.output_tokens})"
        )
    one_read = [r for r in result.samples if not r.warmup and r.tpot_undefined]
    if one_read:
        multi = sum(1 for r in result.samples if not r.warmup and r.ok and r.n_output >= 2)
        left = ("tpot_* summarise the others" if len(one_read) < multi
                else "tpot_* are undefined (None) for this run")
        out.append(
            f"TPOT undefined in {len(one_read)} of {multi} request(s) of several tokens: "
            f"every token arrived in one read (E2E == TTFT, e.g. request {one_read[0].index}), "
            f"so the client saw no decoding time; {left}"
        )
    errors = Counter(r.error_kind for r in result.samples if not r.warmup and r.error)
    measured = sum(1 for r in result.samples if not r.warmup)
    if errors and sum(errors.values()) == measured:
        first = next(r for r in result.samples if not r.warmup and r.error)
        out.append(f"every request failed ({measured}); first error: {first.error}")
    return out


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from inside a running loop (an async test): then on a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_benchmark(
    engine: Engine, workload: Workload, progress: Progress | None = None, *,
    cost_per_hour: float | None = None, load_workers: int = 1, sharing: Sharing | None = None,
) -> RunResult:
    """One run; ``cost_per_hour`` (USD) gives usd_per_mtok, ``load_workers`` spreads the load
    over processes (loadgen), ``sharing`` names what of this session's was loaded beside the
    engine (``Sharing``). The energy counters (run/energy.py) are read at the edges of the
    measured window."""
    check_engine(engine, workload)
    prompts = build_prompts(engine.tokenizer, workload)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    bed = TestbedRecorder().start()  # the testbed, fingerprinted (issue 25)
    with (PeakRSS(engine.memory_pids()) as rss, GPUSampler(engine.memory_pids()) as gpu,
          CPUContention() as cpu,
          ServerMetricsSampler(engine.metrics_snapshot) as server,
          EnergyMeter() as energy):
        def window_start() -> None:
            energy.start()
            server.window_start()

        def window_stop() -> None:
            energy.stop()
            server.window_stop()

        # Energy and the server's counters cover the measured window, not the warm-up.
        load = _run_coroutine(run_load(engine, prompts, workload, progress,
                                       workers=load_workers,
                                       window=(window_start, window_stop)))
    load.client.update(energy.summary())
    if prompts:  # what was sent, so a comparison sees a changed dataset (verdict/attribution)
        load.client["prompts_digest"] = prompts_digest(prompts)
    load.client["testbed"] = bed.finish()
    return _result(engine, workload, load, started, rss.peak_mb, gpu, cpu, server.figures(),
                   energy_j=energy.joules, cost_per_hour=cost_per_hour, sharing=sharing)


def _result(engine: Engine, workload: Workload, load: LoadResult, started: str,
            peak_rss_mb: float | None, gpu: GPUSampler | None,
            cpu: CPUContention | None = None,
            server: Mapping[str, float | None] | None = None,
            energy_j: float | None = None, cost_per_hour: float | None = None,
            sharing: Sharing | None = None) -> RunResult:
    """A run's records summarized (with the server's own figures, when it has metrics), with
    the client's warnings about its own measurement and about the machine (oversubscribed
    CPUs; GPU memory of the whole device instead of the engine's processes)."""
    mark_records(load.records, workload)  # trace replay: expected cached tokens
    summary = summarize(load.records, slo=workload.slo or None, peak_rss_mb=peak_rss_mb,
                        gpu_mem_mb=gpu.peak_mem_mb if gpu is not None else None,
                        server=server, energy_j=energy_j, cost_per_hour=cost_per_hour)
    result = RunResult(
        summary=summary,
        samples=load.records,
        workload=workload.to_dict(),
        engine=engine.info(),
        # The engine's own warnings first (e.g. the openai engine fell back to no tokenizer).
        warnings=[*getattr(engine, "warnings", ()), *load.warnings],
        started_at=started,
        client=load.client,
        by_model=by_model(load.records, workload.slo or None),
    )
    result.warnings.extend(client_warnings(result, engine.stamps_on_loop))
    if gpu is not None and gpu.peak_mem_mb is not None:
        result.client.update(gpu.summary())
        scope = gpu.warning()
        if scope:
            result.warnings.append(scope)
    if cpu is not None:
        result.client.update(cpu.summary())
        contention = cpu.warning(*sharing) if sharing else cpu.warning()
        if contention:
            result.warnings.append(contention)
    return result


def run_benchmark_interleaved(
    engine_a: Engine,
    engine_b: Engine,
    workload: Workload,
    *,
    b_first: bool = False,
    progress: Progress | None = None,
    sharing: Sharing | None = None,
) -> tuple[RunResult, RunResult]:
    """One run of each engine, made together request by request (see
    ``loadgen.run_interleaved_load``): one pair of a paired A/B comparison. ``sharing``: how
    the CPU contention warning names the two engines side by side (``Sharing``)."""
    check_engine(engine_a, workload)
    check_engine(engine_b, workload)
    prompts = (build_prompts(engine_a.tokenizer, workload),
               build_prompts(engine_b.tokenizer, workload))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    bed = TestbedRecorder().start()  # the testbed, fingerprinted (issue 25)
    # Each engine's server metrics are its own only when the two are different servers.
    with (PeakRSS(engine_a.memory_pids()) as rss_a, PeakRSS(engine_b.memory_pids()) as rss_b,
          GPUSampler([*engine_a.memory_pids(), *engine_b.memory_pids()]) as gpu,
          CPUContention() as cpu,
          ServerMetricsSampler(engine_a.metrics_snapshot) as server_a,
          ServerMetricsSampler(engine_b.metrics_snapshot) as server_b):
        loads = _run_coroutine(run_interleaved_load((engine_a, engine_b), prompts, workload,
                                                    b_first=b_first, progress=progress))
    for load, sent in zip(loads, prompts, strict=True):
        if sent:
            load.client["prompts_digest"] = prompts_digest(sent)
    testbed = bed.finish()
    for load in loads:
        load.client["testbed"] = dict(testbed)
    return (_result(engine_a, workload, loads[0], started, rss_a.peak_mb, gpu, cpu,
                    server_a.figures(), sharing=sharing),
            _result(engine_b, workload, loads[1], started, rss_b.peak_mb, gpu, cpu,
                    server_b.figures(), sharing=sharing))
