"""One way a test failed, as a value: made where the failure is found (a threshold, the
baseline gate, a paired A/B, an accuracy check), rendered by ``report.junit``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FailureKind = Literal["threshold", "regression", "accuracy", "ab", "error",
                      "outputs"]  # outputs: same_outputs=True (issue 25)


@dataclass(frozen=True)
class Failure:
    """One way a test failed.

    ``clause``: its part of the one-line headline (``report.junit.headline`` joins them),
    e.g. ``ttft_p95_ms 812 > 500`` or ``regression tpot_p50_ms 41.2 vs baseline 35.1
    (+17.4%, tolerance 5%)``. ``text``: the detailed message, one or more lines.
    """

    kind: FailureKind
    clause: str
    text: str

__all__ = ["Failure", "FailureKind"]
