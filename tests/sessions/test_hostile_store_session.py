"""The baseline store under hostile or careless use (issue #15): concurrent saves from many
processes, interrupted saves, corrupt and mistyped baseline files, dirty saves, a shallow
clone, and a pytest rootdir moved outside the repository.

Split by tier from tests/test_hostile_store.py: these are its sessions tests; the others are in
tests/unit/store/test_hostile_store.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import STORE_NODE as NODE
from helpers import STORE_SHA as SHA
from helpers import STORE_SHA2 as SHA2
from helpers import baseline_doc_with_run as _with_run
from helpers import git
from helpers import hostile_run as run
from helpers import hostile_save as save

from pytest_llmperf.cli.main import main as llmperf_main
from pytest_llmperf.store import baselines as store
from pytest_llmperf.store.baselines import BaselineError, BaselineStore
from pytest_llmperf.testing.schedule_engine import CONFTEST as SCHEDULE_CONFTEST
from pytest_llmperf.verdict.gate import Gate

# ------------------------------------------------------------ class 1: concurrent saves

WRITERS = 10
ROUNDS = 2


def _writer(root: str, index: int, barrier: Any, errors: Any) -> None:
    st = BaselineStore(root)
    for r in range(ROUNDS):
        barrier.wait()  # every writer reads the same file at the same moment
        try:
            save(st, [run(f"w{index}-r{r}")])
        except Exception as exc:  # reported to the parent, which fails the test
            errors.put(f"writer {index} round {r}: {exc!r}")


def test_concurrent_saves_from_many_processes_all_land(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path / "baselines")
    # A few MB already stored: each read-modify-write takes long enough to overlap.
    path = save(st, [run("seed", samples=25_000)])
    assert path.stat().st_size > 1_000_000
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(st.root), i, barrier, errors))
             for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * WRITERS
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    tags = sorted(r["client"]["tag"] for r in store.load(path).runs(NODE))
    expected = sorted(["seed"] + [f"w{i}-r{r}" for i in range(WRITERS) for r in range(ROUNDS)])
    assert len(tags) == 1 + WRITERS * ROUNDS  # every run landed, none twice
    assert tags == expected
    # The lock file and the .gitignore that keeps it (and temporaries) out of commits.
    assert (st.root / store.LOCK_NAME).exists()
    assert ".*.lock" in (st.root / ".gitignore").read_text()
    assert [e.path for e in st.entries(dirty=None)] == [path]


def test_a_save_that_cannot_get_the_lock_says_so(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock

    st = BaselineStore(tmp_path / "baselines")
    path = save(st, [run("first")])
    before = path.read_text()
    monkeypatch.setattr(store, "LOCK_TIMEOUT_S", 0.1)
    holder = multiprocessing.get_context("fork")
    ready, done = holder.Event(), holder.Event()

    def hold() -> None:
        with FileLock(str(st.root / store.LOCK_NAME)):
            ready.set()
            done.wait(30)

    proc = holder.Process(target=hold)
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(BaselineError) as err:
            save(st, [run("second")])
    finally:
        done.set()
        proc.join()
    msg = str(err.value)
    assert str(st.root / store.LOCK_NAME) in msg and "save again" in msg
    assert "\n" not in msg
    assert path.read_text() == before
    save(st, [run("third")])  # the lock is free again
    assert [r["client"]["tag"] for r in store.load(path).runs(NODE)] == ["first", "third"]


# ------------------------------------------------------------ class 6: mistyped files


@pytest.mark.parametrize("action", [["list"], ["show", SHA], ["diff", SHA, SHA],
                                    ["prune", "--keep", "1"], ["changes"]])
def test_baselines_commands_report_mistyped_files_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str],
) -> None:
    path = tmp_path / "p1" / f"{SHA}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_with_run(summary={"ttft_p50_ms": "fast", "output_tps": "x"})))
    status = llmperf_main(["baselines", *action, "--dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status in (1, 2)
    assert "Traceback" not in err
    assert f"{path}: malformed baseline" in err and "ttft_p50_ms" in err
    assert path.exists()  # prune never removes a file it cannot read


# ----------------------------------------------- gate: repositories, shallow clones, rootdir


def _repo(path: Path) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "code.py").write_text("x = 1\n")
    git(path, "add", "code.py")
    git(path, "commit", "-q", "-m", "first")
    return git(path, "rev-parse", "HEAD")


def test_gate_finds_the_repository_from_the_test_paths(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = _repo(repo)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_a.py").write_text("")
    outside = tmp_path / "elsewhere"  # pytest's rootdir when it took a model path for a test
    outside.mkdir()
    gate = Gate(rootpath=outside)
    assert gate.git is None
    gate = Gate(rootpath=outside, args=["tests/test_a.py::test_x"], invocation_dir=repo)
    assert gate.git is not None and gate.git.commit == head
    assert gate.dir == (repo / "baselines").resolve()
    gate = Gate(rootpath=outside, args=[], invocation_dir=repo / "tests")
    assert gate.git is not None and gate.dir == (repo / "baselines").resolve()


def test_compare_with_a_commit_a_shallow_clone_lacks(tmp_path: Path) -> None:
    from pytest_llmperf.verdict.gate import GateUsageError

    origin = tmp_path / "origin"
    first = _repo(origin)
    for i in range(3):
        (origin / "code.py").write_text(f"x = {i + 2}\n")
        git(origin, "commit", "-q", "-am", f"c{i}")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(clone))
    for ref in (first, first[:10], "HEAD~2"):
        with pytest.raises(GateUsageError) as err:
            Gate(rootpath=clone, compare=ref)
        msg = str(err.value)
        assert msg.startswith("--llmperf-compare") and ref in msg and "\n" not in msg
        assert "git fetch" in msg


# ------------------------------------------------- real sessions: the gate as users see it

TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf(max_regression_pct=1e6)
def test_chat(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=4, requests=2))
"""


