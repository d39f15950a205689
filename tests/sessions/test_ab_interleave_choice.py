"""Issue 27, point 3: an A/B's own second engine on a small host. ``--llmperf-ab`` on the
in-process schedule engine, whose ``info()`` either reports ``n_threads`` (the session's
``--llmperf-threads``) the way llama.cpp does, or names itself an in-process vLLM engine
(workers of its own, threads unknown): "auto" interleaves by runs for two vLLM-like engines
on a small host (the conftest makes the host 2 cores), by requests for engines that compute
only while they answer; the verdict's message and JSON say which ran and why; and a CPU
contention warning in the A/B names the A/B's own other engine instead of "another job or
session" (the contention is simulated: the conftest makes /proc/stat report four runnable
threads per core)."""

from __future__ import annotations

import json

import pytest

CONFTEST = """
import itertools

import pytest

from pytest_llmperf.run import cpu
from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def pytest_llmperf_engine_names():
    return ["schedule"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "schedule":
        return None
    kind = "vllm" if settings.threads == 99 else "schedule"  # 99: like an in-process vLLM
    threads = {} if kind == "vllm" else {"n_threads": settings.threads}
    return ScheduleEngine(float(settings.model), gap_ms=1.0,
                          info={"kind": kind, "settings": {**threads,
                                                           "engine_args": settings.engine_args()}})


@pytest.fixture(autouse=True)
def busy_cpus(monkeypatch):
    from pytest_llmperf.run import loadgen

    monkeypatch.setattr(loadgen, "usable_cores", lambda: 2)  # a small host
    ticks = itertools.count()
    busy = 1 + 4 * cpu.usable_cores()  # + 1: the sampler itself
    monkeypatch.setattr(cpu, "read_stat",
                        lambda path=cpu.STAT: cpu.StatReading(busy, 0, 1000 * next(ticks)))
"""

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf(gate=["tpot_p50_ms"], max_regression_pct=10000)
def test_one(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=3, requests=2))
"""

B = "B (engine_arg.max_num_seqs=1)"


def _ab(pt: pytest.Pytester, threads: int) -> tuple[dict, list[str], str]:
    out = pt.path / "r.json"
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=1",
                       f"--llmperf-threads={threads}", "--llmperf-ab",
                       "engine_arg.max_num_seqs=1", "--llmperf-json", str(out),
                       "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    (test,) = json.loads(out.read_text())["tests"]
    (entry,) = test["ab"]
    (run,) = test["runs"]  # A's last run, kept as the test's
    return entry, [str(w) for w in run["warnings"]], res.stdout.str()


def test_auto_interleaves_by_runs_when_the_host_cannot_hold_both_engines(
        llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makeconftest(CONFTEST)
    pt.makepyfile(TEST)
    entry, warnings, text = _ab(pt, 99)  # two engines like in-process vLLM on 2 cores
    why = ("2 core(s) cannot run A (an in-process vLLM engine) and B (an in-process vLLM "
           "engine) side by side")
    assert entry["interleave"] == "runs" and entry["interleave_reason"] == why
    assert f"pairs interleaved by runs: {why})" in entry["message"]
    assert f"pairs interleaved by runs: {why}" in " ".join(text.split())  # the terminal
    (contention,) = [w for w in warnings if "oversubscribed" in w]
    assert (f"the A/B's own second engine, {B}, was loaded beside A, idle in this run; its "
            "threads may still have competed with A's") in contention
    assert "another job or session competed" not in contention


def test_auto_interleaves_by_requests_for_engines_that_take_turns(
        llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makeconftest(CONFTEST)
    pt.makepyfile(TEST)
    entry, warnings, _ = _ab(pt, 2)  # like llama.cpp: busy only while answering
    why = "a sequential workload: A (2 threads) and B (2) take turns, one busy at a time"
    assert entry["interleave"] == "requests" and entry["interleave_reason"] == why
    assert f"pairs interleaved by requests: {why})" in entry["message"]
    (contention,) = [w for w in warnings if "oversubscribed" in w]
    assert (f"the A/B's own two engines, A and {B}, were loaded side by side and took turns "
            "request by request, and their threads competed") in contention
    assert "interleave='runs'" in contention
