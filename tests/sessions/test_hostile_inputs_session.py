"""Issue 15, classes 6 and 7: odd values from a user or a file are rejected where they enter,
with one line naming the bad value; nothing is reinterpreted and nothing ends in a traceback
from our code.

The edges: ``settings.convert`` (command line, ini file, environment, the engine factory),
``Workload.__post_init__`` and the JSONL prompts reader, ``validate_marker``, and the results
files ``llmperf report --json`` reads (``view.load_results``, ``RequestRecord.from_dict``).

Split by tier from tests/test_hostile_inputs.py: these are its sessions tests; the others are
in tests/unit/test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from helpers import make_run, no_internal_traceback, parse_page, results_doc

from pytest_llmperf.cli.main import main as cli_main
from pytest_llmperf.cli.report import merged_document
from pytest_llmperf.files import dumps
from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.provenance import make_provenance
from pytest_llmperf.report.view import History, build_report, load_results
from pytest_llmperf.results import SCHEMA_VERSION

# --------------------------------------------------------------------------- real sessions


def test_session_with_an_enormous_threshold_is_a_clean_collection_error(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmperf(ttft_p95_ms=10**400)
        def test_huge(llmperf_bench, llm_engine):
            pass
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "test_huge: ttft_p95_ms=1000" in out and "is not a finite number" in out
    no_internal_traceback(out)


def test_session_with_an_unknown_regression_metric_fails_before_any_benchmark(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmperf(max_regression_pct={"tpot_p50": 5})
        def test_unknown_metric(llmperf_bench, llm_engine):
            raise AssertionError("the benchmark body ran")
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert ("test_unknown_metric: max_regression_pct names unknown metric(s) tpot_p50" in out)
    assert "the benchmark body ran" not in out
    no_internal_traceback(out)


@pytest.mark.parametrize(("option", "fragment"), [
    ("--llmperf-request-timeout=0", "--llmperf-request-timeout: '0' must be > 0"),
    ("--llmperf-alpha=nan", "--llmperf-alpha: 'nan' is not a finite number"),
    ("--llmperf-alpha=0", "--llmperf-alpha: '0' must be between 0 and 0.5"),
])
def test_session_with_a_bad_option_is_one_usage_error_line(
    llmperf_pytester: pytest.Pytester, option: str, fragment: str
) -> None:
    llmperf_pytester.makepyfile("def test_x():\n    pass\n")
    result = llmperf_pytester.runpytest("--llmperf", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"ERROR: pytest-llmperf: {fragment}" + lines[0].split(fragment, 1)[1]]
    no_internal_traceback(err + result.stdout.str())


def test_session_with_a_bad_temperature_fails_the_call_in_one_line(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmperf()
        def test_hot(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, requests=1, warmup=0, input_tokens=8, output_tokens=2,
                          temperature="hot")
        """
    )
    result = llmperf_pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "llmperf: bad workload: Workload.temperature='hot' is not a number" in out
    no_internal_traceback(out)


def test_an_enormous_count_fails_at_once_in_one_line(
    llmperf_pytester: pytest.Pytester,
) -> None:
    """Issue 23: ``Workload(requests=10**30)`` was accepted and then built prompts until the
    machine's memory ran out. Every count has a limit (pytest_llmperf/limits.py), refused
    before anything is built: in the test's own Workload(...), in llmperf_bench's keyword
    arguments, in the marker."""
    llmperf_pytester.makepyfile(test_huge="""
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_requests(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(requests=10**30, warmup=0, input_tokens=8,
                                               output_tokens=2))

        @llmperf()
        def test_kwargs(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, requests=1, warmup=0, concurrency=10**9)
        """, test_marker="""
        from pytest_llmperf import llmperf

        @llmperf(repeats=10**30)
        def test_repeats(llmperf_bench, llm_engine):
            raise AssertionError("the body ran")
        """)
    # A hang guard, not a timing: without the limits the first test never ends.
    result = llmperf_pytester.runpytest_subprocess("--llmperf",
                                                   "--continue-on-collection-errors",
                                                   timeout=120)
    result.assert_outcomes(failed=2, errors=1)
    out = result.stdout.str()
    assert ("test_huge.py:5: llmperf: bad workload: Workload.requests="
            "1000000000000000000000000000000 is above the limit: at most 10,000,000 (every "
            "request's prompt and record are held in memory") in out
    assert ("llmperf: bad workload: Workload.concurrency=1000000000 is above the limit: at "
            "most 100,000 (") in out
    assert ("test_repeats: repeats=1000000000000000000000000000000 is above the limit: at "
            "most 10,000 (") in out
    assert "the body ran" not in out
    no_internal_traceback(out)


# ------------------------------------------------------------------- issue 23: llmperf report

REPORT_MEMORY_LIMIT = 1 << 30  # address space of the command under test (it needs ~300 MiB)


