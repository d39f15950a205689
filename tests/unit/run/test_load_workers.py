"""Multi-process load generation (``--llmperf-load-workers N``): the connections of a run
spread over N processes on the machine's one monotonic clock, their records merged into one
run. Measured against the known-schedule oracle server like the single-process client, with
the same tolerance (tests/sessions/test_openai_engine_session.py), and every request
accounted for.

Split by tier from tests/test_load_workers.py: these are its unit tests; the others are in
tests/sessions/test_load_workers_session.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pytest_llmperf.engines.base import EngineError
from pytest_llmperf.run.loadgen import deal, run_load, split_concurrency
from pytest_llmperf.run.workload import Workload, build_prompts
from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def test_the_clock_is_system_wide() -> None:
    # perf_counter is CLOCK_MONOTONIC on Linux: the same clock in every process.
    assert "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation


def test_connections_and_requests_are_dealt_evenly() -> None:
    assert split_concurrency(64, 2) == [32, 32]
    assert split_concurrency(5, 2) == [3, 2]
    assert split_concurrency(1, 4) == [1]  # no worker without a connection
    assert deal(range(10), [3, 2]) == [[0, 1, 2, 5, 6, 7], [3, 4, 8, 9]]
    assert sorted(i for part in deal(range(7), [1, 1, 1]) for i in part) == list(range(7))


def test_an_in_process_engine_cannot_be_split() -> None:
    engine = ScheduleEngine(1.0)
    wl = Workload(input_tokens=4, output_tokens=2, requests=2)
    with pytest.raises(EngineError, match="cannot be split over processes"):
        asyncio.run(run_load(engine, build_prompts(engine.tokenizer, wl), wl, workers=2))
