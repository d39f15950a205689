"""Per-request records and run summaries.

Pure functions, no I/O. Definitions follow vLLM's serving benchmark (docs/metrics.md):

- TTFT: first token-bearing chunk minus send time.
- E2E: last token-bearing chunk minus send time.
- TPOT: (E2E - TTFT) / (output_tokens - 1); none for one-token requests, and none (undefined,
  not 0) when every token arrived in one read (E2E == TTFT); such requests are counted in
  ``tpot_undefined``.
- ITL: gaps between successive token-bearing chunks, per token: a chunk carrying k tokens
  contributes k gaps of gap/k.
- Percentiles use linear interpolation (numpy's default), as vLLM does.

These formulas live here only: the summary, the capacity search (run/capacity.py), the report
and its plots (report/view.py, report/plots.py) all take a request's latencies from
``request_latency`` / ``latency_series``, from live records or a results file's samples alike.

All times inside a record are integer nanoseconds on the client's monotonic clock
(``time.perf_counter_ns``), relative to the run's start so that they serialise exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..metric_table import (  # noqa: F401 - re-exported: the keys a summary has
    LATENCY_KEYS,
    LATENCY_METRICS,
    PERCENTILES,
    RUN_KEYS,
    SCHEDULE_METRICS,
    SERVER_KEYS,
    SLO_KEYS,
    STATS,
    SUMMARY_KEYS,
)
from .energy import j_per_token, usd_per_mtok
from .reasoning import reasoning_summary
from .trace_cache import trace_figures

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class RecordError(ValueError):
    """A stored request record (a sample in a results or baseline file) with a missing field
    or a field of the wrong type; the message names the field and the value."""


_INT64 = 2**63


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 < value < _INT64


# The type of each RequestRecord field as stored (the annotation's text, "| None" removed);
# a field of another type must add its check here (tests/unit/test_hostile_inputs.py checks).
_FIELD_CHECKS: dict[str, tuple[Any, str]] = {
    "int": (_is_whole, "a whole number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "float": (lambda v: not isinstance(v, bool) and isinstance(v, int | float)
              and -_INT64 < v < _INT64 and math.isfinite(v), "a finite number"),
    "list[int]": (lambda v: isinstance(v, list) and all(_is_whole(x) for x in v),
                  "a list of whole numbers"),
}


@dataclass
class RequestRecord:
    """What one request did, as seen by the client. Times in ns relative to the run start."""

    index: int
    prompt_tokens: int
    warmup: bool = False
    send_ns: int = 0
    scheduled_ns: int | None = None  # when the arrival process wanted it sent (open loop)
    chunk_ns: list[int] = field(default_factory=list)  # arrival of each token-bearing chunk
    chunk_tokens: list[int] = field(default_factory=list)  # tokens carried by each chunk
    done_ns: int | None = None  # stream closed (after the last chunk)
    output_tokens: int | None = None  # authoritative count (engine tokenizer or server usage)
    output_tokens_source: str = "engine"
    client_token_count: int | None = None  # what the client counted, when it differs in kind
    error: str | None = None
    error_kind: str | None = None
    session: int | None = None  # multi-turn: the session (conversation) it belongs to
    turn: int | None = None  # multi-turn: its turn in the session, from 1
    # Reasoning and answer phases (issue 24; run/reasoning.py): the leading token-bearing
    # chunks that carried thinking (the reasoning phase; the answer begins at the next one),
    # the reasoning tokens and where that count came from ("usage", "tokenizer", "chunks");
    # 0 and None for an answer without reasoning.
    reasoning_chunks: int = 0
    reasoning_tokens: int | None = None
    reasoning_tokens_source: str | None = None
    # Length distributions (issue 24): the output length asked for (max_tokens).
    asked_output_tokens: int | None = None
    # Trace replay: the prompt tokens the trace expects in an ideal prefix cache
    # (run/trace_cache.py); None outside a trace replay and for warm-up requests.
    trace_cached_tokens: int | None = None
    # Embeddings (issue 24, item 6): an embedding request. Its one chunk is the answer's
    # arrival, carrying 0 tokens (run/embeddings.py): E2E is the request's latency; it has no
    # TTFT, TPOT or ITL (None, not 0), and prompt_tokens is the engine's input count.
    embedding: bool = False
    # Outputs fingerprint (issue 25, greedy decoding only: run/fingerprint.py): a digest of
    # the answer, what it was taken over ("tokens": the sampled ids; "chars": the text, where
    # the engine streams text), how many of those units, and the prefix hashes that locate
    # the first divergence (verdict/outputs.py).
    output_digest: str | None = None
    output_basis: str | None = None
    output_units: int | None = None
    output_marks: list[int] | None = None
    # Model mixes (Workload.models): the model this request was sent to (None: the engine's).
    model: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.chunk_ns)

    @property
    def due_ns(self) -> int:
        """When the request was due: its schedule in an open loop, else its send time."""
        return self.scheduled_ns if self.scheduled_ns is not None else self.send_ns

    @property
    def ttft_ns(self) -> int | None:
        if self.embedding:  # no first token: the answer is one piece (E2E)
            return None
        return self.chunk_ns[0] - self.send_ns if self.chunk_ns else None

    @property
    def e2e_ns(self) -> int | None:
        return self.chunk_ns[-1] - self.send_ns if self.chunk_ns else None

    @property
    def answer_ns(self) -> int | None:
        """When the first answer (non-reasoning) token arrived: the chunk after the reasoning
        phase (the first chunk when there was none); None when no answer chunk came."""
        first = max(0, self.reasoning_chunks)
        return self.chunk_ns[first] if first < len(self.chunk_ns) else None

    @property
    def ttfa_ns(self) -> int | None:
        """Time to the first answer token (aiperf's TTFO): ``answer_ns`` minus the send time;
        TTFT for an answer without reasoning."""
        answer = self.answer_ns
        return answer - self.send_ns if answer is not None else None

    @property
    def n_output(self) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        return sum(self.chunk_tokens)

    @property
    def tpot_ns(self) -> float | None:
        """(E2E - TTFT) / (tokens - 1); None when undefined: one token, or every token read at
        once (E2E == TTFT: the answer came in one read, so the client saw no decoding time;
        a TPOT of 0 would be a measurement of the client's lag, not of the engine)."""
        n = self.n_output
        if not self.chunk_ns or n < 2 or self.chunk_ns[-1] <= self.chunk_ns[0]:
            return None
        return (self.chunk_ns[-1] - self.chunk_ns[0]) / (n - 1)

    @property
    def tpot_undefined(self) -> bool:
        """A successful answer of several tokens whose TPOT is undefined: all of its tokens
        arrived in one read (E2E == TTFT)."""
        return self.ok and self.n_output >= 2 and self.tpot_ns is None

    def itl_gaps_ns(self) -> list[tuple[float, int]]:
        """The inter-token latencies as (gap per token, tokens) per chunk after the first: a
        chunk carrying k tokens gives k gaps of gap/k, here once with its count k (so that a
        reader of a stored record allocates by the chunks present, not by the count it
        claims)."""
        out: list[tuple[float, int]] = []
        for i in range(1, len(self.chunk_ns)):
            gap = self.chunk_ns[i] - self.chunk_ns[i - 1]
            k = max(1, self.chunk_tokens[i] if i < len(self.chunk_tokens) else 1)
            out.append((gap / k, k))
        return out

    def itl_ns(self) -> list[float]:
        """Per-token inter-token latencies: a chunk carrying k tokens gives k gaps of gap/k."""
        out: list[float] = []
        for gap, k in self.itl_gaps_ns():
            out.extend([gap] * k)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestRecord:
        """A record from its dict (as stored in JSON), every field checked against its
        declared type (unknown keys are ignored); RecordError names the first bad one."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a sample must be an object, not {type(data).__name__}")
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in data:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise RecordError(f"{name} is missing")
                continue
            value = data[name]
            kinds = [k.strip() for k in str(f.type).split("|")]
            if value is None and "None" in kinds:
                values[name] = None
                continue
            (kind,) = [k for k in kinds if k != "None"]
            check, words = _FIELD_CHECKS[kind]
            if not check(value):
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise RecordError(f"{name}={shown} must be {words}")
            values[name] = list(value) if isinstance(value, list) else value
        return cls(**values)


class Latency(NamedTuple):
    """One request's latencies in ms."""

    ttft_ms: float
    tpot_ms: float | None  # None: undefined (a one-token answer, or one read: E2E == TTFT)
    e2e_ms: float


def request_latency(record: RequestRecord, *, from_due: bool = False) -> Latency | None:
    """A request's TTFT, TPOT and E2E in ms (None without a token-bearing chunk).

    ``from_due``: as a user who arrived on schedule waited: TTFT and E2E counted from the
    request's due time (``due_ns``: the open loop's schedule, so time queued in the client
    counts) and E2E up to the stream's close (``done_ns``; None without one). This is what the
    capacity search holds an SLO against; TPOT is the same either way."""
    if not record.chunk_ns or (from_due and record.done_ns is None):
        return None
    start = record.due_ns if from_due else record.send_ns
    end = record.done_ns if from_due and record.done_ns is not None else record.chunk_ns[-1]
    tpot = record.tpot_ns
    return Latency(ttft_ms=(record.chunk_ns[0] - start) / NS_PER_MS,
                   tpot_ms=tpot / NS_PER_MS if tpot is not None else None,
                   e2e_ms=(end - start) / NS_PER_MS)


def latency_series(records: Iterable[RequestRecord],
                   metrics: Sequence[str] = LATENCY_METRICS, *,
                   from_due: bool = False) -> dict[str, list[float]]:
    """The latency samples (ms) of the successful measured requests (warm-up and failed ones
    left out) for each of ``metrics``: "ttft", "tpot" (requests of more than one token) and
    "e2e" one per request (``request_latency``, ``from_due`` as there), "itl" one per token
    (``RequestRecord.itl_ns``)."""
    ok = _measured_ok(records, from_due)
    out: dict[str, list[float]] = {}
    if {"ttft", "tpot", "e2e"} & set(metrics):
        pairs = [(r, x) for r in ok if (x := request_latency(r, from_due=from_due)) is not None]
        lat = [x for _, x in pairs]
        # An embedding has no first token: its E2E only (run/embeddings.py).
        out["ttft"] = [x.ttft_ms for r, x in pairs if not r.embedding]
        out["tpot"] = [x.tpot_ms for x in lat if x.tpot_ms is not None]
        out["e2e"] = [x.e2e_ms for x in lat]
    if "itl" in metrics:
        out["itl"] = [gap / NS_PER_MS for r in ok for gap in r.itl_ns()]
    return {m: out[m] for m in metrics}


def itl_counted(records: Iterable[RequestRecord]) -> list[tuple[float, int]]:
    """The "itl" series of ``latency_series`` (ms) as (value, how many times it occurs), one
    pair per chunk (``RequestRecord.itl_gaps_ns``): its percentiles without expanding it."""
    return [(gap / NS_PER_MS, k) for r in _measured_ok(records, False)
            for gap, k in r.itl_gaps_ns()]


def _measured_ok(records: Iterable[RequestRecord], from_due: bool) -> list[RequestRecord]:
    """The successful measured requests (``from_due``: with a stream close, too)."""
    return [r for r in records
            if not r.warmup and r.ok and not (from_due and r.done_ns is None)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default, as vLLM uses); None when empty."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def describe(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    """p50/p90/p95/p99/mean/max of values, divided by scale; None everywhere when empty."""
    if len(values) == 0:
        return {stat: None for stat in STATS}
    arr = np.asarray(values, dtype=float) / scale
    out: dict[str, float | None] = {
        f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True)
    }
    out["mean"] = float(arr.mean())
    out["max"] = float(arr.max())
    return out


def measured_window_ns(records: Iterable[RequestRecord]) -> tuple[int, int] | None:
    """(start, end) of the measured window: first send to last completion, warm-up excluded."""
    measured = [r for r in records if not r.warmup]
    if not measured:
        return None
    start = min(r.send_ns for r in measured)
    ends = [r.done_ns if r.done_ns is not None else (r.chunk_ns[-1] if r.chunk_ns else r.send_ns)
            for r in measured]
    return start, max(ends)


def meets_slo(record: RequestRecord, slo: Mapping[str, float], *,
              from_due: bool = False) -> bool:
    """True when a successful request meets every per-request SLO given (ms: ``ttft_ms``,
    ``tpot_ms``, ``e2e_ms``); ``from_due`` as in ``request_latency``."""
    lat = request_latency(record, from_due=from_due) if record.ok else None
    if lat is None:
        return False
    checks = {"ttft_ms": lat.ttft_ms, "tpot_ms": lat.tpot_ms, "e2e_ms": lat.e2e_ms}
    for key, limit in slo.items():
        value = checks[key]
        if value is None:
            if key == "tpot_ms":  # no TPOT (one token, or one read): nothing to violate
                continue
            return False
        if value > limit:
            return False
    return True


def summarize(
    records: Sequence[RequestRecord],
    *,
    slo: Mapping[str, float] | None = None,
    peak_rss_mb: float | None = None,
    gpu_mem_mb: float | None = None,
    accuracy: float | None = None,
    server: Mapping[str, float | None] | None = None,
    energy_j: float | None = None,
    cost_per_hour: float | None = None,
) -> dict[str, Any]:
    """The flat summary whose keys are the threshold names (see SUMMARY_KEYS). ``server``:
    the server's own figures for the run (``engines.server_metrics.run_figures``), under
    SERVER_KEYS; absent ones stay None. ``energy_j``: the measured window's energy
    (run/energy.py), ``cost_per_hour``: the machine's price (USD), for energy_j_per_token
    and usd_per_mtok (None when unknown)."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    summary: dict[str, Any] = {}

    series = latency_series(ok)
    for metric in LATENCY_METRICS:
        for stat, value in describe(series[metric]).items():
            summary[f"{metric}_{stat}_ms"] = value

    window = measured_window_ns(measured)
    duration_s = (window[1] - window[0]) / NS_PER_S if window else 0.0
    out_tokens = sum(r.n_output for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    positive = duration_s > 0
    summary["output_tokens"] = out_tokens
    summary["input_tokens"] = in_tokens
    summary["duration_s"] = duration_s if window else None
    summary["output_tps"] = out_tokens / duration_s if positive else None
    summary["input_tps"] = in_tokens / duration_s if positive else None
    summary["rps"] = len(ok) / duration_s if positive else None
    summary["requests"] = len(measured)
    summary["errors"] = len(measured) - len(ok)
    summary["multi_token_chunks"] = sum(
        1 for r in ok for k in r.chunk_tokens if k > 1
    )
    # Answers of several tokens that came in one read: no TPOT (not 0), counted here and
    # warned about (run/bench.py client_warnings); tpot_* summarise the others, or are None.
    summary["tpot_undefined"] = sum(1 for r in ok if r.tpot_undefined)
    if slo and measured:
        summary["goodput"] = sum(1 for r in measured if meets_slo(r, slo)) / len(measured)
    else:
        summary["goodput"] = None
    summary["peak_rss_mb"] = peak_rss_mb
    summary["gpu_mem_mb"] = gpu_mem_mb
    summary["accuracy"] = accuracy
    for key in SERVER_KEYS:
        summary[key] = (server or {}).get(key)
    if any(r.embedding for r in measured):  # embeddings (issue 24, item 6): no output tokens
        summary["output_tps"] = None
    summary["energy_j_per_token"] = j_per_token(energy_j, out_tokens)
    summary["usd_per_mtok"] = usd_per_mtok(cost_per_hour, summary["output_tps"])
    summary.update(schedule_summary(ok))
    summary.update(reasoning_summary(ok))  # TTFA, reasoning tokens, ITL per phase (or None)
    summary.update(trace_figures(measured))  # trace replay (run/trace_cache.py)
    out = {k: _clean(summary.get(k)) for k in SUMMARY_KEYS}
    out.update(session_summary(measured))
    return out


def schedule_summary(records: Sequence[RequestRecord]) -> dict[str, float | None]:
    """An open loop's figures from the schedule, over the successful measured ``records``
    that carry a scheduled time (none, as in a closed loop: {} and the keys stay None):
    ``ttft_sched_*`` / ``e2e_sched_*`` (``request_latency(from_due=True)``: from the scheduled
    arrival, so time queued in the client counts, E2E to the stream's close) and
    ``schedule_lag_{p50,p99,max}_ms`` (send minus scheduled time)."""
    due = [r for r in records if r.scheduled_ns is not None and not r.warmup and r.ok]
    if not due:
        return {}
    out: dict[str, float | None] = {}
    series = latency_series(due, ("ttft", "e2e"), from_due=True)
    for metric, name in zip(("ttft", "e2e"), SCHEDULE_METRICS, strict=True):
        for stat, value in describe(series[metric]).items():
            out[f"{name}_{stat}_ms"] = value
    lag = describe([r.send_ns - r.due_ns for r in due], NS_PER_MS)
    out["schedule_lag_p50_ms"] = lag["p50"]
    out["schedule_lag_p99_ms"] = lag["p99"]
    out["schedule_lag_max_ms"] = lag["max"]
    return out


def understatement(summary: Mapping[str, Any]) -> str | None:
    """What an open loop's send-time latencies hide (None when nothing worth saying): the
    median request went out late on its schedule, so E2E and TTFT counted from the send
    understate what a user who arrived on schedule waited (vLLM issue 54101)."""
    lag = summary.get("schedule_lag_p50_ms")
    sent, due = summary.get("e2e_p50_ms"), summary.get("e2e_sched_p50_ms")
    if lag is None or sent is None or due is None or sent <= 0:
        return None
    # The median request itself went out late (more than 1 ms and 5% of its E2E), and it
    # shows in the median E2E: a few late requests are the tail's business (schedule_lag_p99).
    if not (lag > 1.0 and lag > 0.05 * sent and due - sent > 1.0 and due > 1.05 * sent):
        return None
    ttft, ttft_due = summary.get("ttft_p50_ms"), summary.get("ttft_sched_p50_ms")
    also = (f", TTFT p50 {ttft:.1f} ms against {ttft_due:.1f} ms"
            if ttft is not None and ttft_due is not None else "")
    return (f"open loop: requests went out late on their schedule (schedule lag p50 "
            f"{lag:.1f} ms, p99 {summary.get('schedule_lag_p99_ms') or 0.0:.1f} ms), so "
            f"latencies from the send understate what users waited: E2E p50 {sent:.1f} ms "
            f"from the send against {due:.1f} ms from the schedule ({due / sent - 1:+.0%})"
            f"{also}; ttft_sched_* / e2e_sched_* count the wait (thresholds and the gate can "
            "use them)")


def session_summary(records: Sequence[RequestRecord]) -> dict[str, float | int | None]:
    """Multi-turn figures of the measured records that carry a session (none: {}):
    ``ttft_p50_ms_turn{k}`` per turn k (from 1), ``sessions``, ``session_turns_mean`` (turns
    answered per session), ``session_duration_p50_s`` / ``_max_s`` (first send to last
    completion of a session, think time included)."""
    mine = [r for r in records if r.session is not None and r.turn is not None]
    if not mine:
        return {}
    out: dict[str, float | int | None] = {}
    by_turn: dict[int, list[float]] = {}
    by_session: dict[int, list[RequestRecord]] = {}
    for r in mine:
        assert r.session is not None and r.turn is not None
        by_session.setdefault(r.session, []).append(r)
        by_turn.setdefault(r.turn, [])
        if r.ok and r.ttft_ns is not None:
            by_turn[r.turn].append(r.ttft_ns)
    for turn in range(1, max(by_turn) + 1):
        value = percentile(by_turn.get(turn, []), 50)
        out[f"ttft_p50_ms_turn{turn}"] = value / NS_PER_MS if value is not None else None
    durations = []
    for recs in by_session.values():
        ends = [r.done_ns for r in recs if r.done_ns is not None]
        if ends:
            durations.append((max(ends) - min(r.send_ns for r in recs)) / NS_PER_S)
    out["sessions"] = len(by_session)
    out["session_turns_mean"] = (sum(1 for r in mine if r.ok) / len(by_session))
    out["session_duration_p50_s"] = percentile(durations, 50)
    out["session_duration_max_s"] = max(durations) if durations else None
    return {k: _clean(v) for k, v in out.items()}


def turn_ttfts(summary: Mapping[str, Any]) -> list[float | None]:
    """The per-turn TTFT p50s (ms) of a summary, turn 1 first ([] when not multi-turn)."""
    out: list[float | None] = []
    while f"ttft_p50_ms_turn{len(out) + 1}" in summary:
        out.append(summary[f"ttft_p50_ms_turn{len(out) + 1}"])
    return out


def _clean(value: Any) -> Any:
    """NaN and inf become None so the summary is plain JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class RunResult:
    """One run of a workload against an engine: the summary plus the raw samples."""

    summary: dict[str, Any]
    samples: list[RequestRecord]
    workload: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    client: dict[str, Any] = field(default_factory=dict)
    # Model mixes (Workload.models): each model's own summary of its requests
    # (run/model_metrics.py); {} without a mix.
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def __getattr__(self, name: str) -> Any:
        # result.errors, result.ttft_p50_ms ... read the summary.
        summary = self.__dict__.get("summary")
        if summary is not None and name in summary:
            return summary[name]
        raise AttributeError(name)

    def to_dict(self, with_samples: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "summary": dict(self.summary),
            "workload": self.workload,
            "engine": self.engine,
            "warnings": list(self.warnings),
            "started_at": self.started_at,
            "client": self.client,
        }
        if self.by_model:
            data["by_model"] = {m: dict(v) for m, v in self.by_model.items()}
        if with_samples:
            data["samples"] = [r.to_dict() for r in self.samples]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(
            summary=dict(data["summary"]),
            samples=[RequestRecord.from_dict(s) for s in data.get("samples", [])],
            workload=dict(data.get("workload", {})),
            engine=dict(data.get("engine", {})),
            warnings=list(data.get("warnings", [])),
            started_at=str(data.get("started_at", "")),
            client=dict(data.get("client", {})),
            by_model={str(m): dict(v) for m, v in (data.get("by_model") or {}).items()
                      if isinstance(v, Mapping)},
        )