def _bounded_report(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``llmperf report ARGS`` in a process whose memory and time are limited: a regression
    fails the test (MemoryError, or the timeout) instead of filling the machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (REPORT_MEMORY_LIMIT, REPORT_MEMORY_LIMIT))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "report", *args],
                          cwd=cwd, env=env, preexec_fn=limit, capture_output=True, text=True,
                          timeout=120, check=False)


def _shard_file(path: Path, shard: str) -> Path:
    doc = results_doc()
    doc["schema_version"] = SCHEMA_VERSION
    doc["provenance"] = make_provenance(
        commit="c0ffee1", branch="main", dirty=False, profiles=[], shard=None,
        run_id="run-1", host="h", started_at="2026-12-06T00:00:00Z")
    doc["provenance"]["shard"] = shard
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize("extra", [[], ["--allow-partial"]])
def test_llmperf_report_refuses_a_huge_shard_count_in_one_line(
    tmp_path: Path, extra: list[str],
) -> None:
    """Item 16: ``provenance.shard`` "1/999999999999" built the list of the missing shards (a
    MemoryError after 1.7 GB); a COUNT above limits.SHARDS is refused, naming the file and
    the limit."""
    path = _shard_file(tmp_path / "shard.json", "1/999999999999")
    merged = tmp_path / "merged.json"
    result = _bounded_report(["--json", str(path), "--merged", str(merged),
                              "--html", str(tmp_path / "r.html"), *extra], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"llmperf report: error: {path}: provenance.shard='1/999999999999' must be "
        "'INDEX/COUNT' with 0 <= INDEX < COUNT, COUNT at most 10,000 (shards of one suite; "
        "merging their results files lists the missing ones)"]
    assert not merged.exists() and not (tmp_path / "r.html").exists()


def test_llmperf_report_plots_a_chunk_claiming_a_huge_token_count(tmp_path: Path) -> None:
    """Item 16: a chunk's token count (a number from the file) made the ITL plot list that
    many gaps (10**12: a MemoryError); they are counted, and the plot drawn."""
    doc = results_doc()
    sample = doc["tests"][0]["runs"][0]["samples"][1]
    sample["chunk_tokens"][1] = 10**12
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = _bounded_report(["--json", str(path), "--html", str(tmp_path / "r.html")],
                             tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    page = parse_page((tmp_path / "r.html").read_text(encoding="utf-8"))
    section = page.find("section", data_nodeid=doc["tests"][0]["nodeid"])
    itl = section.find("svg", data_plot="cdf", data_metric="itl")
    tokens = sum(len(s["chunk_ns"]) - 1 for s in doc["tests"][0]["runs"][0]["samples"])
    assert int(itl.attrs["data-count"]) == tokens - 1 + 10**12


def _big_shards(root: Path, count: int, tests_per_file: int) -> list[Path]:
    """``count`` shard files of one run, each with its own tests of many samples."""
    run = make_run([float(40 + i % 50) for i in range(400)], itl_ms=5.0, tokens=40)
    paths = []
    for index in range(count):
        doc = results_doc()
        doc["schema_version"] = SCHEMA_VERSION
        doc["provenance"] = make_provenance(
            commit="c0ffee1", branch="main", dirty=False, profiles=[], shard=(index, count),
            run_id="run-1", host="h", started_at="2026-12-06T00:00:00Z")
        doc["tests"] = [{"nodeid": f"t.py::test_{index}_{t}", "outcome": "passed",
                         "thresholds": {}, "runs": [run]} for t in range(tests_per_file)]
        paths.append(root / f"shard-{index}.json")
        paths[-1].write_text(dumps(doc), encoding="utf-8")
    return paths


def test_llmperf_report_merges_shards_holding_one_file_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Item 20: merging shards held every file's tests and the merged document as one string
    (from json's pure-Python indenting encoder): memory grew with the sum of the files, 8
    times it (29 times the largest of 4 files here; 10 times without --merged). Now one file
    is in memory at a time: the peak of Python's allocations stays under 5 times the largest
    file (about 3), whatever their number. The outputs are those of the files merged in
    memory."""
    paths = _big_shards(tmp_path, count=3, tests_per_file=4)
    largest = max(p.stat().st_size for p in paths)
    out = {"--merged": tmp_path / "merged.json", "--html": tmp_path / "r.html",
           "--markdown": tmp_path / "r.md"}
    args = ["report", "--json", *map(str, paths), "--baselines", str(tmp_path / "none"),
            *(str(a) for pair in out.items() for a in pair)]
    (tmp_path / "none").mkdir()
    render_html(build_report(results_doc()))  # the page's template compiled, not measured
    tracemalloc.start()
    try:
        assert cli_main(args) == 0, capsys.readouterr()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * largest, (peak, largest)
    doc = load_results(paths)
    assert out["--merged"].read_text(encoding="utf-8") == dumps(merged_document(doc))
    report = build_report(doc, History(), with_plots=True)
    assert out["--html"].read_text(encoding="utf-8") == render_html(report)
