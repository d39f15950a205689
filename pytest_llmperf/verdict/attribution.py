"""What moved with a regression, and whether the workload itself changed.

Pure: stored runs (``RunResult.to_dict()`` shapes) in, plain JSON out. Two questions:

- ``workload_changes(baseline_runs, current_runs)``: is this a comparison at all? Two runs of
  one test compare only when they sent the same traffic: the same workload fields (the
  ``comparable`` form: fields at their defaults left out) and, where both runs recorded them,
  the same prompts (``client.prompts_digest``: the text, token ids and asked output lengths of
  every request, so a changed dataset, trace or tokenizer shows even when the fields did not).
  Each difference is one line ("output_tokens: 16 -> 32").
- ``attribution(baseline_runs, current_runs)``: the block a regression comes with. Every phase
  both sides measured (queueing before the send in an open loop, prefill as TTFT, decode as
  TPOT, the whole as E2E; the one that added most to a request marked), and what moved: the server's
  signals (prefix-cache hit rate, preemptions, KV peak, speculative acceptance) and the tokens
  per request (rows {what, baseline, current, change_pct}, medians over the runs), and the
  engine's settings and versions that differ, its tokenizer's and chat template's hashes
  included (``engines.fingerprint``; one line each).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ..formatting import num
from ..metric_table import BY_KEY, SERVER_KEYS
from ..run.workload import comparable
from ..store.profile import (
    ATTRIBUTION_ONLY_ENGINE_KEYS,
    VOLATILE_ENGINE_KEYS,
    differences,
    server_part,
)

Run = Mapping[str, Any]

# (label, summary key) per phase: what a user waits for, in the order it happens.
PHASES: tuple[tuple[str, str], ...] = (
    ("queue before the send (schedule lag p50)", "schedule_lag_p50_ms"),
    ("prefill (TTFT p50)", "ttft_p50_ms"),
    ("decode (TPOT p50)", "tpot_p50_ms"),
    ("whole request (E2E p50)", "e2e_p50_ms"),
)
# A server signal or a token count is listed when it moved by at least this much (%), or
# appeared or vanished.
MOVED_PCT = 2.0
# Engine info that changes between processes, not between configurations.
_VOLATILE = frozenset({*VOLATILE_ENGINE_KEYS, "server", "warnings"})


def _workload(run: Run) -> dict[str, Any]:
    workload = run.get("workload")
    return comparable(workload) if isinstance(workload, Mapping) else {}


def _shown(value: Any) -> str:
    return "(default)" if value is None else (
        json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value))


def workload_changes(baseline_runs: Sequence[Run], current_runs: Sequence[Run]) -> list[str]:
    """How the current runs' traffic differs from the baseline runs' (the first of each): one
    line per workload field, then the prompts; [] when they are the same workload."""
    if not baseline_runs or not current_runs:
        return []
    base, cur = _workload(baseline_runs[0]), _workload(current_runs[0])
    out = [f"{key}: {_shown(base.get(key))} -> {_shown(cur.get(key))}"
           for key in sorted(set(base) | set(cur)) if base.get(key) != cur.get(key)]
    digests = [(r.get("client") or {}).get("prompts_digest") for r in (baseline_runs[0],
                                                                       current_runs[0])]
    if not out and all(isinstance(d, str) for d in digests) and digests[0] != digests[1]:
        out.append("the prompts differ (same workload fields: the dataset, trace, prompts "
                   "file or tokenizer changed)")
    return out


def _median(runs: Sequence[Run], key: str) -> float | None:
    values = [v for r in runs if isinstance(v := (r.get("summary") or {}).get(key), int | float)
              and not isinstance(v, bool)]
    return float(statistics.median(values)) if values else None


def _per_request(runs: Sequence[Run], key: str) -> float | None:
    """The median over runs of tokens per measured request (``input_tokens`` or
    ``output_tokens`` / ``requests``)."""
    values = []
    for r in runs:
        s = r.get("summary") or {}
        total, n = s.get(key), s.get("requests")
        if isinstance(total, int | float) and isinstance(n, int | float) and n:
            values.append(float(total) / float(n))
    return float(statistics.median(values)) if values else None


def _row(what: str, base: float | None, cur: float | None) -> dict[str, Any] | None:
    """A row when the value moved (by MOVED_PCT or more, or appeared/vanished), else None."""
    if base is None and cur is None:
        return None
    change = (cur / base - 1.0) * 100.0 if base and cur is not None else None
    if base is not None and cur is not None and (
            base == cur or (change is not None and abs(change) < MOVED_PCT)):
        return None
    return {"what": what, "baseline": base, "current": cur, "change_pct": change}


def _engine(run: Run) -> dict[str, Any]:
    engine = run.get("engine") or {}
    out = {k: v for k, v in engine.items() if k not in _VOLATILE}
    server = engine.get("server")
    if isinstance(server, Mapping):  # as the profile compares it: no pid, URL or free port
        out["server"] = server_part(server)
    return out


def _environment(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    """What differs in the engine, one line each. The tokenizer's and chat template's hashes
    (``ATTRIBUTION_ONLY_ENGINE_KEYS``) count only where both sides have them: a baseline
    stored before engines reported them is not a change of tokenizer."""
    for key in ATTRIBUTION_ONLY_ENGINE_KEYS:
        if key not in base or key not in cur:
            base.pop(key, None)
            cur.pop(key, None)
    return differences(base, cur)


def _request_growth(key: str, b: float, c: float, baseline_runs: Sequence[Run],
                    current_runs: Sequence[Run]) -> float | None:
    """How many ms a request's part grew by: the queue and prefill as they are; decode as
    TPOT x (output tokens per request - 1), the time a request spends decoding (TPOT alone is
    per token: compared as it is with TTFT it would name prefill for a decode slowdown);
    TPOT's own growth where the token count is unknown; None for the whole request."""
    if key == "e2e_p50_ms":
        return None
    if key != "tpot_p50_ms":
        return c - b
    nb, nc = (_per_request(runs, "output_tokens") for runs in (baseline_runs, current_runs))
    if nb is None or nc is None:
        return c - b
    return c * max(nc - 1.0, 1.0) - b * max(nb - 1.0, 1.0)


