"""A gate that could not have failed says so (issue 25): real pytest sessions in a real git
repository, the known-schedule engine with a per-request jitter of about 10% (a noisy
runner), two repeats a side against a 5% tolerance. The pass is reported ``blind`` with its
MDE and the repeats it needs (terminal, JSON, JUnit), and ``--llmperf-inconclusive=fail``
fails it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helpers import git

CONFTEST = """
import asyncio
import random
import time

from pytest_llmperf.testing.schedule_engine import ScheduleEngine
from pytest_llmperf.engines.base import Generation


class JitterEngine(ScheduleEngine):
    \"\"\"Each request's token gap drawn around the schedule's (a noisy machine).\"\"\"

    async def generate(self, prompt, params, on_chunk):
        gap = self.gap_ms * random.lognormvariate(0.0, 0.15)
        await asyncio.sleep(self.first_ms / 1000)
        on_chunk(time.perf_counter_ns(), 1)
        for _ in range(params.max_tokens - 1):
            await asyncio.sleep(gap / 1000)
            on_chunk(time.perf_counter_ns(), 1)
        return Generation(output_tokens=params.max_tokens, source="engine")


def pytest_llmperf_engine_names():
    return ["jitter"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "jitter":
        return None
    return JitterEngine(float(settings.model), gap_ms=8.0, kind="jitter")
"""

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf(repeats=2, max_regression_pct=5)
def test_stream(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=8, requests=3))
    assert result.errors == 0
"""

NODE = "test_stream.py::test_stream"


def session(pt: pytest.Pytester, *args: str) -> tuple[Any, dict[str, Any]]:
    out = pt.path / "results.json"
    junit = pt.path / "junit.xml"
    res = pt.runpytest("--llmperf", f"--llmperf-json={out}", f"--junitxml={junit}", *args)
    data = json.loads(out.read_text()) if out.exists() else {}
    data["junit"] = junit.read_text() if junit.exists() else ""
    out.unlink(missing_ok=True)
    junit.unlink(missing_ok=True)
    return res, data


def test_a_noisy_gate_passes_blind_and_fails_when_asked(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    pt.makeini("""
        [pytest]
        llmperf_engine = jitter
        llmperf_model = 10
        """)
    pt.makeconftest(CONFTEST)
    pt.makepyfile(test_stream=TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nresults.json\n"
                                        "junit.xml\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", "-A")
    git(pt.path, "commit", "-q", "-m", "suite")
    res, _ = session(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    git(pt.path, "add", "-A")
    git(pt.path, "commit", "-q", "-m", "baseline")

    res, data = session(pt)
    res.assert_outcomes(passed=1)  # blind is a warning, not a failure
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared"
    metrics = {m["metric"]: m for m in comp["metrics"] if m["gated"]}
    tpot = metrics["tpot_p50_ms"]
    # Two repeats a side (df 2) at this noise: the gate could only see changes far above 5%.
    assert tpot["verdict"] == "ok" and tpot["blind"] is True
    assert tpot["mde_pct"] > 5.0 and tpot["needs"] > 2 and tpot["needs_unit"] == "repeats"
    line = next(b for b in comp["blind"] if b.startswith("blind: tpot_p50_ms "))
    assert line == (f"blind: tpot_p50_ms could only see changes of {tpot['mde_pct']:.1f}% or "
                    f"more at 80% power (tolerance 5%); needs about {tpot['needs']} repeats")
    assert comp["gate"] == "ok"  # a blind pass leaves the saved baseline clean
    out = res.stdout.str()
    assert f"  WARNING {line}" in out
    assert re.search(r"tpot_p50_ms: ok, .*MDE \d+\.\d%\)", out)
    assert f"warning {NODE}: blind: tpot_p50_ms" in out
    assert "llmperf_warning" in data["junit"] and "blind: tpot_p50_ms" in data["junit"]

    res, data = session(pt, "--llmperf-inconclusive=fail")
    res.assert_outcomes(failed=1)
    assert data["tests"][0]["outcome"] == "failed"
    assert "llmperf: blind: tpot_p50_ms could only see changes of" in res.stdout.str()


def test_calibrate_runs_aa_sessions_and_writes_the_noise(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``llmperf calibrate``: three real A/A sessions of the jitter suite; per test and gated
    metric the measured CV, the MDEs and what each gate needs, in the JSON and the table."""
    from pytest_llmperf.cli.main import main

    pt = pytester
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pt.makeini("""
        [pytest]
        llmperf_engine = jitter
        llmperf_model = 10
        """)
    pt.makeconftest(CONFTEST)
    pt.makepyfile(test_stream=TEST)
    monkeypatch.chdir(pt.path)
    out = pt.path / "calibration.json"
    assert main(["calibrate", "--sessions", "3", "--json", str(out), "--",
                 "test_stream.py"]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "pytest-llmperf/calibration" and doc["sessions"] == 3
    entry = doc["tests"][NODE]
    assert entry["sessions"] == 3
    tpot = entry["metrics"]["tpot_p50_ms"]
    assert tpot["sessions"] == 3 and tpot["cv_pct"] > 0 and tpot["run_cv_pct"] > 0
    assert tpot["tolerance_pct"] == 5.0 and tpot["stored"]["repeats"] == 2
    # Three sessions of a 15%-jitter engine: neither gate can see 5%.
    assert tpot["stored"]["mde_pct"] > 5.0 and tpot["stored"]["blind"] is True
    assert tpot["compare"]["pairs"] == 10 and tpot["compare"]["needs_pairs"] >= 7
    printed = capsys.readouterr().out
    assert NODE in printed and "tpot_p50_ms" in printed and f"wrote {out}" in printed
    # Bad usage is one line, exit 2.
    assert main(["calibrate", "--sessions", "1", "--json", str(out)]) == 2
    assert "at least 2 sessions" in capsys.readouterr().err
