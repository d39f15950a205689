"""The HTML report: real sessions write it; the page is parsed and its numbers checked.

Split by tier from tests/test_html_report.py: these are its sessions tests; the others are in
tests/unit/report/test_html_report.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import (
    SUITE,
    external_references,
    git,
    no_internal_traceback,
    parse_page,
    results_doc,
)

from pytest_llmperf.cli.report import main as cli_main
from pytest_llmperf.formatting import display as fmt
from pytest_llmperf.report.view import describe_host
from pytest_llmperf.store.profile import hardware


def test_session_writes_a_self_contained_page_with_the_measured_numbers(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(test_suite=SUITE)
    out = llmperf_pytester.path / "reports"
    result = llmperf_pytester.runpytest(
        "--llmperf", f"--llmperf-html={out / 'r.html'}", f"--llmperf-json={out / 'r.json'}"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*llmperf reports*", f"HTML report: {out / 'r.html'}"])
    html = (out / "r.html").read_text(encoding="utf-8")
    data = json.loads((out / "r.json").read_text(encoding="utf-8"))
    tests = {t["nodeid"]: t for t in data["tests"]}
    page = parse_page(html)

    # Offline: nothing fetched, no scripts.
    assert external_references(html) == []
    assert not page.find_all("script") and not page.find_all("link")

    # The session at a glance.
    glance = page.find(id="glance-tests")
    assert glance.find(class_="big").text() == "2"
    assert glance.find(class_="n-passed").text() == "1"
    assert glance.find(class_="n-failed").text() == "1"
    thresholds = page.find(id="glance-thresholds")
    assert thresholds.find(class_="n-passed").text() == "3"  # 2 + 1 of 4
    assert thresholds.find(class_="n-failed").text() == "1"
    profile_text = page.find(id="glance-profile").text()
    assert "llama_cpp" in profile_text
    assert describe_host(hardware()) in profile_text  # CPU model and cores
    assert hardware()["cpu_model"] in profile_text

    for nodeid, test in tests.items():
        section = page.find("section", data_nodeid=nodeid)
        summary = test["runs"][0]["summary"]
        # Metrics table: the numbers of the results JSON.
        for key in ("ttft_p50_ms", "tpot_p50_ms", "output_tps"):
            cell = section.find("table", class_="metrics").find("td", data_metric=key)
            assert cell.text() == fmt(summary[key])
        # Thresholds: measured value and verdict per check.
        for check in test["runs"][0]["client"]["checks"]:
            row = section.find("tr", data_threshold=check["name"])
            assert row.find(class_="measured").text() == fmt(check["measured"])
            assert ("pass" if check["passed"] else "FAIL") in row.text()
        # Plots drawn from the samples: one TTFT per request, one ITL per later token.
        requests = summary["requests"]
        out_tokens = test["runs"][0]["workload"]["output_tokens"]
        ttft = section.find("svg", data_plot="cdf", data_metric="ttft")
        assert int(ttft.attrs["data-count"]) == requests
        p50 = float(ttft.find("path", class_="series").attrs["data-p50"])
        assert p50 == pytest.approx(summary["ttft_p50_ms"], rel=1e-4)
        itl = section.find("svg", data_plot="cdf", data_metric="itl")
        assert int(itl.attrs["data-count"]) == requests * (out_tokens - 1)
        tokens = section.find("svg", data_plot="tokens")
        assert int(tokens.attrs["data-tokens"]) == summary["output_tokens"]
        rate = float(tokens.find("path", class_="series").attrs["data-rate"])
        assert rate == pytest.approx(summary["output_tps"], rel=1e-4)

    failed = page.find("section", data_nodeid="test_suite.py::test_too_strict")
    assert "failed" in failed.attrs["class"]
    assert failed.find("pre", class_="failure").text().startswith("llmperf: ttft_p50_ms ")
    assert "no baselines found" in failed.find(class_="trend-note").text()


def test_unwritable_report_path_is_one_clear_error_before_running(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(test_suite=SUITE)
    (llmperf_pytester.path / "afile").write_text("x")
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-html=afile/r.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "pytest-llmperf: --llmperf-html afile/r.html:" in err and "not a directory" in err
    no_internal_traceback(result.stdout.str() + err)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON (Expecting property name enclosed in double quotes: "
                      "line 1 column 2"),
        ('{"schema": "something-else"}', "not a pytest-llmperf results file"),
        ('{"schema": "pytest-llmperf/results", "tests": [{"nodeid": "x", "runs": [{}]}]}',
         "every run needs a 'summary' object"),
    ],
)
def test_cli_bad_results_file_is_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str,
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code = cli_main(["report", "--html", str(tmp_path / "r.html"), "--json", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"llmperf report: error: {bad}: ") and expected in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_cli_missing_inputs_are_clear(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", "--html", str(tmp_path / "r.html"),
                     "--json", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such results file" in capsys.readouterr().err
    assert cli_main(["report", "--html", str(tmp_path / "r.html"),
                     "--baselines", str(tmp_path / "nothing")]) == 2
    assert "no such baselines directory" in capsys.readouterr().err
    assert cli_main(["report", "--json", str(tmp_path / "x.json")]) == 2
    assert "give --html OUT" in capsys.readouterr().err


def test_llmperf_command_has_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("pytest_llmperf.cli")
    (tmp_path / "r.json").write_text(json.dumps(results_doc()))
    assert cli.main(["report", "--html", str(tmp_path / "r.html"),
                     "--json", str(tmp_path / "r.json"), "--baselines", str(tmp_path)]) == 0
    assert parse_page((tmp_path / "r.html").read_text()).find(id="glance-tests")
    (tmp_path / "bad.json").write_text("[]")
    assert cli.main(["report", "--html", str(tmp_path / "s.html"),
                     "--json", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "not a pytest-llmperf results file" in err and "Traceback" not in err


def test_real_session_shows_the_comparison_and_the_trend_over_saved_commits(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("git", reason="the baseline store needs gitpython")
    if shutil.which("git") is None:
        pytest.skip("no git")
    root = llmperf_pytester.path
    llmperf_pytester.makepyfile(test_suite=SUITE.split("@llmperf(ttft_p50_ms")[0])
    (root / ".gitignore").write_text("out/\n__pycache__/\n.pytest_cache/\n")
    git(root, "init", "-q")
    commits = []
    for i in range(3):
        (root / "notes.txt").write_text(f"change {i}\n")
        git(root, "add", "-A")
        git(root, "commit", "-qm", f"change {i}")
        commits.append(git(root, "rev-parse", "HEAD"))
        args = ["--llmperf", "--llmperf-save", "-p", "no:cacheprovider"]
        if i == 2:
            args.append("--llmperf-html=out/r.html")
        llmperf_pytester.runpytest(*args).assert_outcomes(passed=1)
    files = sorted((root / "baselines").glob("*/*.json"))
    assert {f.stem for f in files} == set(commits)
    stored = json.loads(next(f for f in files if f.stem == commits[1]).read_text())
    base_runs = stored["tests"]["test_suite.py::test_fast"]["runs"]

    page = parse_page((root / "out" / "r.html").read_text())
    assert page.find(id="glance-baseline").find(class_="big").text() == commits[1][:10]
    assert page.find(id="glance-profile").find("dd").text() == stored["profile_id"]
    section = page.find("section", data_nodeid="test_suite.py::test_fast")
    row = section.find("table", class_="comparison").find("tr", data_metric="ttft_p50_ms")
    assert row.find_all("td")[1].text() == fmt(base_runs[0]["summary"]["ttft_p50_ms"])
    # Three saved commits, oldest first; this run was saved too, so it is the last point.
    trend = section.find("svg", data_plot="trend", data_metric="output_tps")
    points = trend.find_all("circle", class_="pt")
    assert [p.attrs["data-commit"] for p in points] == [c[:7] for c in commits]
    assert "current" in points[-1].attrs["class"]
    assert float(points[1].attrs["data-value"]) == pytest.approx(
        base_runs[0]["summary"]["output_tps"], rel=1e-5)


def test_report_that_cannot_be_written_at_the_end_is_one_error_line(
    llmperf_pytester: pytest.Pytester,
) -> None:
    # The path is fine when the session starts; the test then puts a file where the
    # report's directory should go.
    llmperf_pytester.makepyfile(test_suite=SUITE.split("@llmperf(ttft_p50_ms")[0] + (
        "\n\ndef test_block():\n"
        "    from pathlib import Path\n"
        "    Path('out').write_text('in the way')\n"))
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-html=out/r.html",
                                        "--llmperf-markdown=md/r.md")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*llmperf reports*", "Markdown summary: md/r.md",
                                 "ERROR: cannot write the HTML report to out/r.html: "
                                 "File exists: *out*"])
    no_internal_traceback(result.stdout.str())
    assert (llmperf_pytester.path / "md" / "r.md").exists()


def test_html_without_llmperf_says_there_are_no_results(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(test_suite=SUITE)
    result = llmperf_pytester.runpytest("--llmperf-html=r.html")
    result.assert_outcomes(skipped=2)
    page = parse_page((llmperf_pytester.path / "r.html").read_text())
    assert "--llmperf" in page.find(id="no-results").text()
    assert page.find(id="glance-tests").find(class_="big").text() == "0"
