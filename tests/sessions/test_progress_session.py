"""The progress line as users see it (report/progress.py), against the oracle: in a log, only
a slow run shows, on lines of its own, and pytest's next result starts a fresh line with its
file's name; on a terminal, one line rewritten in place and erased at the end; under -q,
nothing for a short run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_llmperf.report import progress
from pytest_llmperf.testing.oracle import OracleServer

SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_a(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=4, requests=3, warmup=0))

@llmperf()
def test_b(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=4, requests=3, warmup=0))
"""


@pytest.fixture
def url(llmperf_oracle: Callable[..., OracleServer]) -> str:
    return llmperf_oracle(ttft_ms=5, itl_ms=2).url


def test_a_slow_run_in_a_log_gets_lines_of_its_own(
        pytester: pytest.Pytester, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "SLOW_S", 0.0)  # every run counts as slow here
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--llmperf", f"--llmperf-url={url}", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    lines = result.stdout.lines
    first = next(i for i, line in enumerate(lines) if line.startswith("[llmperf] test_suite"))
    # Each progress line is a line of its own (none behind pytest's "test_suite.py " prefix),
    # and after a run pytest starts its next result afresh, with the file's name.
    assert all(line.startswith("[llmperf] ") for line in lines if "requests (" in line)
    assert lines[first - 1] == "test_suite.py "
    done = [i for i, line in enumerate(lines) if ": 3/3 requests (" in line]
    assert len(done) == 2
    assert lines[done[0] + 1].startswith("test_suite.py .")


def test_a_short_run_under_q_shows_nothing(pytester: pytest.Pytester, url: str) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--llmperf", f"--llmperf-url={url}", "-q")
    result.assert_outcomes(passed=2)
    assert "[llmperf]" not in result.stdout.str()
    assert result.stdout.lines[0].startswith("..")  # -q's dots, untouched


def test_on_a_terminal_one_line_is_rewritten_and_erased(
        pytester: pytest.Pytester, url: str) -> None:
    pytester.makepyfile(test_suite=SUITE)
    # A terminal as pytest knows one: markup on (--color=yes stands in for a tty here).
    result = pytester.runpytest("--llmperf", f"--llmperf-url={url}", "--color=yes")
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    # Drawn in place (erase-and-write) on a line below pytest's "test_suite.py ", erased at
    # the end and the cursor back at the end of pytest's line (one up, column 15), where the
    # dots go on: both dots on the one line, as without the plugin.
    # (pytester splits lines at the carriage return of ERASE: the clearing escape stays.)
    clear = progress.ERASE.lstrip("\r")
    assert clear + "[llmperf] test_suite.py::test_a: 3/3 requests (" in text
    assert text.count(clear + progress.UP + "\x1b[15G") == 1
    assert text.count(clear + progress.UP + "\x1b[16G") == 1  # after one dot
    assert "[100%]" in text