def _session_repo(pt: pytest.Pytester) -> str:
    pt.makepyfile(test_chat=TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    return git(pt.path, "rev-parse", "HEAD")


def _next_commit(pt: pytest.Pytester, name: str) -> str:
    (pt.path / f"{name}.txt").write_text(name)
    git(pt.path, "add", f"{name}.txt")
    git(pt.path, "commit", "-q", "-m", name)
    return git(pt.path, "rev-parse", "HEAD")


def _results(pt: pytest.Pytester, *args: str) -> tuple[Any, dict[str, Any]]:
    out = pt.path.parent / "results.json"
    res = pt.runpytest("--llmperf", f"--llmperf-json={out}", *args)
    data = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    return res, data


def _no_traceback(res: Any) -> None:
    text = res.stdout.str() + res.stderr.str()
    assert "Traceback" not in text and "pytest_llmperf/" not in text


@pytest.mark.parametrize("damage", ["{broken", "mistyped"])
def test_a_corrupt_nearest_baseline_falls_back_to_the_nearest_valid_one(
    llmperf_pytester: pytest.Pytester, damage: str,
) -> None:
    pt = llmperf_pytester
    first = _session_repo(pt)
    res, _ = _results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    second = _next_commit(pt, "second")
    res, _ = _results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    [profile_dir] = [d for d in (pt.path / "baselines").iterdir() if d.is_dir()]
    nearest = profile_dir / f"{second}.json"
    if damage == "mistyped":
        doc = json.loads(nearest.read_text())
        doc["tests"]["test_chat.py::test_chat"]["runs"][0]["summary"]["tpot_p50_ms"] = "slow"
        nearest.write_text(json.dumps(doc))
    else:
        nearest.write_text(damage)
    _next_commit(pt, "third")
    res, data = _results(pt)
    res.assert_outcomes(passed=1)
    _no_traceback(res)
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared" and comp["baseline_commit"] == first
    assert f"skipped unreadable baseline {nearest}" in comp["message"]
    assert ("corrupt" if damage == "{broken" else "tpot_p50_ms") in comp["message"]
    # The terminal shows the path relative to the rootdir (the results keep it whole).
    shown = f"./{nearest.relative_to(pt.path)}"
    res.stdout.fnmatch_lines([f"*test_chat: compared*skipped unreadable baseline {shown}*"])


def test_dirty_saves_stay_apart_and_are_not_the_comparison_point(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    first = _session_repo(pt)
    res, _ = _results(pt, "--llmperf-save")
    res.assert_outcomes(passed=1)
    (pt.path / "test_chat.py").write_text(TEST + "\n# edited\n")
    res, data = _results(pt, "--llmperf-save", "--llmperf-save-dirty")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*saved 1 run(s)*.dirty.json (dirty tree)"])
    [profile_dir] = [d for d in (pt.path / "baselines").iterdir() if d.is_dir()]
    clean, dirty = profile_dir / f"{first}.json", profile_dir / f"{first}.dirty.json"
    assert len(json.loads(clean.read_text())["tests"]["test_chat.py::test_chat"]["runs"]) == 1
    assert json.loads(clean.read_text())["dirty"] is False
    assert json.loads(dirty.read_text())["dirty"] is True
    clean.unlink()  # only the dirty save is left: the gate does not take it by itself
    res, data = _results(pt)
    assert data["tests"][0]["comparison"]["status"] == "no baseline"
    res, data = _results(pt, "--llmperf-compare", first[:10])  # ... but when asked for it
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared" and comp["baseline_commit"] == first
    assert "saved from a dirty tree" in comp["message"]


def test_compare_with_a_commit_the_shallow_clone_lacks_is_a_usage_error(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    first = _session_repo(pt)
    _next_commit(pt, "second")
    clone = pt.path.parent / "clone"
    git(pt.path.parent, "clone", "-q", "--depth", "1", f"file://{pt.path}", str(clone))
    os.chdir(clone)
    for ref in (first, "HEAD~1"):
        res = pt.runpytest("--llmperf", "--llmperf-compare", ref)
        assert res.ret == pytest.ExitCode.USAGE_ERROR
        _no_traceback(res)
        err = res.stderr.str()
        assert f"--llmperf-compare: {ref!r} is not a commit" in err and "git fetch" in err


def test_a_model_path_outside_the_repository_does_not_turn_the_gate_off(
    llmperf_pytester: pytest.Pytester, tiny_model: Path,
) -> None:
    pt = llmperf_pytester
    first = _session_repo(pt)
    assert not tiny_model.is_relative_to(pt.path)
    res, _ = _results(pt, "--llmperf-save", "--llmperf-model", str(tiny_model))
    res.assert_outcomes(passed=1)
    assert (pt.path / "baselines").is_dir()
    _next_commit(pt, "second")
    res, data = _results(pt, "--llmperf-model", str(tiny_model))
    comp = data["tests"][0]["comparison"]
    assert comp["status"] == "compared" and comp["baseline_commit"] == first


# --------------------------------- issue 23: stores under hostile and careless use, round 2


SCHEDULE_TEST = """
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_fast(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=3, requests=2))
"""


def _limit_memory() -> None:  # pragma: no cover (in the child)
    """At most 1 GiB of address space: a read without a limit fails fast, not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """``llmperf ARGS`` as a process, with a time limit (a read that blocks fails the test
    instead of hanging it) and a memory limit."""
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, **(env or {})}, preexec_fn=_limit_memory)


def _odd_file(path: Path, kind: str) -> str:
    """A FIFO, or a symlink to /dev/zero, named like a baseline file; what a read says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
        return "a FIFO (named pipe), not a regular file; not read"
    path.symlink_to("/dev/zero")
    return "a device, not a regular file; not read"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_a_device_in_a_store_is_named_and_never_read(tmp_path: Path,
                                                                kind: str) -> None:
    shared = tmp_path / "shared"
    save(BaselineStore(shared), [run("good")], sha=SHA2)
    odd = shared / "p1" / f"{SHA}.json"
    said = _odd_file(odd, kind)
    into = tmp_path / "into"
    local_odd = into / "p1" / f"{SHA2}.dirty.json"  # and one in the directory pulled into
    _odd_file(local_odd, kind)
    res = _cli(tmp_path, "baselines", "pull", str(shared), "--dir", str(into))
    assert res.returncode == 1, res.stderr
    assert res.stdout.splitlines()[0] == (f"pulled 1 run(s) in 1 file(s) from {shared} into "
                                          f"{into}")
    assert res.stderr == f"llmperf: warning: {odd}: {said}\n"
    res = _cli(tmp_path, "baselines", "list", "--dir", str(shared))
    assert res.returncode == 1 and SHA2[:12] in res.stdout
    assert res.stderr == f"llmperf: warning: {odd}: {said}\n"
    res = _cli(tmp_path, "baselines", "list", "--dir", str(into))
    assert res.stderr == f"llmperf: warning: {local_odd}: {said}\n"
    res = _cli(tmp_path, "baselines", "push", str(tmp_path / "pushed"), "--dir", str(into))
    assert res.returncode == 1 and res.stdout.startswith("pushed 1 run(s) in 1 file(s)")
    assert res.stderr == f"llmperf: warning: {local_odd}: {said}\n"


def test_a_session_whose_store_holds_a_fifo_runs_and_names_it(pytester: pytest.Pytester
                                                              ) -> None:
    pt = pytester
    pt.makeconftest(SCHEDULE_CONFTEST)
    pt.makepyfile(test_fast=SCHEDULE_TEST)
    (pt.path / ".gitignore").write_text("__pycache__/\nbaselines/\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    shared = pt.path.parent / "shared"
    save(BaselineStore(shared), [run("good")], sha=SHA2)
    fifo = shared / "p1" / f"{SHA}.json"
    _odd_file(fifo, "fifo")
    res = pt.runpytest_subprocess("--llmperf", "--llmperf-engine=schedule",
                                  "--llmperf-model=3", f"--llmperf-store={shared}",
                                  "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([f"*pulled 1 run(s) in 1 file(s) from {shared} into*",
                              f"*WARNING: {fifo}: a FIFO (named pipe), not a regular file*"])


@pytest.mark.parametrize("action", [["push"], ["pull"], ["compact"]])
def test_the_commands_refuse_a_memory_store_that_would_die_with_them(
        tmp_path: Path, action: list[str]) -> None:
    save(BaselineStore(tmp_path / "local"), [run("a"), run("b")])
    url = "memory://llmperf/baselines"
    extra = ["--dir", str(tmp_path / "local")] if action != ["compact"] else []
    res = _cli(tmp_path, "baselines", *action, url, *extra)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.startswith(f"llmperf: error: {url}: memory:// lives only inside one "
                                 "process") and res.stderr.count("\n") == 1
    assert "use it in a session or in tests" in res.stderr


def _repo_with_origin(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    repo = tmp_path / "repo"
    _repo(repo)
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    return repo


@pytest.mark.parametrize(("spec", "needle"), [
    ("git:HEAD", "'HEAD' names the current commit"),
    ("git:origin/HEAD", "'HEAD' names the current commit"),
    ("git:-x", "cannot start with '-'"),
    ("git:refs/heads/x", "not a reference under refs/"),
    ("git:refs/heads/HEAD", "not a reference under refs/"),
])
def test_store_branches_git_reads_as_something_else_are_usage_errors(
        tmp_path: Path, spec: str, needle: str) -> None:
    repo = _repo_with_origin(tmp_path)
    save(BaselineStore(repo / "baselines"), [run("a")])
    for action in ("push", "pull"):
        res = _cli(repo, "baselines", action, spec)
        assert res.returncode == 2, res.stdout
        assert res.stderr.startswith(f"llmperf: error: {spec}: ") and needle in res.stderr
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert git(tmp_path / "remote.git", "for-each-ref", "--format=%(refname)") == (
        "refs/heads/main")  # nothing was pushed anywhere


def test_a_session_with_an_invalid_store_branch_stops_with_a_usage_error(
        pytester: pytest.Pytester) -> None:
    pt = pytester
    pt.makeconftest(SCHEDULE_CONFTEST)
    pt.makepyfile(test_fast=SCHEDULE_TEST)
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    git(pt.path, "remote", "add", "origin", str(pt.path.parent / "nowhere.git"))
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=3",
                       "--llmperf-store=git:HEAD", "-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--llmperf-store: git:HEAD: 'HEAD' is not a valid branch name:"
                              " 'HEAD' names the current commit, not a branch"])


def test_a_branch_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    repo = _repo_with_origin(tmp_path)
    save(BaselineStore(repo / "baselines"), [run("big", samples=2000)])
    save(BaselineStore(repo / "baselines"), [run("small")], sha=SHA2)
    res = _cli(repo, "baselines", "push", "git:llmperf-baselines")
    assert res.returncode == 0, res.stderr
    res = _cli(repo, "baselines", "pull", "git:llmperf-baselines", "--dir",
               str(tmp_path / "into"), env={"LLMPERF_MAX_FILE_MB": "0.0625"})
    assert res.returncode == 1
    assert res.stdout.startswith("pulled 1 run(s) in 1 file(s)")
    assert res.stderr.startswith(f"llmperf: warning: git:llmperf-baselines:p1/{SHA}.json: ")
    assert "larger than the 0.0625 MiB limit" in res.stderr and res.stderr.count("\n") == 1
