"""Multi-turn sessions (run/conversation.py): against the known-schedule oracle server (history
grows with the model's own answers, think time, per-turn TTFT with and without a modelled
prefix cache, the ShareGPT JSONL input, bad input) and against the real llama.cpp engine
(per-turn TTFT with its prefix cache on and off).

Split by tier from tests/test_multiturn.py: these are its unit tests; the others are in
tests/sessions/test_multiturn_session.py, tests/e2e/test_multiturn_e2e.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.run.workload import Workload, WorkloadError


@pytest.mark.parametrize(("fields", "message"), [
    ({"turns": 0}, "Workload.turns=0 must be a whole number >= 1"),
    ({"turns": 2, "think_time_s": -1}, "Workload.think_time_s=-1 must be >= 0"),
    ({"turns": 2, "think_time_s": [2, 1]}, "low must be <= high"),
    ({"turns": 2, "think_time_s": [1]}, "must be seconds or \\[low, high\\]"),
    ({"think_time_s": 1.0}, "think_time_s is for multi-turn sessions"),
    ({"turns": 2, "shared_prefix_tokens": 4}, "shared_prefix_tokens does not apply"),
    ({"conversations_file": "/nonexistent.jsonl"}, "does not exist"),
])
def test_bad_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        Workload(**fields)  # type: ignore[arg-type]
