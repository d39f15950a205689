"""The failure message a CI page shows in one line (JUnit's ``message``, pytest's summary).

A test can fail several ways at once: absolute thresholds, regressions against the baseline,
accuracy, paired A/B. ``verdict.outcome.judge`` returns each as a ``Failure`` (its kind, its
one-line clause, its detailed text), made where it was found. ``failure_text`` writes the
detailed texts as they are, with one line in front that joins the clauses: every failed
threshold and regression, measured against limit or baseline, e.g.
``llmperf: ttft_p95_ms 812 > 500; regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..verdict.failure import Failure


def headline(failures: Sequence[Failure]) -> str:
    """One line naming every failure, in order, the regressions against the baseline last."""
    clauses = [f.clause for f in failures if f.kind != "regression"]
    clauses += [f.clause for f in failures if f.kind == "regression"]
    return "llmperf: " + "; ".join(clauses)


def failure_text(failures: Sequence[Failure]) -> str:
    """The detailed texts with the one-line summary first (not repeated when it is)."""
    body = "\n".join(f.text for f in failures)
    head = headline(failures)
    if body.splitlines() and body.splitlines()[0] == head:
        return body
    return head + "\n" + body
