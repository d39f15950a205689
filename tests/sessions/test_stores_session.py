"""Baseline stores that survive a Job (issue 12, point 2): the merge of two copies of a
baseline file, directory / file:// / memory:// stores, a git branch in a real bare repository
with two clones pushing at once, the ``llmperf baselines push/pull`` commands, concurrent
writers to one directory, and a pytest session with ``--llmperf-store``.

Split by tier from tests/test_stores.py: these are its sessions tests; the others are in
tests/unit/store/test_stores.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import STORE_NODE as NODE
from helpers import STORE_PROFILE as PROFILE
from helpers import STORE_REL as REL
from helpers import STORE_SHA as SHA
from helpers import STORE_SHA2 as SHA2
from helpers import git
from helpers import save_tagged as save
from helpers import stored_tags as tags
from helpers import tagged_run as run

from pytest_llmperf.cli.main import main as llmperf_main
from pytest_llmperf.store import backends as stores
from pytest_llmperf.store.backends import (
    GitBranchStore,
    StoreIOError,
    StoreUsageError,
    open_store,
)
from pytest_llmperf.store.baselines import BaselineStore
from pytest_llmperf.testing.schedule_engine import CONFTEST as SCHEDULE_CONFTEST

# ---------------------------------------------------------- concurrent writers, one directory


def _saver(root: str, index: int, barrier: Any, errors: Any) -> None:
    try:
        barrier.wait(30)
        save(Path(root), [f"w{index}"])
    except Exception as exc:
        errors.put(f"saver {index}: {exc!r}")


def _puller(root: str, source: str, barrier: Any, errors: Any) -> None:
    try:
        barrier.wait(30)
        open_store(source).pull(root)
    except Exception as exc:
        errors.put(f"puller {source}: {exc!r}")


def test_shards_saving_and_pulling_into_one_directory_lose_no_run(tmp_path: Path) -> None:
    """Parallel shards save into one (shared) directory while others pull a store into it:
    the directory's lock covers saves and merges alike, so every run lands once."""
    shared = tmp_path / "shared"
    seed = run("seed")
    seed["samples"] = [{"ttft_ms": float(i), "ok": True} for i in range(25_000)]
    path = BaselineStore(shared).save(  # a few MB: every read-modify-write overlaps others
        profile_id="p1", profile=PROFILE, commit=SHA, branch="main", dirty=False,
        committed_at="2026-01-01T00:00:00+00:00", tests={NODE: [seed]})
    assert path.stat().st_size > 1_000_000
    sources = []
    for i in range(3):
        src = tmp_path / f"store{i}"
        save(src, [f"s{i}"])
        sources.append(str(src))
    ctx = multiprocessing.get_context("fork")
    savers, pullers = 6, len(sources)
    barrier = ctx.Barrier(savers + pullers)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_saver, args=(str(shared), i, barrier, errors))
             for i in range(savers)]
    procs += [ctx.Process(target=_puller, args=(str(shared), s, barrier, errors))
              for s in sources]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert sorted(tags(shared)) == sorted(["seed", *(f"w{i}" for i in range(savers)),
                                           *(f"s{i}" for i in range(pullers))])


# ---------------------------------------------------------------------------- git branch


def make_remote(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare repository and two clones of it (each with one commit on main)."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "code.py").write_text("x = 1\n")
    git(seed, "add", "code.py")
    git(seed, "commit", "-q", "-m", "first")
    git(seed, "remote", "add", "origin", str(bare))
    git(seed, "push", "-q", "origin", "main")
    clones = []
    for name in ("clone1", "clone2"):
        subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / name)], check=True)
        clones.append(tmp_path / name)
    return bare, clones[0], clones[1]


def branch_files(bare: Path, branch: str = "llmperf-baselines") -> list[str]:
    return sorted(git(bare, "ls-tree", "-r", "--name-only", branch).splitlines())


