"""pytest-llmperf: LLM inference performance as ordinary pytest tests."""

from __future__ import annotations

import pytest

from .metrics import RequestRecord, RunResult
from .workload import Workload

__version__ = "0.1.0"

#: ``@llmperf(ttft_p95_ms=500, min_tps=2000)`` is ``@pytest.mark.llmperf(...)``.
llmperf = pytest.mark.llmperf

__all__ = ["RequestRecord", "RunResult", "Workload", "__version__", "llmperf"]
