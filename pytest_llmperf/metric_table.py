"""The one table of summary metrics: key, label, unit, which direction is better, whether the
regression gate checks it by default. Thresholds, statistics and every report read it.

Imports nothing heavy: the plugin reads it while collecting tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"]

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
STATS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "mean", "max")
LATENCY_METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2e")


@dataclass(frozen=True)
class Metric:
    key: str  # the summary key, threshold name (latency) and JSON/JUnit property name
    label: str  # a short column heading
    unit: str  # "ms", "tok/s", "req/s", "MB", "s", "" (a count or a fraction)
    better: Better | None  # None: not a performance figure (counts of requests, tokens)
    gated: bool = False  # checked by the regression gate unless the marker says otherwise
    watched: bool = False  # compared with the baseline and reported, warning only


def _latency(name: str, stat: str, label: str | None = None) -> Metric:
    gated = stat == "p50" and name in ("ttft", "tpot")
    watched = (name, stat) in {("ttft", "p95"), ("ttft", "p99"), ("tpot", "p95"),
                               ("tpot", "p99"), ("itl", "p50"), ("itl", "p99"),
                               ("e2e", "p50"), ("e2e", "p95"), ("ttft_sched", "p50"),
                               ("e2e_sched", "p50")}
    return Metric(f"{name}_{stat}_ms", f"{label or name.upper()} {stat} ms", "ms", "lower",
                  gated=gated, watched=watched)


# Open loop: latency counted from each request's scheduled arrival (run/metrics.py
# ``schedule_summary``), what a user who arrived on schedule waited, time queued in the client
# included (coordinated omission); None in a closed loop, which has no schedule.
SCHEDULE_METRICS: tuple[str, ...] = ("ttft_sched", "e2e_sched")


# Every summary key, in display order: ttft_p50_ms ... e2e_max_ms, then the run figures.
METRICS: tuple[Metric, ...] = (
    *(_latency(name, stat) for name in LATENCY_METRICS for stat in STATS),
    Metric("output_tps", "out tok/s", "tok/s", "higher", gated=True),
    Metric("input_tps", "in tok/s", "tok/s", "higher"),
    Metric("rps", "req/s", "req/s", "higher"),
    Metric("goodput", "goodput", "", "higher"),
    Metric("peak_rss_mb", "RSS MB", "MB", "lower"),
    Metric("gpu_mem_mb", "GPU MB", "MB", "lower"),
    Metric("accuracy", "accuracy", "", "higher"),
    *(_latency(name, stat, name.removesuffix("_sched").upper() + " sched")
      for name in SCHEDULE_METRICS for stat in STATS),
    # How late each open-loop request went out against its schedule (client dispatch delay
    # plus the wait for a slot under a concurrency cap): send minus scheduled time.
    Metric("schedule_lag_p50_ms", "sched lag p50 ms", "ms", "lower"),
    Metric("schedule_lag_p99_ms", "sched lag p99 ms", "ms", "lower"),
    Metric("schedule_lag_max_ms", "sched lag max ms", "ms", "lower"),
    # The server's own figures (engines/server_metrics.py), where its metrics show them.
    Metric("prefix_hit_rate", "prefix hit rate", "", "higher"),
    Metric("peak_kv_usage", "KV peak", "", "lower"),
    Metric("preemptions", "preemptions", "", "lower"),
    Metric("spec_accept_rate", "spec accept rate", "", "higher"),
    Metric("spec_accept_len", "spec accept len", "", "higher"),
    # Energy (NVML on NVIDIA GPUs, RAPL on CPUs) and cost (--llmperf-cost-per-hour), run/energy.py.
    Metric("energy_j_per_token", "J/tok", "J", "lower"),
    Metric("usd_per_mtok", "$/Mtok", "USD", "lower"),
    # Capacity under an SLO (llmperf_bench.capacity, run/capacity.py): on the run it keeps.
    Metric("capacity_rps", "capacity req/s", "req/s", "higher"),
    # Trace replay (run/trace_cache.py): the trace's offline ideal prefix hit rate over the
    # requests sent (beside the server's prefix_hit_rate), how many requests it expects
    # cached (at least half the prompt), and TTFT p50 of those and of the others.
    Metric("trace_ideal_hit_rate", "ideal hit rate", "", None),
    Metric("trace_cached_requests", "cached requests", "", None),
    Metric("ttft_cached_p50_ms", "TTFT cached p50 ms", "ms", "lower"),
    Metric("ttft_uncached_p50_ms", "TTFT uncached p50 ms", "ms", "lower"),
    Metric("requests", "requests", "", None),
    Metric("errors", "errors", "", "lower"),
    Metric("output_tokens", "out tokens", "", None),
    Metric("input_tokens", "in tokens", "", None),
    Metric("duration_s", "duration s", "s", None),
    Metric("multi_token_chunks", "multi-token chunks", "", None),
    # Answers of several tokens that arrived in one read (E2E == TTFT): TPOT undefined.
    Metric("tpot_undefined", "TPOT undefined", "", None),
    # Reasoning and answer phases (issue 24; run/reasoning.py): None unless some answer of
    # the run streamed thinking. TTFA: time to the first answer token (aiperf's TTFO).
    *(_latency("ttfa", stat) for stat in STATS),
    Metric("itl_reasoning_p50_ms", "ITL reasoning p50 ms", "ms", "lower"),
    Metric("itl_reasoning_p99_ms", "ITL reasoning p99 ms", "ms", "lower"),
    Metric("itl_answer_p50_ms", "ITL answer p50 ms", "ms", "lower"),
    Metric("itl_answer_p99_ms", "ITL answer p99 ms", "ms", "lower"),
    Metric("reasoning_tokens_mean", "reasoning tok/req", "", "lower"),
    Metric("reasoning_tokens_total", "reasoning tokens", "", None),
)
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}

SUMMARY_KEYS: tuple[str, ...] = tuple(m.key for m in METRICS)
LATENCY_KEYS: tuple[str, ...] = tuple(m.key for m in METRICS if m.unit == "ms")
RUN_KEYS: tuple[str, ...] = tuple(k for k in SUMMARY_KEYS if k not in LATENCY_KEYS)
# Gated by default; the watched ones are compared and reported but only warn.
DEFAULT_GATED: tuple[str, ...] = ("ttft_p50_ms", "tpot_p50_ms", "output_tps")
DEFAULT_WATCHED: tuple[str, ...] = tuple(m.key for m in METRICS if m.watched)
HIGHER_IS_BETTER: frozenset[str] = frozenset(m.key for m in METRICS if m.better == "higher")
# What the compact tables (terminal, HTML overview and per-test metrics) show, in this order.
TABLE_KEYS: tuple[str, ...] = ("ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "itl_p50_ms",
                               "e2e_p50_ms", "output_tps", "rps", "goodput", "peak_rss_mb")
TABLE_METRICS: tuple[tuple[str, str], ...] = tuple((k, BY_KEY[k].label) for k in TABLE_KEYS)
# The Markdown summary's narrower table (it has to fit a pull-request comment).
MARKDOWN_KEYS: tuple[str, ...] = ("ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "itl_p50_ms",
                                  "output_tps")
MARKDOWN_METRICS: tuple[tuple[str, str], ...] = tuple((k, BY_KEY[k].label)
                                                      for k in MARKDOWN_KEYS)
# The server's figures (absent unless the engine exposes metrics): a table of their own.
SERVER_KEYS: tuple[str, ...] = ("prefix_hit_rate", "peak_kv_usage", "preemptions",
                                "spec_accept_rate", "spec_accept_len")
# Trace replay (run/trace_cache.py): the trace's ideal prefix hit rate beside the server's.
TRACE_TABLE_KEYS: tuple[str, ...] = ("trace_ideal_hit_rate", "trace_cached_requests",
                                     "ttft_cached_p50_ms", "ttft_uncached_p50_ms")
SERVER_METRICS: tuple[tuple[str, str], ...] = tuple((k, BY_KEY[k].label) for k in SERVER_KEYS)
# The open loop's figures from the schedule (absent in a closed loop): a table of their own.
SCHEDULE_KEYS: tuple[str, ...] = (
    *(f"{name}_{stat}_ms" for name in SCHEDULE_METRICS for stat in ("p50", "p95", "p99")),
    "schedule_lag_p50_ms", "schedule_lag_p99_ms", "schedule_lag_max_ms")
# Reasoning and answer phases (issue 24; run/reasoning.py): absent unless some answer streamed
# thinking; a table of their own.
REASONING_KEYS: tuple[str, ...] = (
    *(f"ttfa_{stat}_ms" for stat in STATS), "itl_reasoning_p50_ms", "itl_reasoning_p99_ms",
    "itl_answer_p50_ms", "itl_answer_p99_ms", "reasoning_tokens_mean", "reasoning_tokens_total")


@dataclass(frozen=True)
class Section:
    """A table of optional figures in the reports: shown for a test when some run has one of
    its metrics (``present``), each column a key of the summary."""

    name: str  # the table's CSS class and anchor
    title: str
    keys: tuple[str, ...]
    requires: str | None = None  # shown only when some summary has this key

    def present(self, summaries: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
        """(key, label) of the section's metrics that some summary has, in table order
        (none when no summary has the key the section ``requires``)."""
        rows = list(summaries)
        if self.requires and not any(s.get(self.requires) is not None for s in rows):
            return ()
        return tuple((k, BY_KEY[k].label) for k in self.keys
                     if any(s.get(k) is not None for s in rows))


# The optional tables, in page order (report/view.py, the HTML and Markdown reports).
SECTIONS: tuple[Section, ...] = (
    Section("server-metrics", "Server metrics", SERVER_KEYS),
    Section("schedule-metrics", "Open loop: latency from the schedule", SCHEDULE_KEYS),
    Section("reasoning-metrics", "Reasoning and answer phases", REASONING_KEYS),
    Section("trace-metrics", "Trace replay: prefix cache, ideal and measured",
            (TRACE_TABLE_KEYS[0], "prefix_hit_rate", *TRACE_TABLE_KEYS[1:]),
            requires="trace_ideal_hit_rate"),
)
# Energy and cost: a column of the compact tables only when some run has them (absent without
# a readable energy counter or a --llmperf-cost-per-hour).
OPTIONAL_KEYS: tuple[str, ...] = ("energy_j_per_token", "usd_per_mtok")
OPTIONAL_METRICS: tuple[tuple[str, str], ...] = tuple((k, BY_KEY[k].label)
                                                      for k in OPTIONAL_KEYS)
# The trend plots (the default gated metrics).
TREND_METRICS: tuple[str, ...] = DEFAULT_GATED

# SLO keys accepted by Workload.slo for goodput.
SLO_KEYS: tuple[str, ...] = ("ttft_ms", "tpot_ms", "e2e_ms")

assert tuple(m.key for m in METRICS if m.gated) == DEFAULT_GATED

# Embeddings (issue 24, item 6): an embedding run has E2E, requests/s and input tokens/s but
# no TTFT, TPOT, ITL or output tokens/s (None). The compact tables add these columns when some
# run is one, and the regression gate gates these by default for such runs.
EMBEDDING_KEYS: tuple[str, ...] = ("e2e_p50_ms", "e2e_p95_ms", "input_tps", "rps")
EMBEDDING_GATED: tuple[str, ...] = ("e2e_p50_ms", "input_tps")


def is_embeddings(summary: Mapping[str, Any]) -> bool:
    """True for the summary of an embeddings run: an E2E but no TTFT (a generation that has
    one has the other)."""
    return summary.get("e2e_p50_ms") is not None and summary.get("ttft_p50_ms") is None


def with_optional(columns: tuple[tuple[str, str], ...],
                  summaries: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """``columns`` and the optional metrics (energy, cost) that some summary has; with an
    embeddings run among them, its figures (``EMBEDDING_KEYS``) too."""
    rows = list(summaries)
    if any(is_embeddings(s) for s in rows):  # embeddings (issue 24, item 6)
        have = {k for k, _ in columns}
        columns += tuple((k, BY_KEY[k].label) for k in EMBEDDING_KEYS if k not in have)
    return columns + tuple((k, label) for k, label in OPTIONAL_METRICS
                           if any(s.get(k) is not None for s in rows))


def higher_is_better(metric: str) -> bool:
    """True for throughput-like metrics (tokens/s, goodput, accuracy); False otherwise."""
    return metric in HIGHER_IS_BETTER