def test_git_branch_store_two_clones_pushing_at_once_lose_nothing(tmp_path: Path) -> None:
    bare, c1, c2 = make_remote(tmp_path)
    save(c1 / "baselines", ["c1-a", "c1-b", "both"])
    save(c2 / "baselines", ["c2-a", "both"])
    save(c2 / "baselines", ["c2-other"], sha=SHA2)
    status_before = [git(c, "status", "--porcelain") for c in (c1, c2)]
    barrier = threading.Barrier(2)
    calls: dict[str, int] = {}
    results: dict[str, Any] = {}

    def job(clone: Path) -> None:
        def before_push() -> None:
            calls[clone.name] = calls.get(clone.name, 0) + 1
            if calls[clone.name] == 1:  # both made their commit on the same (empty) state
                barrier.wait(timeout=30)

        try:
            st = GitBranchStore("git:llmperf-baselines", clone, before_push=before_push)
            results[clone.name] = st.push(clone / "baselines")
        except BaseException as exc:
            results[clone.name] = exc

    threads = [threading.Thread(target=job, args=(c,)) for c in (c1, c2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, stores.Transfer) for r in results.values()), results
    # One push won; the other was rejected, fetched, merged and pushed again.
    assert sorted(r.attempts for r in results.values()) == [1, 2]
    winner = min(results, key=lambda k: results[k].attempts)
    loser = "clone2" if winner == "clone1" else "clone1"
    first_push = {"clone1": [(REL, 3)], "clone2": [(REL, 2), (f"p1/{SHA2}.json", 1)]}
    then = {"clone1": [(REL, 2)], "clone2": [(REL, 1), (f"p1/{SHA2}.json", 1)]}  # "both": once
    assert sorted(results[winner].files) == first_push[winner]
    assert sorted(results[loser].files) == then[loser]
    assert branch_files(bare) == ["README.md", REL, f"p1/{SHA2}.json"]
    # History: the orphan root commit (no parent) then the merged one.
    assert git(bare, "rev-list", "--count", "llmperf-baselines") == "2"
    root = git(bare, "rev-list", "--max-parents=0", "llmperf-baselines")
    assert git(bare, "rev-list", "--count", root) == "1"
    # A third checkout pulls every run; nobody's working tree, index or branch changed.
    c3 = tmp_path / "clone3"
    subprocess.run(["git", "clone", "-q", str(bare), str(c3)], check=True)
    pulled = GitBranchStore("git:origin/llmperf-baselines", c3).pull(c3 / "baselines")
    assert sorted(pulled.files) == [(REL, 4), (f"p1/{SHA2}.json", 1)]
    assert sorted(tags(c3 / "baselines")) == ["both", "c1-a", "c1-b", "c2-a"]
    assert tags(c3 / "baselines", SHA2) == ["c2-other"]
    for clone, before in zip((c1, c2), status_before, strict=True):
        assert git(clone, "status", "--porcelain") == before
        assert git(clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
        assert git(clone, "branch", "--list", "llmperf-baselines") == ""  # no local branch
    # Pushing again moves nothing and makes no commit.
    again = GitBranchStore("git:llmperf-baselines", c1).push(c1 / "baselines")
    assert again.files == [] and git(bare, "rev-list", "--count", "llmperf-baselines") == "2"


def test_git_store_retries_are_bounded_and_other_errors_are_one_line(tmp_path: Path) -> None:
    bare, c1, c2 = make_remote(tmp_path)
    save(c1 / "baselines", ["c1"])
    save(c2 / "baselines", ["c2"])

    def sneak_in() -> None:  # another job pushes before every one of ours
        save(c2 / "baselines", [f"c2-{uuid.uuid4().hex[:6]}"])
        GitBranchStore("git:llmperf-baselines", c2).push(c2 / "baselines")

    st = GitBranchStore("git:llmperf-baselines", c1, attempts=3, before_push=sneak_in)
    with pytest.raises(StoreIOError, match="rejected 3 times") as err:
        st.push(c1 / "baselines")
    assert "\n" not in str(err.value)
    assert "c1" not in tags_on_branch(bare)  # ours never landed; the other job's all did
    # No such remote is bad usage ("git:up/x" with no remote "up" is the branch "up/x" of
    # origin); an unreachable remote is an I/O error.
    git(c2, "remote", "rename", "origin", "up")
    with pytest.raises(StoreUsageError, match=r"has no remote 'origin' \(remotes: up\)"):
        open_store("git:llmperf-baselines", c2)
    st = open_store("git:up/llmperf-baselines", c2)
    assert isinstance(st, GitBranchStore) and (st.remote, st.branch) == ("up", "llmperf-baselines")
    git(c1, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(StoreIOError) as err:
        open_store("git:llmperf-baselines", c1).pull(c1 / "baselines")
    assert "git fetch origin llmperf-baselines failed" in str(err.value)
    assert "\n" not in str(err.value)


def tags_on_branch(bare: Path, branch: str = "llmperf-baselines") -> list[str]:
    doc = json.loads(git(bare, "show", f"{branch}:{REL}"))
    return [r["client"]["tag"] for r in doc["tests"][NODE]["runs"]]


def test_remote_slash_branch_and_branch_names_with_slashes(tmp_path: Path) -> None:
    bare, c1, _ = make_remote(tmp_path)
    git(c1, "remote", "add", "mirror", str(bare))
    st = open_store("git:mirror/perf/baselines", c1)
    assert isinstance(st, GitBranchStore)
    assert (st.remote, st.branch) == ("mirror", "perf/baselines")
    st = open_store("git:perf/baselines", c1)  # "perf" is no remote: a branch of origin
    assert isinstance(st, GitBranchStore)
    assert (st.remote, st.branch) == ("origin", "perf/baselines")
    save(c1 / "baselines", ["x"])
    assert st.push(c1 / "baselines").files == [(REL, 1)]
    assert branch_files(bare, "perf/baselines") == ["README.md", REL]


def test_a_runner_without_a_git_identity_still_commits(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bare, c1, _ = make_remote(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    empty = tmp_path / "empty.gitconfig"
    empty.write_text("")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    save(c1 / "baselines", ["x"])
    assert open_store("git:llmperf-baselines", c1).push(c1 / "baselines").files == [(REL, 1)]
    assert git(bare, "log", "-1", "--format=%an <%ae>", "llmperf-baselines") == (
        "pytest-llmperf <pytest-llmperf@localhost>")


# ------------------------------------------------------------------------------------ CLI


def test_cli_push_and_pull_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    _, c1, c2 = make_remote(tmp_path)
    save(c1 / "baselines", ["one", "two"])
    os.chdir(c1)  # the default --dir: baselines/ at the repository root
    assert llmperf_main(["baselines", "push", "git:llmperf-baselines"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"pushed 2 run(s) in 1 file(s) from {c1 / 'baselines'} to "
                      "git:llmperf-baselines")
    assert out[1] == f"  {REL}: +2 run(s)"
    assert llmperf_main(["baselines", "push", "git:llmperf-baselines"]) == 0
    assert "pushed nothing from" in capsys.readouterr().out
    os.chdir(c2)
    into = tmp_path / "pulled"
    assert llmperf_main(["baselines", "pull", "git:llmperf-baselines", "--dir", str(into)]) == 0
    assert capsys.readouterr().out.startswith("pulled 2 run(s) in 1 file(s) from git:")
    assert sorted(tags(into)) == ["one", "two"]
    # The same files through a file:// store, and back.
    url = f"file://{tmp_path / 'mounted'}"
    assert llmperf_main(["baselines", "push", url, "--dir", str(into)]) == 0
    assert sorted(tags(tmp_path / "mounted")) == ["one", "two"]
    capsys.readouterr()
    # Bad usage: exit 2, one line; an unreachable store: exit 1, one line.
    assert llmperf_main(["baselines", "push", "nosuchproto://x", "--dir", str(into)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmperf: error: nosuchproto://x: Protocol not known")
    assert err.count("\n") == 1
    assert llmperf_main(["baselines", "push", url, "--dir", str(tmp_path / "none")]) == 2
    assert "no baseline directory at" in capsys.readouterr().err
    git(c2, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    assert llmperf_main(["baselines", "pull", "git:llmperf-baselines", "--dir", str(into)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llmperf: error: git:llmperf-baselines: git fetch origin")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_as_a_process(tmp_path: Path) -> None:
    save(tmp_path / "local", ["p"])
    url = f"file://{tmp_path / 'shared'}"
    res = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "baselines", "push",
                          url, "--dir", str(tmp_path / "local")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"pushed 1 run(s) in 1 file(s) from {tmp_path / 'local'}")


# ------------------------------------------------------------------------ pytest sessions

SCHEDULE_TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_fast(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=3, requests=2))
"""


def test_session_saves_to_the_store_and_the_next_job_compares_with_it(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    pt = pytester
    pt.makeconftest(SCHEDULE_CONFTEST)
    pt.makepyfile(test_fast=SCHEDULE_TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\nbaselines/\n*.json\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    first = git(pt.path, "rev-parse", "HEAD")
    url = f"memory://llmperf-session-{uuid.uuid4().hex[:8]}/baselines"
    args = ["--llmperf", "--llmperf-engine=schedule", "--llmperf-model=3",
            f"--llmperf-store={url}", "-p", "no:cacheprovider"]
    res = pt.runpytest(*args, "--llmperf-save")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*pulled nothing from*: no new run",
                              "*saved 1 run(s) of 1 test(s) to*",
                              f"*pushed 1 run(s) in 1 file(s) to {url}"])
    st = open_store(url)
    [stored], errors = st.read_all()
    assert errors == [] and stored.commit == first
    assert list(stored.tests) == ["test_fast.py::test_fast"] and stored.n_runs == 1
    # The Job's pod is gone: a fresh checkout at a later commit has no baselines/ ...
    import shutil

    shutil.rmtree(pt.path / "baselines")
    (pt.path / "notes.txt").write_text("x")
    git(pt.path, "add", "notes.txt")
    git(pt.path, "commit", "-q", "-m", "next")
    out = pt.path / "r.json"
    res = pt.runpytest(*args, f"--llmperf-json={out}")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([f"*pulled 1 run(s) in 1 file(s) from {url} into*"])
    comp = json.loads(out.read_text())["tests"][0]["comparison"]
    assert comp["baseline_commit"] == first  # ... and still compares with the stored run
    assert comp["status"] != "no baseline"
    # pytest-xdist: the controller pulls before the workers look the baseline up, and pushes
    # the run the workers measured after saving.
    shutil.rmtree(pt.path / "baselines")
    res = pt.runpytest(*args, "-n", "2", "--llmperf-save", f"--llmperf-json={out}")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([f"*pulled 1 run(s) in 1 file(s) from {url} into*",
                              f"*pushed 1 run(s) in 1 file(s) to {url}"])
    comp = json.loads(out.read_text())["tests"][0]["comparison"]
    assert comp["baseline_commit"] == first
    found, errors = st.read_all()
    assert errors == [] and sorted(b.commit for b in found) == sorted([first, git(
        pt.path, "rev-parse", "HEAD")])


def test_session_with_an_unusable_store_stops_before_running(pytester: pytest.Pytester
                                                             ) -> None:
    pt = pytester
    pt.makeconftest(SCHEDULE_CONFTEST)
    pt.makepyfile(test_fast=SCHEDULE_TEST)
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=3",
                       "--llmperf-store=git:llmperf-baselines", "-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    text = res.stderr.str() + res.stdout.str()
    assert "--llmperf-store: git:llmperf-baselines: the repository at" in text
    assert "has no remote 'origin'" in text and "Traceback" not in text


def test_a_failed_push_keeps_the_local_baselines_and_fails_the_session(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The remote refuses every push (a protected branch: a pre-receive hook says no): the
    session says so in one line, fails, and keeps its saved run in the local directory."""
    pt = pytester
    bare = tmp_path / "protected.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    pt.makeconftest(SCHEDULE_CONFTEST)
    pt.makepyfile(test_fast=SCHEDULE_TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\nbaselines/\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    git(pt.path, "remote", "add", "origin", str(bare))
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=3",
                       "--llmperf-store=git:llmperf-baselines", "--llmperf-save",
                       "-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines([
        "*pulled nothing from*: no new run",
        "*saved 1 run(s) of 1 test(s) to*",
        "*ERROR: baselines not pushed: git:llmperf-baselines: git "
        "push origin llmperf-baselines failed: *pre-receive hook declined*; they are kept in "
        f"{pt.path / 'baselines'}: push them with llmperf baselines push "
        f"git:llmperf-baselines --dir {pt.path / 'baselines'}"])
    assert "Traceback" not in res.stdout.str()
    [saved] = sorted((pt.path / "baselines").glob("*/*.json"))  # the session's own run
    [kept] = json.loads(saved.read_text())["tests"]["test_fast.py::test_fast"]["runs"]
    assert kept["engine"]["kind"] == "schedule"
    assert git(bare, "branch", "--list") == ""  # nothing reached the remote
