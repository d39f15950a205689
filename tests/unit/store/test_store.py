"""Baseline files, git state (real repositories in temporary directories) and profiles.

Split by tier from tests/test_store.py: these are its unit tests; the others are in
tests/sessions/test_store_session.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.store import baselines as store
from pytest_llmperf.store import profile
from pytest_llmperf.store.baselines import BaselineError, BaselineStore

SHA_A = "a" * 40
SHA_B = "b" * 40


def run(ttft: float) -> dict[str, Any]:
    return {"summary": {"ttft_p50_ms": ttft, "tpot_p50_ms": 10.0, "output_tps": 100.0},
            "started_at": "2026-01-01T00:00:00+00:00", "workload": {"requests": 2},
            "engine": {"kind": "fake"}, "samples": []}


PROFILE = {"engine": {"kind": "fake", "version": "1"}, "hardware": {"cpu_cores": 2}}


def save(st: BaselineStore, sha: str, runs: list[dict[str, Any]], pid: str = "p1",
         committed_at: str = "2026-01-01T00:00:00+00:00") -> Path:
    return st.save(profile_id=pid, profile=PROFILE, commit=sha, branch="main", dirty=False,
                   committed_at=committed_at, tests={"t.py::test_x": runs})


# ------------------------------------------------------------------------------- store


def test_save_writes_the_documented_shape_sorted_and_appends(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path / "baselines")
    path = save(st, SHA_A, [run(10.0)])
    assert path == tmp_path / "baselines" / "p1" / f"{SHA_A}.json"
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=1) + "\n"
    assert {k: data[k] for k in ("schema", "schema_version", "profile_id", "commit", "branch",
                                 "dirty")} == {
        "schema": "pytest-llmperf/baseline", "schema_version": 1, "profile_id": "p1",
        "commit": SHA_A, "branch": "main", "dirty": False}
    assert data["profile"] == PROFILE
    assert data["committed_at"] and data["saved_at"]
    assert [r["summary"]["ttft_p50_ms"] for r in data["tests"]["t.py::test_x"]["runs"]] == [10.0]
    save(st, SHA_A, [run(11.0), run(12.0)])
    again = store.load(path)
    assert [r["summary"]["ttft_p50_ms"] for r in again.runs("t.py::test_x")] == [10, 11, 12]
    assert again.n_runs == 3


def test_a_crash_mid_write_leaves_the_previous_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    st = BaselineStore(tmp_path)
    path = save(st, SHA_A, [run(10.0)])
    before = path.read_text()

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save(st, SHA_A, [run(99.0)])
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_corrupt_file_is_named_and_others_still_load(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path)
    good = save(st, SHA_A, [run(10.0)])
    bad = save(st, SHA_B, [run(10.0)])
    bad.write_text(bad.read_text()[:50])
    with pytest.raises(BaselineError) as err:
        st.load("p1", SHA_B)
    msg = str(err.value)
    assert str(bad) in msg and "corrupt" in msg and "delete or restore" in msg
    loaded, errors = st.load_all()
    assert [b.path for b in loaded] == [good]
    assert len(errors) == 1 and str(bad) in errors[0]
    # Saving onto the corrupt file refuses and does not overwrite it.
    broken = bad.read_text()
    with pytest.raises(BaselineError, match="corrupt"):
        save(st, SHA_B, [run(11.0)])
    assert bad.read_text() == broken


@pytest.mark.parametrize("content,needle", [
    ('{"hello": 1}', "not a pytest-llmperf baseline"),
    ('[1, 2]', "not a pytest-llmperf baseline"),
    ('{"schema": "pytest-llmperf/baseline", "schema_version": 99}', "schema_version 99"),
    ('{"schema": "pytest-llmperf/baseline", "schema_version": 1, "tests": {}}', "malformed"),
])
def test_foreign_files_are_clear_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "p1" / f"{SHA_A}.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(BaselineError, match=needle) as err:
        store.load(path)
    assert str(path) in str(err.value)


def test_misplaced_file_is_an_error(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path)
    path = save(st, SHA_A, [run(10.0)])
    moved = tmp_path / "p1" / f"{SHA_B}.json"
    path.rename(moved)
    with pytest.raises(BaselineError, match="does not match where it lies"):
        store.load(moved)


def test_prune_keeps_the_newest_per_profile(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path)
    shas = [c * 40 for c in "123456"]
    for i, sha in enumerate(shas):
        save(st, sha, [run(10.0)], committed_at=f"2026-01-0{i + 1}T00:00:00+00:00")
    save(st, SHA_A, [run(10.0)], pid="p2")
    removed, errors = st.prune(2, dry_run=True)
    assert len(removed) == 4 and all(p.exists() for p in removed)
    removed, errors = st.prune(2)
    assert errors == []
    assert sorted(e.commit for e in st.entries("p1")) == shas[4:]
    assert st.commits("p2") == {SHA_A}
    # A git order beats the stored dates.
    removed, _ = st.prune(1, order={shas[4]: 0, shas[5]: 1})
    assert st.commits("p1") == {shas[4]}


# ----------------------------------------------------------------------------- profile


def test_profile_id_is_stable_and_hashes_the_model(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    info = {"kind": "llama_cpp", "version": "0.3", "model": "m.gguf",
            "model_path": str(model), "load_s": 0.1, "settings": {"n_threads": 2}}
    hw = {"cpu_model": "X", "cpu_cores": 2}
    p1 = profile.make_profile(info, hw)
    assert "load_s" not in p1["engine"] and "model_path" not in p1["engine"]
    assert p1["engine"]["model_hash"].startswith("sha256:")
    p2 = profile.make_profile({**info, "load_s": 9.0, "model_path": str(model)}, hw)
    assert profile.profile_id(p1) == profile.profile_id(p2)
    assert profile.profile_id(p1).startswith("llama_cpp-m-")
    other = tmp_path / "other" / "m.gguf"  # same name elsewhere, other bytes
    other.parent.mkdir()
    other.write_bytes(b"GGUF" + b"\1" * 100)
    p3 = profile.make_profile({**info, "model_path": str(other)}, hw)
    assert profile.profile_id(p3) != profile.profile_id(p1)
    p4 = profile.make_profile({**info, "settings": {"n_threads": 4}}, {**hw, "cpu_cores": 8})
    msg = profile.mismatch_message(p1, p4, "of abc")
    assert "engine.settings.n_threads: baseline 2, now 4" in msg
    assert "hardware.cpu_cores: baseline 2, now 8" in msg


def test_hardware_names_the_cpu() -> None:
    hw = profile.hardware()
    assert hw["cpu_cores"] >= 1 and hw["cpu_model"]


def test_a_started_server_has_the_same_profile_from_one_session_to_the_next() -> None:
    # Each session starts its own server on a free port, with its own pid and log: none of
    # that may change the profile, or the stored gate never finds a baseline and shards of one
    # run never merge. The recipe and its flags do change it.
    from pytest_llmperf.store.profile import make_profile, profile_id

    def info(port: int, pid: int, flags: str = "") -> dict[str, object]:
        return {"kind": "openai", "url": f"http://127.0.0.1:{port}", "model": "m",
                "endpoint": "completions", "tokenizer": "server:llama_cpp",
                "server": {"recipe": "llama_cpp", "url": f"http://127.0.0.1:{port}",
                           "pid": pid, "log": f"/tmp/llmperf-{pid}.log", "startup_s": 1.5,
                           "command": f"python -m llama_cpp.server --model m --host "
                                      f"127.0.0.1 --port {port}{flags}"}}

    hw = {"cpu": "x", "cores": 2}
    first = profile_id(make_profile(info(40001, 11), hw))
    assert profile_id(make_profile(info(40999, 77), hw)) == first
    assert profile_id(make_profile(info(40001, 11, " --n_batch 64"), hw)) != first
