"""Baseline stores that survive a Job (issue 12, point 2): the merge of two copies of a
baseline file, directory / file:// / memory:// stores, a git branch in a real bare repository
with two clones pushing at once, the ``llmperf baselines push/pull`` commands, concurrent
writers to one directory, and a pytest session with ``--llmperf-store``.

Split by tier from tests/test_stores.py: these are its unit tests; the others are in
tests/sessions/test_stores_session.py.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import fsspec  # imported here: pytester's in-process sessions drop modules first imported
import pytest  # inside them, and a re-imported fsspec has a new, empty memory:// store
from helpers import STORE_NODE as NODE
from helpers import STORE_PROFILE as PROFILE
from helpers import STORE_REL as REL
from helpers import STORE_SHA as SHA
from helpers import STORE_SHA2 as SHA2
from helpers import save_tagged as save
from helpers import stored_tags as tags
from helpers import tagged_baseline as baseline
from helpers import tagged_run as run

from pytest_llmperf.cli.main import main as llmperf_main
from pytest_llmperf.store import backends
from pytest_llmperf.store.backends import (
    DirectoryStore,
    FsspecStore,
    StoreUsageError,
    merge_baselines,
    open_store,
)
from pytest_llmperf.store.baselines import BaselineError

# --------------------------------------------------------------------------------- merge


def test_merge_is_the_deduplicated_sorted_union_whatever_the_order() -> None:
    r1, r2, r3 = (run("r1", "2026-01-01T00:00:01+00:00"), run("r2", "2026-01-01T00:00:02+00:00"),
                  run("r3", "2026-01-01T00:00:03+00:00"))
    twin = run("twin", "2026-01-01T00:00:02+00:00")  # same start as r2, other content: kept
    a = baseline("a.json", [r3, r1, r2], "2026-01-02T00:00:00+00:00", outcome="failed")
    b = baseline("b.json", [dict(r2), twin], "2026-01-03T00:00:00+00:00")
    ab, ba = merge_baselines(a, b), merge_baselines(b, a)
    assert ab.runs(NODE)[0]["client"]["tag"] == "r1"
    assert sorted(r["client"]["tag"] for r in ab.runs(NODE)) == ["r1", "r2", "r3", "twin"]
    assert ab.runs(NODE)[-1]["client"]["tag"] == "r3"  # sorted by started_at
    assert ab.to_dict() == ba.to_dict()  # the same file whichever side merges
    assert ab.tests[NODE]["outcome"] == "passed"  # the newer copy's (saved later)
    assert ab.saved_at == "2026-01-03T00:00:00+00:00"
    assert merge_baselines(ab, b).to_dict() == ab.to_dict()  # idempotent
    assert a.n_runs == 3 and b.n_runs == 2  # pure: the inputs are unchanged


def test_merge_refuses_other_profiles_and_commits_naming_both() -> None:
    a = baseline("/x/a.json", [run("r1")], "1")
    other = baseline("/y/b.json", [run("r2")], "2",
                     profile={**PROFILE, "engine": {"kind": "fake", "version": "2"}})
    with pytest.raises(BaselineError, match=r"/x/a\.json and /y/b\.json hold different prof"):
        merge_baselines(a, other)
    moved = baseline("/y/c.json", [run("r2")], "2")
    moved.commit = SHA2
    with pytest.raises(BaselineError, match="different commits"):
        merge_baselines(a, moved)


# ------------------------------------------------------------- directory, file://, memory://


def _store_urls(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "plain-store"), f"file://{tmp_path / 'url-store'}",
            f"memory://llmperf-test-{uuid.uuid4().hex[:8]}/baselines"]


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["directory", "file-url", "memory"])
def test_push_pull_round_trip_merges_runs_of_the_same_commit(tmp_path: Path, kind: int
                                                             ) -> None:
    url = _store_urls(tmp_path)[kind]
    st = open_store(url)
    assert isinstance(st, FsspecStore if kind == 2 else DirectoryStore)
    # Two jobs saved the same commit, each its own runs, one of them shared (pulled before).
    save(tmp_path / "job1", ["a1", "a2", "shared"])
    save(tmp_path / "job2", ["b1", "shared"])
    save(tmp_path / "job2", ["other"], sha=SHA2)
    first = st.push(tmp_path / "job1")
    assert (first.files, first.errors) == ([(REL, 3)], [])
    second = st.push(tmp_path / "job2")
    assert sorted(second.files) == [(REL, 1), (f"p1/{SHA2}.json", 1)]  # "shared" not twice
    assert st.push(tmp_path / "job2").files == []  # nothing new: nothing written
    into = tmp_path / "fresh"
    pulled = st.pull(into)
    assert sorted(pulled.files) == [(REL, 4), (f"p1/{SHA2}.json", 1)]
    assert sorted(tags(into)) == ["a1", "a2", "b1", "shared"]
    assert tags(into, SHA2) == ["other"]
    assert st.pull(into).files == []  # already there
    # A pull into a directory with runs of its own keeps them and adds the store's.
    pulled = st.pull(tmp_path / "job1")
    assert pulled.files == [(REL, 1), (f"p1/{SHA2}.json", 1)]
    assert sorted(tags(tmp_path / "job1")) == ["a1", "a2", "b1", "shared"]
    if kind < 2:  # a directory store is itself a baseline directory (--llmperf-baseline-dir)
        root = Path(url.removeprefix("file://"))
        assert sorted(tags(root)) == ["a1", "a2", "b1", "shared"]


def test_memory_store_pushes_never_overwrite_and_concurrent_pushes_all_land(
        tmp_path: Path) -> None:
    url = f"memory://llmperf-test-{uuid.uuid4().hex[:8]}/b"
    for i in range(6):
        save(tmp_path / f"job{i}", [f"j{i}-1", f"j{i}-2"])
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def push(i: int) -> None:
        st = open_store(url)  # each job reads the store before any of them wrote
        assert isinstance(st, FsspecStore)
        have = st.read_all()
        barrier.wait(timeout=30)
        try:
            assert have == ([], [])
            st.push(tmp_path / f"job{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    st = open_store(url)
    assert isinstance(st, FsspecStore)
    objects = fsspec.filesystem("memory").find(st.root)
    assert len(objects) == 6  # one new object per push, none overwritten
    [merged], problems = st.read_all()
    assert problems == []
    assert sorted(r["client"]["tag"] for r in merged.runs(NODE)) == sorted(
        f"j{i}-{k}" for i in range(6) for k in (1, 2))


def test_a_broken_object_is_named_and_the_rest_still_pulls(tmp_path: Path) -> None:
    url = f"memory://llmperf-test-{uuid.uuid4().hex[:8]}/b"
    st = open_store(url)
    assert isinstance(st, FsspecStore)
    save(tmp_path / "job", ["ok"])
    st.push(tmp_path / "job")
    st.fs.pipe_file(f"{st.root}/p1/{SHA}/zz-broken.json", b"{not json")
    # Another file's two objects disagree on the profile; a third is of a newer schema.
    save(tmp_path / "a", ["x"], sha=SHA2)
    save(tmp_path / "b", ["y"], sha=SHA2, profile={**PROFILE, "hardware": {"cpu_cores": 64}})
    st.push(tmp_path / "a")
    doc = json.loads((tmp_path / "b" / "p1" / f"{SHA2}.json").read_text())
    st.fs.pipe_file(f"{st.root}/p1/{SHA2}/zz-other.json", json.dumps(doc).encode())
    doc["schema_version"] = 99
    st.fs.pipe_file(f"{st.root}/p1/{SHA}/zz-future.json", json.dumps(doc).encode())
    pulled = st.pull(tmp_path / "into")
    assert pulled.files == [(REL, 1)]  # the readable file still comes
    broken, future, conflict = pulled.errors
    assert f"{url}/p1/{SHA}/zz-broken.json: corrupt baseline, not valid JSON" in broken
    assert f"{url}/p1/{SHA}/zz-future.json: baseline schema_version 99" in future
    assert "zz-other.json hold different profiles" in conflict
    assert all("\n" not in e for e in pulled.errors)
    assert not (tmp_path / "into" / "p1" / f"{SHA2}.json").exists()


def test_compact_folds_a_files_objects_into_one_and_loses_no_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command refuses memory:// (a command's process ends, and its store with it); in
    # this process the store lives on, so the command's messages are checked on it here.
    monkeypatch.setattr(backends, "PROCESS_LOCAL", frozenset())
    url = f"memory://llmperf-test-{uuid.uuid4().hex[:8]}/b"
    st = open_store(url)
    assert isinstance(st, FsspecStore)
    for i in range(4):
        save(tmp_path / f"job{i}", [f"j{i}", "shared"])
        st.push(tmp_path / f"job{i}")
    for i in range(2):
        save(tmp_path / f"other{i}", [f"o{i}"], sha=SHA2)
        st.push(tmp_path / f"other{i}")
    # A file with an unreadable object is left alone (its runs would be the ones lost).
    st.fs.pipe_file(f"{st.root}/p1/{SHA2}/zz-broken.json", b"{not json")
    before = st.read_all()[0]
    assert len(st.fs.find(f"{st.root}/p1/{SHA}")) == 4
    assert llmperf_main(["baselines", "compact", url]) == 1  # the broken object: exit 1
    out, err = capsys.readouterr()
    assert f"p1/{SHA}.json: 4 objects -> 1" in out
    assert f"p1/{SHA2}.json: not compacted (an object of it is unreadable)" in err
    objects = st.fs.find(f"{st.root}/p1/{SHA}")
    assert len(objects) == 1
    assert sorted(r["client"]["tag"] for r in st.read_all()[0][0].runs(NODE)) == [
        "j0", "j1", "j2", "j3", "shared"]
    assert [b.to_dict()["tests"] for b in st.read_all()[0]] == [
        b.to_dict()["tests"] for b in before]
    assert len(st.fs.find(f"{st.root}/p1/{SHA2}")) == 3  # untouched
    # Again: nothing left to fold; a push after it adds one object, a pull sees every run.
    st.fs.rm_file(f"{st.root}/p1/{SHA2}/zz-broken.json")
    assert llmperf_main(["baselines", "compact", url]) == 0
    assert st.compact().files == []
    save(tmp_path / "late", ["late"])
    st.push(tmp_path / "late")
    assert sorted(tags_of(st)) == ["j0", "j1", "j2", "j3", "late", "shared"]
    # Directory stores hold one file per commit: nothing to do.
    assert llmperf_main(["baselines", "compact", str(tmp_path / "job0")]) == 0
    assert "nothing to compact" in capsys.readouterr().out


def tags_of(st: FsspecStore) -> list[str]:
    (b,) = [b for b in st.read_all()[0] if b.commit == SHA]
    return [r["client"]["tag"] for r in b.runs(NODE)]


def test_pull_never_overwrites_an_unreadable_local_file(tmp_path: Path) -> None:
    st = open_store(str(tmp_path / "st"))
    save(tmp_path / "st", ["remote"])
    local = tmp_path / "local" / "p1" / f"{SHA}.json"
    local.parent.mkdir(parents=True)
    local.write_text("{corrupt")
    pulled = st.pull(tmp_path / "local")
    assert pulled.files == [] and len(pulled.errors) == 1 and str(local) in pulled.errors[0]
    assert local.read_text() == "{corrupt"


@pytest.mark.parametrize(("spec", "needle"), [
    ("s3://bucket/prefix", "s3fs"),
    ("nosuchproto://x", "Protocol not known: nosuchproto"),
    ("file://relative/path", "absolute path"),
    ("git:", "names no branch"),
    ("", "empty store"),
])
def test_unusable_store_strings_are_one_line_usage_errors(spec: str, needle: str) -> None:
    if spec.startswith("s3://"):
        try:
            import s3fs  # noqa: F401
            pytest.skip("s3fs is installed here")
        except ImportError:
            pass
    with pytest.raises(StoreUsageError) as err:
        open_store(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)
