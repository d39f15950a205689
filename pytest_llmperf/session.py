"""What one pytest session gathered: engines it loaded and every test's results."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from .config import Settings
from .engines.base import Engine
from .metrics import RunResult
from .report.progress import ProgressLine


@dataclass
class TestRecord:
    nodeid: str
    outcome: str
    thresholds: dict[str, Any]
    runs: list[RunResult]
    message: str = ""
    comparison: dict[str, Any] | None = None  # against the baseline (gate.py's shape)
    ab: list[dict[str, Any]] = field(default_factory=list)  # paired A/B verdicts

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "thresholds": self.thresholds,
            "message": self.message,
            "runs": [r.to_dict() for r in self.runs],
            "comparison": self.comparison,
            "ab": self.ab,
        }


@dataclass(eq=False)  # hashable by identity: it is registered as a pytest plugin
class SessionState:
    settings: Settings
    enabled: bool
    engines: dict[tuple[Any, ...], Engine] = field(default_factory=dict)
    engine_errors: dict[tuple[Any, ...], str] = field(default_factory=dict)
    tests: list[TestRecord] = field(default_factory=list)
    _progress: ProgressLine | None = None

    def progress(self, config: pytest.Config) -> ProgressLine:
        if self._progress is None:
            self._progress = ProgressLine(config)
        return self._progress

    # A pytest plugin hook: results travel on the test report, so this also works on the
    # pytest-xdist controller, where the reports of every worker arrive.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "llmperf", None)
        if data is None or report.when != "call":
            return
        message = ""
        if not report.passed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = (crash.message if crash is not None else str(report.longrepr)).strip()
        self.tests.append(
            TestRecord(
                nodeid=report.nodeid,
                outcome=report.outcome,
                thresholds=dict(data.get("thresholds", {})),
                runs=[RunResult.from_dict(r) for r in data.get("runs", [])],
                message=message,
                comparison=data.get("comparison"),
                ab=list(data.get("ab") or []),
            )
        )

    def close(self) -> None:
        for engine in self.engines.values():
            with contextlib.suppress(Exception):  # closing must not mask the outcome
                engine.close()
        self.engines.clear()
