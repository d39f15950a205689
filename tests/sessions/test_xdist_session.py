"""Under pytest-xdist: results of every worker reach the controller through the test reports,
and only the controller writes the reports.

Split by tier from tests/test_xdist.py: these are its sessions tests; the others are in
tests/unit/run/test_xdist.py.
"""

from __future__ import annotations

import json

import pytest
from helpers import parse_page

pytest.importorskip("xdist", reason="needs pytest-xdist (the dev extra)")

SUITE = """
import os
from pathlib import Path

import pytest
from pytest_llmperf import Workload, llmperf

@pytest.mark.parametrize("n", [1, 2, 3, 4])
@llmperf(ttft_p95_ms=60000, min_tps=0.1)
def test_chat(llmperf_bench, llm_engine, n):
    # Which worker ran which test, for the assertions below.
    Path(f"ran_{n}_on_{os.environ['PYTEST_XDIST_WORKER']}").write_text("")
    result = llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=2 + n,
                                                requests=2))
    assert result.errors == 0
"""


def test_two_workers_one_set_of_reports(
    llmperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary = llmperf_pytester.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    llmperf_pytester.makepyfile(test_suite=SUITE)
    result = llmperf_pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "--llmperf", "--llmperf-json=r.json",
        "--llmperf-html=r.html", "--llmperf-markdown=r.md",
    )
    result.assert_outcomes(passed=4)
    ran = sorted(p.name for p in llmperf_pytester.path.glob("ran_*"))
    assert len(ran) == 4
    assert {name.rsplit("_on_", 1)[1] for name in ran} == {"gw0", "gw1"}  # both worked

    # Every worker's results in the controller's files, with their own numbers.
    tests = json.loads((llmperf_pytester.path / "r.json").read_text())["tests"]
    by_id = {t["nodeid"]: t for t in tests}
    assert set(by_id) == {f"test_suite.py::test_chat[{n}]" for n in (1, 2, 3, 4)}
    for n in (1, 2, 3, 4):
        summary_n = by_id[f"test_suite.py::test_chat[{n}]"]["runs"][0]["summary"]
        assert summary_n["output_tokens"] == 2 * (2 + n)

    page = parse_page((llmperf_pytester.path / "r.html").read_text())
    sections = page.find_all("section", class_="test")
    assert {s.attrs["data-nodeid"] for s in sections} == set(by_id)
    assert page.find(id="glance-tests").find(class_="big").text() == "4"
    for s in sections:
        tokens = s.find("svg", data_plot="tokens")
        nodeid = s.attrs["data-nodeid"]
        assert int(tokens.attrs["data-tokens"]) == by_id[nodeid]["runs"][0]["summary"][
            "output_tokens"]

    md = (llmperf_pytester.path / "r.md").read_text()
    assert md.count("| `test_chat[") == 4
    # Written once, by the controller: workers would have appended their own tables.
    assert summary.read_text().count("### pytest-llmperf") == 1
    assert summary.read_text().count("| `test_chat[") == 4


DEVICE_SUITE = """
import os
from pathlib import Path

import pytest

@pytest.mark.parametrize("n", range(6))
def test_device(n):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    Path(f"{worker}_{n}").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
"""


def seen_devices(path: object) -> dict[str, set[str]]:
    from pathlib import Path

    seen: dict[str, set[str]] = {}
    for f in Path(str(path)).glob("gw*_*"):
        seen.setdefault(f.name.split("_")[0], set()).add(f.read_text())
    return seen


def test_one_gpu_per_worker(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_devices=DEVICE_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "--llmperf")
    result.assert_outcomes(passed=6)
    assert seen_devices(pytester.path) == {"gw0": {"3"}, "gw1": {"5"}}
    assert "share" not in result.stdout.str()


def test_more_workers_than_gpus_share_them_with_a_warning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_devices=DEVICE_SUITE)
    result = pytester.runpytest_subprocess("-n", "3", "-p", "xdist", "--llmperf")
    result.assert_outcomes(passed=6, warnings=1)
    # xdist's first batch gives each of the 3 workers 2 of the 6 tests.
    assert seen_devices(pytester.path) == {"gw0": {"3"}, "gw1": {"5"}, "gw2": {"3"}}
    result.stdout.fnmatch_lines(["*pytest-llmperf: 3 xdist workers share 2 GPU(s) (3,5)*"])


def test_without_llmperf_the_devices_are_left_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_devices=DEVICE_SUITE)
    pytester.runpytest_subprocess("-n", "2", "-p", "xdist").assert_outcomes(passed=6)
    assert set().union(*seen_devices(pytester.path).values()) == {"3,5"}


def test_an_empty_shard_under_xdist_exits_0(pytester: pytest.Pytester) -> None:
    # The controller collects nothing itself: the workers tell it that the shard is empty.
    pytester.makepyfile("\n".join(f"def test_{i}(): pass" for i in range(10)))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "--llmperf-shard=12/16")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["llmperf: shard 12/16 has no tests (10 tests over 16 shards)"])
