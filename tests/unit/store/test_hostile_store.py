"""The baseline store under hostile or careless use (issue #15): concurrent saves from many
processes, interrupted saves, corrupt and mistyped baseline files, dirty saves, a shallow
clone, and a pytest rootdir moved outside the repository.

Split by tier from tests/test_hostile_store.py: these are its unit tests; the others are in
tests/sessions/test_hostile_store_session.py.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import STORE_NODE as NODE
from helpers import STORE_SHA as SHA
from helpers import STORE_SHA2 as SHA2
from helpers import baseline_doc as _doc
from helpers import baseline_doc_with_run as _with_run
from helpers import hostile_run as run
from helpers import hostile_save as save

from pytest_llmperf.cli.main import main as llmperf_main
from pytest_llmperf.files import dumps
from pytest_llmperf.store import backends
from pytest_llmperf.store import baselines as store
from pytest_llmperf.store.backends import open_store
from pytest_llmperf.store.baselines import BaselineError, BaselineStore

# --------------------------------------------------- class 8a: interrupted saves' leftovers


def test_temporaries_of_an_interrupted_save_are_never_read_and_cleaned_when_stale(
    tmp_path: Path,
) -> None:
    st = BaselineStore(tmp_path / "baselines")
    path = save(st, [run("first")])
    # What atomic_write_text leaves when the process dies between mkstemp and the rename.
    stale = path.parent / f".{path.name}.k2j3h4.tmp"
    stale.write_text(path.read_text()[:100])
    fresh = path.parent / f".{path.name}.a8s7d6.tmp"
    fresh.write_text("{")
    old = time.time() - store.LOCK_TIMEOUT_S - 10
    os.utime(stale, (old, old))
    assert [e.path for e in st.entries(dirty=None)] == [path]
    loaded, errors = st.load_all(dirty=None)
    assert [b.path for b in loaded] == [path] and errors == []
    save(st, [run("second")])
    assert not stale.exists()
    assert fresh.exists()  # it may belong to a save still running elsewhere
    assert [r["client"]["tag"] for r in store.load(path).runs(NODE)] == ["first", "second"]


# ------------------------------------------------------------ class 6: mistyped files


MISTYPED = [
    (_with_run(summary={"ttft_p50_ms": "fast"}), "summary['ttft_p50_ms'] is \"fast\""),
    (_with_run(summary={"ttft_p50_ms": True}), "summary['ttft_p50_ms'] is true"),
    (_with_run(summary={"ttft_p50_ms": [1]}), "summary['ttft_p50_ms'] is [1]"),
    (_with_run(summary=[1, 2]), "runs[0].summary is [1, 2]"),
    (_with_run(samples={"a": 1}), "runs[0].samples is"),
    (_with_run(samples=[1, 2]), "runs[0].samples[0] is 1"),
    (_with_run(workload="w"), "runs[0].workload is \"w\""),
    (_doc(tests={NODE: {"runs": {"a": 1}}}), "has no valid 'runs' list"),
    (_doc(tests={NODE: {"runs": [7]}}), "runs[0] is 7"),
    (_doc(tests={NODE: ["x"]}), f"tests[{NODE!r}] is [\"x\"]"),
    (_doc(tests=[]), "'tests' missing or not a object"),
    (_doc(committed_at=20260101), "'committed_at' is 20260101"),
    (_doc(branch=3), "'branch' is 3"),
    (_doc(dirty="no"), "'dirty' is \"no\""),
]


@pytest.mark.parametrize("doc,needle", MISTYPED)
def test_mistyped_baselines_are_one_line_errors_naming_file_and_field(
    tmp_path: Path, doc: dict[str, Any], needle: str,
) -> None:
    path = tmp_path / "p1" / f"{SHA}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError) as err:
        store.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: malformed baseline (") and needle in msg
    assert "\n" not in msg


def test_non_finite_numbers_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p1" / f"{SHA}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_doc()).replace("10.0", "Infinity", 1))
    with pytest.raises(BaselineError, match="Infinity is not a number JSON allows"):
        store.load(path)
    path.write_text(json.dumps(_doc()).replace("10.0", "1e400", 1))  # overflows to inf
    with pytest.raises(BaselineError, match="is inf, not a finite number"):
        store.load(path)
    path.write_text(json.dumps(_doc()).replace("10.0", "1" + "0" * 400, 1))  # a huge int
    with pytest.raises(BaselineError, match="not a finite number"):
        store.load(path)


# --------------------------------------------------------- class 8b: dirty saves apart


def test_dirty_runs_go_to_their_own_file(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path)
    clean = save(st, [run("clean")])
    dirty = save(st, [run("dirty")], dirty=True)
    assert clean.name == f"{SHA}.json" and dirty.name == f"{SHA}.dirty.json"
    assert [r["client"]["tag"] for r in store.load(clean).runs(NODE)] == ["clean"]
    assert store.load(clean).dirty is False
    d = store.load(dirty)
    assert d.dirty is True and [r["client"]["tag"] for r in d.runs(NODE)] == ["dirty"]
    assert [e.path for e in st.entries()] == [clean]  # the default: clean files only
    assert [e.path for e in st.entries(dirty=None)] == [dirty, clean]
    assert st.commits("p1") == {SHA} and st.commits("p1", dirty=True) == {SHA}
    # A dirty file that says it is clean lies about where it belongs.
    doc = json.loads(dirty.read_text())
    doc["dirty"] = False
    dirty.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="does not match where it lies"):
        store.load(dirty)


# ------------------------------------------- issue 23: the store as a trust boundary, round 2


@pytest.mark.parametrize(("branch", "needle"), [
    ("HEAD", "names the current commit"),
    ("@", "names the current commit"),
    ("-x", "cannot start with '-'"),
    ("--upload-pack=evil", "cannot start with '-'"),
    ("refs/heads/x", "not a reference under refs/"),
    ("refs/heads/HEAD", "not a reference under refs/"),
    ("a..b", "'..'"),
    ("a b", "' '"),
    ("a~1", "'~'"),
    ("a^", "'^'"),
    ("a:b", "':'"),
    ("a?", "'?'"),
    ("a*", "'*'"),
    ("a[b", "'['"),
    ("a\\b", "'\\\\'"),
    ("a\x01b", "'\\x01'"),
    ("a@{1}", "'@{'"),
    ("a//b", "'//'"),
    ("/a", "cannot start with '/'"),
    ("a/", "end with '/'"),
    ("a.", "end with '/' or '.'"),
    (".a", "start with '.'"),
    ("a/.b", "start with '.'"),
    ("a.lock", "end with '.lock'"),
    ("a.lock/b", "end with '.lock'"),
    ("", "empty"),
])
def test_store_branch_names_git_would_refuse_or_read_otherwise_are_refused(
        branch: str, needle: str) -> None:
    problem = backends.branch_problem(branch)
    assert problem is not None and needle in problem and "\n" not in problem


@pytest.mark.parametrize("branch", ["llmperf-baselines", "perf/baselines", "x/HEAD",
                                    "release-1.2", "a.b/c_d", "é"])
def test_ordinary_store_branch_names_are_accepted(branch: str) -> None:
    assert backends.branch_problem(branch) is None


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("text", "needle"), [
    (json.dumps(_doc()).replace('"workload": {', '"workload": {"x": ' + _nested(200000) + ", ",
                                1), "JSON nested too deeply to read"),
    (json.dumps(_doc()).replace('"workload": {', '"workload": {"x": ' + _nested(100) + ", ",
                                1), "nested deeper than 64 levels"),
])
def test_deeply_nested_baselines_are_one_line_errors(tmp_path: Path, text: str,
                                                     needle: str) -> None:
    """Nesting the parser cannot follow, and nesting it can but a later merge or dump could
    not (Python's encoder recurses): both are refused when the file is read, by name."""
    path = tmp_path / "p1" / f"{SHA}.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(BaselineError) as err:
        store.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and needle in msg and "\n" not in msg
    # ... and a pull names it and moves the rest.
    save(BaselineStore(tmp_path), [run("other")], sha=SHA2)
    pulled = open_store(str(tmp_path)).pull(tmp_path / "into")
    assert pulled.files == [(f"p1/{SHA2}.json", 1)]
    assert len(pulled.errors) == 1 and needle in pulled.errors[0]


def test_a_baseline_over_the_size_limit_is_not_read_and_the_limit_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = BaselineStore(tmp_path / "dir")
    big = save(st, [run("big", samples=2000)])
    save(st, [run("small")], sha=SHA2)
    monkeypatch.setenv("LLMPERF_MAX_FILE_MB", "0.0625")  # 64 KiB
    assert big.stat().st_size > 64 * 1024
    pulled = open_store(str(tmp_path / "dir")).pull(tmp_path / "into")
    assert pulled.files == [(f"p1/{SHA2}.json", 1)]
    [error] = pulled.errors
    assert error.startswith(f"{big}: ") and "larger than the 0.0625 MiB limit" in error
    assert "LLMPERF_MAX_FILE_MB" in error
    # An object store's objects: the listed size is checked, and never more than the limit
    # is read whatever the listing said.
    url = f"memory://llmperf-test-{uuid.uuid4().hex[:8]}/b"
    mem = open_store(url)
    assert isinstance(mem, backends.FsspecStore)
    mem.fs.pipe_file(f"{mem.root}/p1/{SHA}.json", big.read_bytes())
    reads: list[int] = []
    real_open = mem.fs.open

    def counting_open(path: str, mode: str = "rb", **kw: Any) -> Any:
        fh = real_open(path, mode, **kw)
        real_read = fh.read
        fh.read = lambda n=-1: reads.append(n) or real_read(n)
        return fh

    monkeypatch.setattr(mem.fs, "open", counting_open)
    pulled = mem.pull(tmp_path / "into2")
    assert pulled.files == [] and len(pulled.errors) == 1
    assert f"{url}/p1/{SHA}.json: " in pulled.errors[0] and "0.0625 MiB limit" in pulled.errors[0]
    assert reads == []  # refused from the listing's size, unread
    monkeypatch.setattr(mem.fs, "info", lambda path, **kw: {"name": path, "size": 10,
                                                           "type": "file"})
    monkeypatch.setattr(mem.fs, "find", lambda root, detail=False, **kw: {
        f"{mem.root}/p1/{SHA}.json": {"name": f"{mem.root}/p1/{SHA}.json", "size": 10,
                                      "type": "file"}})
    pulled = mem.pull(tmp_path / "into2")  # a listing that lies about the size
    assert reads == [64 * 1024 + 1] and "0.0625 MiB limit" in pulled.errors[0]


# ---- empty objects: the leftover of a write interrupted where writes are not atomic (item 21)


def _memory_store() -> backends.FsspecStore:
    st = open_store(f"memory://llmperf-test-{uuid.uuid4().hex[:8]}/b")
    assert isinstance(st, backends.FsspecStore)
    return st


def _empty_object(st: backends.FsspecStore, age_s: float = 0.0) -> str:
    """An empty object where a killed compaction's merged object would have been."""
    path = f"{st.root}/p1/{SHA}/20260101T000000000000Z-deadbeef0000.json"
    st.fs.pipe_file(path, b"")
    st.fs.store[path].created = datetime.now(UTC) - timedelta(seconds=age_s)
    return path


def test_an_empty_object_is_a_warning_not_a_failure_and_compact_still_folds_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "PROCESS_LOCAL", frozenset(), raising=False)  # in-process
    st = _memory_store()
    for i in range(2):
        save(BaselineStore(tmp_path / f"job{i}"), [run(f"j{i}")])
        st.push(tmp_path / f"job{i}")
    empty = _empty_object(st)
    name = f"{st.name}/{st._rel(empty)}"
    pulled = st.pull(tmp_path / "into")
    assert pulled.errors == [] and pulled.files == [(f"p1/{SHA}.json", 2)]
    [warning] = pulled.warnings
    assert warning.startswith(f"{name}: empty (0 bytes), the leftover of an interrupted write")
    assert "it holds no run" in warning and f"llmperf baselines compact {st.name}" in warning
    # compact folds the two readable objects (the empty one holds nothing) and keeps the
    # empty one while a write could still be filling it; it says so without contradiction.
    assert llmperf_main(["baselines", "compact", st.name]) == 0
    out, err = capsys.readouterr()
    assert f"p1/{SHA}.json: 2 objects -> 1" in out and "every file is one object" not in out
    assert f"{name}: empty object kept (it is 0 min old" in err and "not compacted" not in err
    assert st.fs.exists(empty) and len(st.fs.find(f"{st.root}/p1/{SHA}")) == 2
    # An hour later it is a leftover, not a write under way: compact removes it.
    st.fs.store[empty].created = datetime.now(UTC) - timedelta(hours=2)
    assert llmperf_main(["baselines", "compact", st.name]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["removed 1 empty object(s) left by interrupted writes (they "
                                "held no run)", f"  {name}"]
    assert err == ""
    assert not st.fs.exists(empty)
    assert llmperf_main(["baselines", "compact", st.name]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to compact in {st.name}: every file")
    assert sorted(r["client"]["tag"] for r in st.read_all()[0][0].runs(NODE)) == ["j0", "j1"]


def test_compact_never_says_every_file_is_one_object_beside_a_file_it_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "PROCESS_LOCAL", frozenset(), raising=False)
    st = _memory_store()
    save(BaselineStore(tmp_path / "job"), [run("a")])
    st.push(tmp_path / "job")
    st.fs.pipe_file(f"{st.root}/p1/{SHA}/zz-truncated.json", b'{"schema": "pytest-llm')
    assert llmperf_main(["baselines", "compact", st.name]) == 1
    out, err = capsys.readouterr()
    assert out == (f"nothing compacted in {st.name}: 1 file(s) left as they are (see the "
                   "warnings)\n")
    assert f"{st.name}/p1/{SHA}.json: not compacted (an object of it is unreadable)" in err


def test_an_empty_baseline_file_in_a_directory_is_skipped_and_written_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "shared"
    save(BaselineStore(root), [run("a")], sha=SHA2)
    empty = root / "p1" / f"{SHA}.json"
    empty.write_bytes(b"")
    assert llmperf_main(["baselines", "pull", str(root), "--dir", str(tmp_path / "in")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("pulled 1 run(s) in 1 file(s)")
    assert err == (f"llmperf: warning: {empty}: empty (0 bytes), the leftover of an "
                   f"interrupted write; it holds no run and was skipped: remove it (rm "
                   f"{empty})\n")
    # The gate names it as it names any unreadable file; a save writes over it (no run lost:
    # it held none), and a pull into it likewise.
    with pytest.raises(store.EmptyBaselineError, match="holds no run"):
        store.load(empty)
    save(BaselineStore(root), [run("b")])
    assert [r["client"]["tag"] for r in store.load(empty).runs(NODE)] == ["b"]
    local = tmp_path / "in" / "p1" / f"{SHA}.json"
    local.write_bytes(b"")
    assert open_store(str(root)).pull(tmp_path / "in").files == [(f"p1/{SHA}.json", 1)]
    assert [r["client"]["tag"] for r in store.load(local).runs(NODE)] == ["b"]


# ------------------------------------- a pull's memory: one file at a time, read if needed


def _peak(call: Any) -> tuple[int, Any]:
    """The most memory Python allocated during ``call()`` (tracemalloc), and its result."""
    tracemalloc.start()
    try:
        result = call()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_a_pull_holds_one_file_at_a_time_and_reads_nothing_already_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory of a pull is that of its largest file, not of the store (Python's own
    allocations, counted by tracemalloc: no timing); a pull into an up-to-date directory
    parses nothing."""
    shared = tmp_path / "shared"
    shas = [f"{i:02x}" * 20 for i in range(12)]
    for sha in shas:
        save(BaselineStore(shared), [run(f"r{sha[:2]}", samples=6000)], sha=sha)
    files = sorted(shared.glob("p1/*.json"), key=lambda p: p.stat().st_size)
    assert sum(p.stat().st_size for p in files) > 10 * files[-1].stat().st_size
    save(BaselineStore(tmp_path / "warm"), [run("w")])  # what a first pull imports
    open_store(str(tmp_path / "warm")).pull(tmp_path / "scratch")
    one, _ = _peak(lambda: store.load(files[-1]))  # reading the largest file by itself
    peak, moved = _peak(lambda: open_store(str(shared)).pull(tmp_path / "into"))
    assert len(moved.files) == 12 and moved.errors == []
    assert peak < 3 * one, (peak, one)
    for sha in shas:  # the store's files, as they are
        assert (tmp_path / "into" / "p1" / f"{sha}.json").read_bytes() == (
            shared / "p1" / f"{sha}.json").read_bytes()
    parsed: list[str] = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda s, **kw: parsed.append("x") or real(s, **kw))
    again = open_store(str(shared)).pull(tmp_path / "into")
    assert again.files == [] and again.errors == [] and parsed == []
    # A file that differs is merged (both read), and only that one.
    save(BaselineStore(shared), [run("late")], sha=shas[3])
    parsed.clear()
    again = open_store(str(shared)).pull(tmp_path / "into")
    assert again.files == [(f"p1/{shas[3]}.json", 1)] and len(parsed) == 2


def test_streamed_writes_are_the_files_format() -> None:
    doc = {"b": [1, 2.5, {"c": None, "a": "é\n"}], "a": {}, "z": []}
    assert store.encode_json(doc).decode("utf-8") == dumps(doc)
