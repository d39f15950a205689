"""Server metrics: what an engine's Prometheus metrics say about one run (vLLM's ``/metrics``
or its in-process registry; llama.cpp's ``llama-server --metrics``).

A *snapshot* is ``{name: value}`` for the metrics used here: a counter (by its family name,
without ``_total``) summed over its label sets (vLLM labels every series with the model and
the engine index; a counter declared with no series yet is 0), a gauge at its largest over
them. Exposition text is read with ``prometheus_client``'s own parser, never by hand. A run's
figures come from a snapshot before it, one after it and the gauges sampled while it ran:

- ``prefix_hit_rate``: delta ``vllm:prefix_cache_hits`` / delta ``vllm:prefix_cache_queries``
  (prompt tokens found in the prefix cache / prompt tokens looked up; vLLM v1);
- ``peak_kv_usage``: the largest KV-cache usage seen (a fraction, 0 to 1), sampled every
  ``SAMPLE_INTERVAL_S`` during the run and after it: ``vllm:kv_cache_usage_perc`` (older vLLM:
  ``vllm:gpu_cache_usage_perc``; llama.cpp: ``llamacpp:kv_cache_usage_ratio``). A run shorter
  than the interval has only the after value, which may be below the true peak;
- ``preemptions``: delta ``vllm:num_preemptions``;
- ``spec_accept_rate``: delta ``vllm:spec_decode_num_accepted_tokens`` / delta
  ``vllm:spec_decode_num_draft_tokens``;
- ``spec_accept_len``: 1 + delta accepted tokens / delta ``vllm:spec_decode_num_drafts``
  (vLLM's mean acceptance length: tokens per step of the target model).

llama.cpp's ``llama-server --metrics`` (``tools/server/server-task.cpp``, ``to_metrics``) has
the same figures under other names, used when vLLM's are absent: ``prefix_hit_rate`` = delta
``llamacpp:prompt_tokens_cached`` / (delta ``llamacpp:prompt_tokens`` + delta cached), since
its prompt-token counter excludes the cached tokens; speculative decoding from
``llamacpp:spec_decode_num_{accepted_tokens,draft_tokens,drafts}`` (drafts: verification
steps, as vLLM's).

The counters cover every request of the run, warm-up included (the server cannot tell them
apart). A figure whose metrics the server does not expose, or whose denominator did not move,
is absent (None), never 0 by guess; a server without metrics gives no figures at all, and a
scrape that fails is simply no snapshot: nothing is reported about it.
"""

from __future__ import annotations

import math
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from ..metric_table import SERVER_KEYS  # the summary keys this module fills
from ..periodic import Periodic
from .blocking_http import FetchError, fetch

PREFIX_HITS = "vllm:prefix_cache_hits"
PREFIX_QUERIES = "vllm:prefix_cache_queries"
PREEMPTIONS = "vllm:num_preemptions"
SPEC_ACCEPTED = "vllm:spec_decode_num_accepted_tokens"
SPEC_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
SPEC_DRAFTS = "vllm:spec_decode_num_drafts"
# llama.cpp's llama-server: prompt tokens processed (excluding cached ones), and cached ones.
LLAMACPP_PROMPT = "llamacpp:prompt_tokens"
LLAMACPP_CACHED = "llamacpp:prompt_tokens_cached"
LLAMACPP_SPEC = {SPEC_ACCEPTED: "llamacpp:spec_decode_num_accepted_tokens",
                 SPEC_DRAFT_TOKENS: "llamacpp:spec_decode_num_draft_tokens",
                 SPEC_DRAFTS: "llamacpp:spec_decode_num_drafts"}
# KV-cache usage gauges, each a fraction from 0 to 1, in order of preference.
KV_USAGE: tuple[str, ...] = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                             "llamacpp:kv_cache_usage_ratio")
COUNTERS: frozenset[str] = frozenset({PREFIX_HITS, PREFIX_QUERIES, PREEMPTIONS, SPEC_ACCEPTED,
                                      SPEC_DRAFT_TOKENS, SPEC_DRAFTS, LLAMACPP_PROMPT,
                                      LLAMACPP_CACHED, *LLAMACPP_SPEC.values()})
