"""The results document: what one session measured and decided, in the shape of the
``--llmperf-json`` file (schema ``pytest-llmperf/results``). Every report renders from it: the
terminal table, the JSON file, the HTML page and the Markdown summary of a live session, and
``llmperf report`` reading stored files, go through the same document.

``TestRecord`` is one finished test as the session keeps it (rebuilt from its pytest report,
so it also exists on the pytest-xdist controller); ``results_document`` is the document.
Plain data, no pytest and no I/O.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run.metrics import RunResult

SCHEMA = "pytest-llmperf/results"
# 2: the top-level "provenance" object (report/provenance.py); version 1 files are still read.
SCHEMA_VERSION = 2


@dataclass
class TestRecord:
    """One finished test as the reports see it (rebuilt from its report, so it also exists
    on the pytest-xdist controller)."""

    nodeid: str
    outcome: str
    thresholds: dict[str, Any]
    runs: list[RunResult]
    message: str = ""
    comparison: dict[str, Any] | None = None  # against the baseline (gate.py's shape)
    ab: list[dict[str, Any]] = field(default_factory=list)  # paired A/B verdicts
    capacity: list[dict[str, Any]] = field(default_factory=list)  # capacity searches
    # The baseline key (store/keys.py: the file's path relative to the git repository), when
    # a gate made one; reports show ``nodeid``, baselines and the commit tools use ``key``.
    key: str | None = None

    __test__ = False  # not a pytest test class

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "thresholds": self.thresholds,
            "message": self.message,
            "runs": [r.to_dict() for r in self.runs],
            "comparison": self.comparison,
            "ab": self.ab,
            "capacity": self.capacity,
        }
        if self.key is not None:
            out["key"] = self.key
        return out


def host() -> dict[str, Any]:
    """The machine, as the results document names it."""
    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def results_document(tests: Sequence[TestRecord], provenance: Mapping[str, Any],
                     hardware: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document for ``tests``: provenance (report/provenance.py), host, the machine as
    the baseline profile describes it (``hardware``), and every test with its runs."""
    doc: dict[str, Any] = {
        "provenance": dict(provenance),
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host(),
        "tests": [t.to_dict() for t in tests],
    }
    if hardware is not None:
        doc["hardware"] = dict(hardware)
    return doc