def attribution(baseline_runs: Sequence[Run], current_runs: Sequence[Run]) -> dict[str, Any]:
    """The block a regression comes with: ``phases`` (every phase both sides measured; the
    one that added the most time to a request has ``most``: ``_request_growth``),
    ``server`` (the server's own signals) and ``tokens`` (per request) as rows that moved,
    ``environment`` (engine settings and versions that differ, one line each) and
    ``workload`` (``workload_changes``)."""
    phases: list[dict[str, Any]] = []
    growth: list[tuple[float, int]] = []  # (ms a request grew by, index) per part of it
    for label, key in PHASES:
        b, c = _median(baseline_runs, key), _median(current_runs, key)
        if b is None or c is None:
            continue
        grown = _request_growth(key, b, c, baseline_runs, current_runs)
        if grown is not None and grown > 0:
            growth.append((grown, len(phases)))
        phases.append({"what": label, "baseline": b, "current": c,
                       "change_pct": (c / b - 1.0) * 100.0 if b else None})
    if growth:  # the part that added the most time to a request: where to look first
        phases[max(growth)[1]]["most"] = True
    server = [row for key in SERVER_KEYS
              if (row := _row(BY_KEY[key].label, _median(baseline_runs, key),
                              _median(current_runs, key)))]
    tokens = [row for label, key in (("prompt tokens per request", "input_tokens"),
                                     ("output tokens per request", "output_tokens"))
              if (row := _row(label, _per_request(baseline_runs, key),
                              _per_request(current_runs, key)))]
    environment = (_environment(_engine(baseline_runs[0]), _engine(current_runs[0]))
                   if baseline_runs and current_runs else [])
    return {"phases": phases, "server": server, "tokens": tokens,
            "environment": environment,
            "workload": workload_changes(baseline_runs, current_runs)}


def attribution_lines(block: Mapping[str, Any] | None, indent: str = "    ") -> list[str]:
    """The block as terminal lines ([] when nothing moved): 'prefill (TTFT p50): 41.2 ->
    55.0 ms (+33.5%)', the server's signals, tokens per request, then what differs in the
    engine and the workload."""
    if not block:
        return []
    lines: list[str] = []
    for section, title in (("phases", "phase"), ("server", "server"), ("tokens", "tokens")):
        for row in block.get(section) or []:
            change = row.get("change_pct")
            lines.append(f"{indent}{title}: {row['what']}: {num(row.get('baseline'))} -> "
                         f"{num(row.get('current'))}"
                         + (f" ({change:+.1f}%)" if isinstance(change, int | float) else "")
                         + (" <- grew most" if row.get("most") else ""))
    lines += [f"{indent}engine: {d}" for d in block.get("environment") or []]
    lines += [f"{indent}workload: {d}" for d in block.get("workload") or []]
    if lines:
        lines.insert(0, f"{indent[:-2]}what moved with it:")
    return lines