# Every metric a snapshot keeps; the gauges alone are what is sampled during a run.
NAMES: frozenset[str] = COUNTERS | frozenset(KV_USAGE)
GAUGES: tuple[str, ...] = KV_USAGE
SAMPLE_INTERVAL_S = 0.5
SCRAPE_TIMEOUT_S = 5.0  # one scrape in all, at most
SCRAPE_MAX_BODY = 16 << 20  # bytes of /metrics read at most (larger: no snapshot)

Snapshot = dict[str, float]


def snapshot_of(families: Iterable[Any], names: Collection[str] | None = None) -> Snapshot:
    """The snapshot of prometheus_client metric families (parsed text or a registry's
    ``collect()``): counters summed, gauges at their maximum over label sets; only ``names``
    (default: every metric this module uses). Non-finite values are skipped."""
    wanted = NAMES if names is None else frozenset(names)
    out: Snapshot = {}
    for family in families:
        kind = getattr(family, "type", "unknown")
        base = str(family.name)
        if kind == "counter":
            base = base.removesuffix("_total")  # older clients keep _total in the name
            sample_names = {base + "_total", base}
        else:
            sample_names = {base}
        if base not in wanted:
            continue
        if kind == "counter":  # declared with no series yet: nothing counted
            out.setdefault(base, 0.0)
        for sample in family.samples:
            if sample.name not in sample_names:
                continue  # _created, _bucket and the like
            try:
                value = float(sample.value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            if kind == "counter":
                out[base] = out.get(base, 0.0) + value
            else:
                out[base] = max(out.get(base, value), value)
    return out


def parse_text(text: str, names: Collection[str] | None = None) -> Snapshot | None:
    """The snapshot of Prometheus exposition text; None when it does not parse."""
    try:
        from prometheus_client.parser import text_string_to_metric_families

        return snapshot_of(text_string_to_metric_families(text), names)
    except Exception:  # ImportError, or a text that is not the exposition format
        return None


def registry_snapshot(names: Collection[str] | None = None) -> Snapshot | None:
    """The snapshot of this process's ``prometheus_client.REGISTRY`` (an in-process engine
    that records its metrics there, as vLLM's AsyncLLM does); None without prometheus_client
    or when the registry cannot be read. Empty when the engine recorded none of these."""
    try:
        from prometheus_client import REGISTRY

        return snapshot_of(REGISTRY.collect(), names)
    except Exception:
        return None


def scrape(root: str, headers: Mapping[str, str] | None = None,
           ssl_ctx: ssl.SSLContext | bool = True, timeout_s: float = SCRAPE_TIMEOUT_S,
           names: Collection[str] | None = None, *,
           target: Callable[[str], str] | None = None) -> Snapshot | None:
    """GET ``<root>/metrics`` and its snapshot; None on any failure (no server metrics, an
    error status, no complete answer within ``timeout_s`` in all, more than
    ``SCRAPE_MAX_BODY``, a body that is not Prometheus text). With ``names``, asks
    prometheus_client's exporter (vLLM) for those metrics alone (``?name[]=``); a server that
    ignores the filter sends everything, which is read the same.

    ``target`` makes the request target of a path (the engine's ``request_target``: the
    server's root path in front, the ``--llmperf-url`` query after); without it, ``root``'s
    path and query."""
    u = urllib.parse.urlsplit(root)
    if target is not None:
        path = target("/metrics")
    else:
        path = u.path.rstrip("/") + "/metrics" + (f"?{u.query}" if u.query else "")
    if names:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(
            [("name[]", n) for n in sorted(names)])
    url = f"{u.scheme}://{u.netloc}{path}"
    try:  # within timeout_s in all (a server answering a byte at a time included)
        reply = fetch(url, headers=headers, ssl_ctx=ssl_ctx, timeout_s=timeout_s,
                      max_body=SCRAPE_MAX_BODY)
    except FetchError:  # refused, a timeout, not HTTP, more than SCRAPE_MAX_BODY
        return None
    if reply.status != 200:  # 404: no metrics
        return None
    return parse_text(reply.text(), names)


def _delta(before: Mapping[str, float], after: Mapping[str, float], name: str) -> float | None:
    """How much a counter moved; None when either snapshot lacks it or it went down (the
    server restarted: the difference means nothing)."""
    if name not in before or name not in after:
        return None
    moved = after[name] - before[name]
    return moved if moved >= 0 else None


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def run_figures(before: Mapping[str, float] | None, after: Mapping[str, float] | None,
                samples: Iterable[Mapping[str, float]] = ()) -> dict[str, float | None]:
    """The run's server figures (``SERVER_KEYS``) from the snapshots before and after it and
    the gauges sampled during it; every key present, None where not measured."""
    out: dict[str, float | None] = dict.fromkeys(SERVER_KEYS)
    if before is None or after is None:
        return out
    hits = _delta(before, after, PREFIX_HITS)
    queries = _delta(before, after, PREFIX_QUERIES)
    if hits is None and queries is None:  # llama-server: cached / (processed + cached)
        hits = _delta(before, after, LLAMACPP_CACHED)
        processed = _delta(before, after, LLAMACPP_PROMPT)
        queries = None if hits is None or processed is None else processed + hits
    out["prefix_hit_rate"] = _ratio(hits, queries)
    preempted = _delta(before, after, PREEMPTIONS)
    out["preemptions"] = (int(preempted) if preempted is not None and preempted.is_integer()
                          else preempted)
    spec = {name: _delta(before, after, name) for name in LLAMACPP_SPEC}
    if all(v is None for v in spec.values()):
        spec = {name: _delta(before, after, other) for name, other in LLAMACPP_SPEC.items()}
    accepted = spec[SPEC_ACCEPTED]
    out["spec_accept_rate"] = _ratio(accepted, spec[SPEC_DRAFT_TOKENS])
    per_draft = _ratio(accepted, spec[SPEC_DRAFTS])
    out["spec_accept_len"] = None if per_draft is None else 1.0 + per_draft
    seen = [*samples, after]
    for name in KV_USAGE:
        values = [s[name] for s in seen if name in s]
        if values:
            out["peak_kv_usage"] = max(values)
            break
    return out


class ServerMetricsSampler:
    """``with ServerMetricsSampler(engine.metrics_snapshot) as m: <run>``; then
    ``m.figures()``. Takes a snapshot on entry; when there is one, samples the gauges every
    ``interval_s`` in a background thread; takes the after snapshot on exit. Given the
    measured window's edges (``window_start``/``window_stop``, as the load generator calls
    them after the warm-up), the figures are the window's alone. A source that
    gives None or nothing on entry is not asked again (no server metrics: nothing to
    sample)."""

    def __init__(self, source: Callable[[Collection[str] | None], Snapshot | None],
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._source = source
        self.before: Snapshot | None = None
        self.after: Snapshot | None = None
        self.samples: list[Snapshot] = []
        self._lock = threading.Lock()
        self._periodic = Periodic(self._sample, interval_s, "llmperf-server-metrics")

    def _call(self, names: Collection[str] | None) -> Snapshot | None:
        try:
            return self._source(names)
        except Exception:  # an engine's capability must never break the run
            return None

    def _sample(self) -> None:
        snap = self._call(GAUGES)
        if snap:
            with self._lock:
                self.samples.append(snap)

    def __enter__(self) -> ServerMetricsSampler:
        self.before = self._call(None)
        self.after = None
        if self.before:  # None or empty: nothing to follow
            self._periodic.start()
        return self

    def window_start(self) -> None:
        """The measured window begins (the warm-up is over): the counters count from here
        and the gauges sampled so far are dropped."""
        if self.before:
            snap = self._call(None)
            if snap:
                with self._lock:
                    self.before = snap
                    self.samples.clear()

    def window_stop(self) -> None:
        """The measured window ends: the after snapshot, before anything else reaches the
        server."""
        if self.before:
            self.after = self._call(None)

    def __exit__(self, *exc: object) -> None:
        self._periodic.stop()
        if self.before and self.after is None:
            self.after = self._call(None)

    def figures(self) -> dict[str, float | None]:
        with self._lock:
            samples = list(self.samples)
        return run_figures(self.before, self.after, samples)
