"""The failure message a CI page shows in one line (JUnit's ``message``, pytest's summary).

A test can fail several ways at once: absolute thresholds (thresholds.failure_message),
regressions against the baseline (gate.py) and accuracy. Their detailed messages stay as
they are; ``failure_text`` puts one line in front that names every failed threshold and
regression, measured against limit or baseline, e.g.
``llmperf: ttft_p95_ms 812 > 500; regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_THRESHOLD_HEAD = re.compile(r"^llmperf(?: \((?P<label>[^)]*)\))?: (?P<rest>.+)$")
_GATE_HEAD = re.compile(r"^\d+ llmperf regression\(s\) against baseline")


def _num(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def regression_clauses(comparison: Mapping[str, Any] | None) -> list[str]:
    """``regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)`` per metric."""
    if not comparison:
        return []
    out: list[str] = []
    for m in comparison.get("metrics", []) or []:
        if not (m.get("gated") and m.get("verdict") == "regression"):
            continue
        text = (f"regression {m.get('metric')} {_num(m.get('current'))} vs baseline "
                f"{_num(m.get('baseline'))}")
        change = m.get("change_pct")
        if isinstance(change, int | float):
            tol = m.get("tolerance_pct")
            tol_text = f", tolerance {tol:g}%" if isinstance(tol, int | float) else ""
            text += f" ({change:+.1f}%{tol_text})"
        out.append(text)
    return out


def headline(messages: Sequence[str], comparison: Mapping[str, Any] | None = None) -> str:
    """One line naming every failure in the messages (and the comparison's regressions)."""
    clauses: list[str] = []
    gate_seen = False
    for message in messages:
        first = message.strip().splitlines()[0].strip() if message.strip() else ""
        if not first:
            continue
        if _GATE_HEAD.match(first):
            gate_seen = True
            continue
        match = _THRESHOLD_HEAD.match(first)
        if match:
            label = match.group("label")
            clauses.append(f"{label}: {match.group('rest')}" if label else match.group("rest"))
        else:
            clauses.append(first.rstrip(":"))
    regressions = regression_clauses(comparison)
    if regressions:
        clauses.extend(regressions)
    elif gate_seen:
        clauses.append("regression against the baseline")
    return "llmperf: " + "; ".join(clauses)


def failure_text(messages: Sequence[str], comparison: Mapping[str, Any] | None = None) -> str:
    """The detailed messages with the one-line summary first (not repeated when it is)."""
    body = "\n".join(messages)
    head = headline(messages, comparison)
    if body.splitlines() and body.splitlines()[0] == head:
        return body
    return head + "\n" + body
