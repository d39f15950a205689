"""Issue 27, point 3: an A/B's own second engine on a small host. ``--llmperf-ab`` on the
in-process schedule engine, whose ``info()`` reports ``n_threads`` (the session's
``--llmperf-threads``) the way llama.cpp does: "auto" interleaves by runs when A's and B's
threads together exceed the usable cores, by requests when they fit; the verdict's message and
JSON say which ran and why; and a CPU contention warning in the A/B names the A/B's own other
engine instead of "another job or session" (the contention is simulated: the conftest makes
/proc/stat report four runnable threads per core)."""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.run.cpu import usable_cores

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
    return ScheduleEngine(float(settings.model), gap_ms=1.0,
                          info={"settings": {"n_threads": settings.threads,
                                             "engine_args": settings.engine_args()}})


@pytest.fixture(autouse=True)
def busy_cpus(monkeypatch):
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


def test_auto_interleaves_by_runs_when_the_cores_cannot_hold_both_engines(
        llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makeconftest(CONFTEST)
    pt.makepyfile(TEST)
    cores = usable_cores()
    entry, warnings, text = _ab(pt, cores)  # A's and B's threads: twice the cores
    why = f"{cores} core(s) cannot run A's {cores} and B's {cores} threads side by side"
    assert entry["interleave"] == "runs" and entry["interleave_reason"] == why
    assert f"pairs interleaved by runs: {why})" in entry["message"]
    assert f"pairs interleaved by runs: {why}" in " ".join(text.split())  # the terminal
    (contention,) = [w for w in warnings if "oversubscribed" in w]
    assert (f"the A/B's own second engine, {B}, was loaded beside A, idle in this run; its "
            "threads may still have competed with A's") in contention
    assert "another job or session competed" not in contention


def test_auto_interleaves_by_requests_when_they_fit(llmperf_pytester: pytest.Pytester) -> None:
    cores = usable_cores()
    if cores < 2:
        pytest.skip("one core cannot hold two engines of one thread")
    pt = llmperf_pytester
    pt.makeconftest(CONFTEST)
    pt.makepyfile(TEST)
    entry, warnings, _ = _ab(pt, 1)
    why = f"a sequential workload, and {cores} core(s) hold A's 1 and B's 1 threads side by side"
    assert entry["interleave"] == "requests" and entry["interleave_reason"] == why
    assert f"pairs interleaved by requests: {why})" in entry["message"]
    (contention,) = [w for w in warnings if "oversubscribed" in w]
    assert (f"the A/B's own two engines, A and {B}, were loaded side by side and took turns "
            "request by request, and their threads competed") in contention
    assert "interleave='runs'" in contention
