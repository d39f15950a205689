"""pytest-llmperf: LLM inference performance as ordinary pytest tests.

The public names: ``llmperf`` (the marker), ``Workload``, ``RunResult``, ``RequestRecord``.
They are imported on first use (their modules need numpy), so loading the plugin stays cheap
for every pytest run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .run.metrics import RequestRecord, RunResult
    from .run.workload import Workload

__version__ = "0.1.0"

#: ``@llmperf(ttft_p95_ms=500, min_tps=2000)`` is ``@pytest.mark.llmperf(...)``.
llmperf = pytest.mark.llmperf

__all__ = ["RequestRecord", "RunResult", "Workload", "__version__", "llmperf"]


def __getattr__(name: str) -> Any:
    if name == "Workload":
        from .run.workload import Workload

        return Workload
    if name in ("RequestRecord", "RunResult"):
        from .run import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
