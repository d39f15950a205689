"""``llmperf report`` merging results files that hold the same test (issue 23, class 4): every
test of a run is in one shard, so two shards of one run that both hold a node id (a shard run
twice under two indexes, the suite split two ways) would count it twice ("2/2 tests passed" for
one test). Refused: exit 2, one line naming the test and the two files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import no_internal_traceback, results_doc

from pytest_llmperf.cli import main as cli_main
from pytest_llmperf.cli.report import merged_chunks, merged_document
from pytest_llmperf.files import dumps
from pytest_llmperf.report.provenance import (
    ProvenanceError,
    check_disjoint,
    check_merge,
    make_provenance,
)
from pytest_llmperf.report.view import ReportBuilder
from pytest_llmperf.results import SCHEMA_VERSION


def shard_file(path: Path, index: int, nodeids: list[str]) -> Path:
    doc = results_doc()
    template = doc["tests"][0]
    doc["tests"] = [{**template, "nodeid": n, "outcome": "passed"} for n in nodeids]
    doc["schema_version"] = SCHEMA_VERSION
    doc["provenance"] = make_provenance(
        commit="c0ffee1", branch="main", dirty=False, profiles=[], shard=(index, 2),
        run_id="run-1", host="h", started_at="2026-12-06T00:00:00Z")
    path.write_text(json.dumps(doc))
    return path


def test_two_shards_holding_the_same_test_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    a = shard_file(tmp_path / "shard-0.json", 0, ["t.py::test_one"])
    b = shard_file(tmp_path / "shard-1.json", 1, ["t.py::test_one"])
    merged = tmp_path / "results.json"
    code = cli_main(["report", "--merged", str(merged), "--json", str(a), str(b)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    no_internal_traceback(out + err)
    (line,) = err.strip().splitlines()
    assert line == (f"llmperf report: error: test t.py::test_one is in two files: {a} and {b}; "
                    "each test of a run is in one shard (was a shard run twice, or the suite "
                    "split two ways?)")
    assert not merged.exists()


def test_shards_holding_different_tests_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    a = shard_file(tmp_path / "shard-0.json", 0, ["t.py::test_one"])
    b = shard_file(tmp_path / "shard-1.json", 1, ["t.py::test_two"])
    merged = tmp_path / "results.json"
    code = cli_main(["report", "--merged", str(merged), "--json", str(a), str(b)])
    assert code == 0, capsys.readouterr()
    assert [t["nodeid"] for t in json.loads(merged.read_text())["tests"]] == [
        "t.py::test_one", "t.py::test_two"]


def test_check_disjoint() -> None:
    check_disjoint([("a", ["x", "y"]), ("b", ["z"])])
    with pytest.raises(ProvenanceError, match=r"^test y is in two files: a and c;"):
        check_disjoint([("a", ["x", "y"]), ("b", ["z"]), ("c", ["y"])])


def test_missing_shards_are_named_a_few_and_counted() -> None:
    """Issue 23, item 16: the refusal names the first missing shards and counts the rest
    (one line, whatever the count; the count itself is bounded by ``limits.SHARDS``)."""
    files = [(f"s{i}.json", make_provenance(
        commit="c0ffee1", branch="main", dirty=False, profiles=[], shard=(i, 40),
        run_id="run-1", host="h", started_at="2026-12-06T00:00:00Z")) for i in (0, 5)]
    with pytest.raises(ProvenanceError) as info:
        check_merge(files)
    assert str(info.value) == (
        "missing shard(s) 1/40, 2/40, 3/40, 4/40, 6/40, 7/40, 8/40, 9/40, 10/40, 11/40 and 28 "
        "more: the files given (s0.json, s5.json) hold 2 of 40 shards; give every shard's "
        "file, or --allow-partial to merge what is there")
    check = check_merge(files, allow_partial=True)
    assert check.warnings == [f"partial merge: {str(info.value).split('; give')[0]}"]
    assert check.provenance is not None and len(check.provenance["missing_shards"]) == 38


@pytest.mark.parametrize("tests", [
    [],
    [{"nodeid": "t.py::a", "runs": []}],
    [{"nodeid": 'odd "tests": [] \n\t', "x": [1, [2, {"b": None, "a": "\u00e9"}]], "e": {}},
     {"nodeid": "t.py::b", "runs": [{"summary": {"ttft_p50_ms": 1.5}, "samples": []}]}],
])
def test_the_merged_file_is_written_in_pieces_as_one_dumps_would(tests: list[Any]) -> None:
    """Issue 23, item 20: ``--merged`` encodes a test at a time (the whole document as one
    string, from json's pure-Python indenting encoder, cost 8 times the file); the text is
    the same."""
    header = {"created": "2026-12-06T00:00:00Z", "sources": ["a.json", "b.json"],
              "hosts": [{"machine": "x86_64"}], "warnings": ["w"],
              "provenance": {"commit": "c0ffee1", "missing_shards": []}}
    expected = dumps(merged_document({**header, "tests": tests}))
    assert "".join(merged_chunks(header, iter(tests))) == expected
    assert json.loads(expected)["tests"] == tests


def test_a_shard_that_changes_before_it_is_merged_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several files are read one at a time, then each again to write the merged file (one
    file in memory at a time): a file whose bytes are not the ones checked is refused."""
    a = shard_file(tmp_path / "shard-0.json", 0, ["t.py::test_one"])
    b = shard_file(tmp_path / "shard-1.json", 1, ["t.py::test_two"])
    original = ReportBuilder.report

    def report(self: ReportBuilder, doc: Any, title: str = "") -> Any:
        b.write_text(b.read_text().replace("t.py::test_two", "t.py::test_one"))
        return original(self, doc, title)

    monkeypatch.setattr(ReportBuilder, "report", report)
    merged = tmp_path / "results.json"
    code = cli_main(["report", "--merged", str(merged), "--json", str(a), str(b)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.strip().splitlines() == [
        f"llmperf report: error: {b}: changed while the report was being made; run the "
        "command again"]
    assert not merged.exists() and not list(tmp_path.glob(".results.json.*"))
