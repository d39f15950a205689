"""``llmperf nightly`` given a hostile or careless store, state file or issues directory
(issue 23, classes 8, 12, 14, 16):

- the store is a trust boundary: ``--bisect`` does not replay a stored ``--junitxml=FILE`` or
  ``--llmperf-server-cmd`` (the finding is reported, the refused argument named, nothing run);
  arguments the user gives with ``--bisect-args`` are run;
- ``--issues DIR`` deletes only the files it wrote there, night after night;
- a FIFO as ``--state`` does not hang it; a state nested too deeply or holding ``NaN`` is
  refused with one line and exit 2, before anything is written, and is kept as it was.

Real git repositories and real baselines; the FIFO runs the real command with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import git, no_internal_traceback

from pytest_llmperf.cli import main
from pytest_llmperf.commits import bisect, nightly
from pytest_llmperf.store.baselines import BaselineStore

PROFILE = "llama_cpp-tiny-hostile0"
NODE = "tests/test_perf.py::test_chat"
TEST_FILE = """
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_chat(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=2, requests=1))
"""


def stepped_repo(path: Path, args: list[str], n: int = 12, at: int = 6) -> list[str]:
    """A repository of ``n`` commits (a marked test in the first) whose stored TPOT is 25%
    higher from commit ``at`` on; every run records ``args`` as its pytest arguments."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "tests").mkdir()
    (path / "tests" / "test_perf.py").write_text(TEST_FILE)
    (path / ".gitignore").write_text("baselines/\n")
    shas = []
    for i in range(n):
        (path / "code.py").write_text(f"x = {i}\n")
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", f"change {i}")
        shas.append(git(path, "rev-parse", "HEAD"))
    store = BaselineStore(path / "baselines")
    rng = np.random.default_rng(0)
    for i, sha in enumerate(shas):
        runs = []
        for _ in range(2):
            level = 1.25 if i >= at else 1.0
            summary = {"ttft_p50_ms": 50.0 * float(np.exp(rng.normal(0, 0.01))),
                       "tpot_p50_ms": 10.0 * level * float(np.exp(rng.normal(0, 0.01))),
                       "output_tps": 100.0 * float(np.exp(rng.normal(0, 0.01)))}
            runs.append({"summary": summary, "workload": {"requests": 8},
                         "engine": {"kind": "llama_cpp"}, "started_at": "2026-01-01T00:00:00Z",
                         "client": {"checks": [], "pytest_args": list(args)}})
        store.save(profile_id=PROFILE, profile={"engine": {"kind": "llama_cpp"}, "hardware": {}},
                   commit=sha, branch="main", dirty=False,
                   committed_at=f"2026-01-{i + 1:02d}T00:00:00Z", tests={NODE: runs})
    return shas


def nightly_cli(repo: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command, as a nightly job runs it."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["LLMPERF_CACHE_DIR"] = str(repo.parent / "cache")  # nothing may need the real model
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "nightly", "--dir",
                           str(repo / "baselines"), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)


def nightly_main(repo: Path, *args: str,
                 capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["nightly", "--dir", str(repo / "baselines"), *args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------------
# Class 8: the stored arguments are not executed without the user's say-so.


def test_bisect_does_not_replay_a_stored_junitxml_or_server_command(tmp_path: Path) -> None:
    victim = tmp_path / "victim.xml"
    victim.write_text("the user's own file\n")
    pwned = tmp_path / "PWNED"
    repo = tmp_path / "repo"
    shas = stepped_repo(repo, ["--llmperf", "tests/test_perf.py", f"--junitxml={victim}",
                               "--llmperf-server-cmd", f"sh -c 'touch {pwned}'"])
    out_json = tmp_path / "n.json"
    proc = nightly_cli(repo, "--bisect", "--json", str(out_json))
    # A new regression all the same: exit 1, as documented; no traceback.
    assert proc.returncode == 1, proc.stdout + proc.stderr
    no_internal_traceback(proc.stderr)
    assert victim.read_text() == "the user's own file\n"
    assert not pwned.exists()
    [warning] = [ln for ln in proc.stderr.splitlines() if "bisect of" in ln]
    assert warning.startswith(f"llmperf nightly: warning: bisect of {NODE} tpot_p50_ms not run")
    assert "--junitxml" in warning and "--llmperf-server-cmd" in warning
    assert "--bisect-args" in warning
    assert str(victim) not in warning and "touch" not in warning
    [reg] = json.loads(out_json.read_text())["regressions"]
    assert reg["first_bad"]["commit"] == shas[6]
    assert reg["bisect"]["status"] == "refused" and reg["bisect"]["first_bad"] is None
    assert [r["argument"] for r in reg["replay_refused"]] == ["--junitxml",
                                                               "--llmperf-server-cmd"]
    assert "bisect: not run: the stored arguments hold --junitxml, --llmperf-server-cmd" \
        in proc.stdout
    assert not any(line.startswith("[nightly] bisecting") for line in proc.stderr.splitlines())


def test_the_arguments_given_with_bisect_args_are_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = stepped_repo(repo, ["--llmperf", "tests/test_perf.py", "--llmperf-server-cmd",
                               "sh -c 'touch PWNED'"])
    asked: list[bisect.Options] = []

    def fake_run(opts: bisect.Options, out: Any = None, err: Any = None) -> int:
        asked.append(opts)
        assert opts.json_path is not None
        opts.json_path.write_text(json.dumps({"first_bad": {"commit": shas[6],
                                                            "subject": "change 6"}}))
        return 0

    monkeypatch.setattr(bisect, "run", fake_run)
    mine = "tests/test_perf.py --llmperf --llmperf-server-cmd 'my-server --port {port}'"
    rc, out, err = nightly_main(repo, "--bisect", "--bisect-args", mine, capsys=capsys)
    assert rc == 1, err
    [opts] = asked
    assert opts.pytest_args == ["tests/test_perf.py", "--llmperf", "--llmperf-server-cmd",
                                "my-server --port {port}"]
    assert (opts.good, opts.bad) == (shas[5], shas[6])
    assert f"bisect: first bad commit {shas[6][:12]} change 6" in out
    # Without --bisect, or unbalanced: bad usage, one line.
    for bad, message in ((["--bisect-args", "x"], "--bisect-args: give --bisect too"),
                         (["--bisect", "--bisect-args", "'x"], "cannot split")):
        rc, _, err = nightly_main(repo, *bad, capsys=capsys)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# Class 14: --issues DIR touches only the files it wrote.


def test_the_users_files_in_the_issues_directory_survive_two_nights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    stepped_repo(repo, ["--llmperf", "tests/test_perf.py"])
    docs = tmp_path / "mydocs"
    docs.mkdir()
    mine = {"01.md": "# my notes\n", "07.md": "# more notes\n", "07.title": "my title\n",
            "readme.txt": "mine\n"}
    for name, text in mine.items():
        (docs / name).write_text(text)

    def night(n: int) -> list[str]:
        state = tmp_path / f"state-{n}.json"  # a new state each night: a new regression
        rc, _, err = nightly_main(repo, "--issues", str(docs), "--state", str(state),
                                  capsys=capsys)
        assert rc == 1, err
        for name, text in mine.items():
            assert (docs / name).read_text() == text, f"night {n} changed {name}"
        return sorted(p.name for p in docs.iterdir())

    assert night(1) == [".llmperf-issues.json", "01.md", "02.md", "02.title", "07.md",
                        "07.title", "readme.txt"]
    assert (docs / "02.title").read_text() == f"llmperf regression: tpot_p50_ms of {NODE}\n"
    manifest = json.loads((docs / ".llmperf-issues.json").read_text())
    assert sorted(manifest["files"]) == ["02.md", "02.title"]
    # The next night replaces its own issue, and nothing else.
    assert night(2) == [".llmperf-issues.json", "01.md", "02.md", "02.title", "07.md",
                        "07.title", "readme.txt"]
    # A file it wrote that the user has since edited is the user's: kept, its number skipped
    # (the title beside it, unchanged, is still its own: replaced).
    (docs / "02.md").write_text("# I keep this one\n")
    mine["02.md"] = "# I keep this one\n"
    assert night(3) == [".llmperf-issues.json", "01.md", "02.md", "03.md", "03.title",
                        "07.md", "07.title", "readme.txt"]
    assert sorted(json.loads((docs / ".llmperf-issues.json").read_text())["files"]) == [
        "03.md", "03.title"]
    # An unreadable manifest: one line, exit 2, nothing in the directory changed.
    (docs / ".llmperf-issues.json").write_text('{"files": {"../../x": []}}')
    before = {p.name: p.read_bytes() for p in docs.iterdir()}
    rc, _, err = nightly_main(repo, "--issues", str(docs), "--state",
                              str(tmp_path / "state-4.json"), capsys=capsys)
    assert rc == 2 and "not a pytest-llmperf issues manifest" in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in docs.iterdir()} == before


# ---------------------------------------------------------------------------------------------
# Classes 12 and 16: the state file is read bounded, checked, and never overwritten unread.


def test_a_fifo_as_the_state_file_does_not_hang(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    stepped_repo(repo, ["--llmperf", "tests/test_perf.py"])
    fifo = tmp_path / "state.fifo"
    os.mkfifo(fifo)
    out_json = tmp_path / "n.json"
    proc = nightly_cli(repo, "--state", str(fifo), "--json", str(out_json), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_internal_traceback(proc.stderr)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"llmperf nightly: error: --state {fifo}: unreadable")
    assert "FIFO" in line and "it was not changed" in line
    assert not out_json.exists()


STATE_ENTRY = {"profile_id": PROFILE, "nodeid": NODE, "metric": "tpot_p50_ms",
               "first_bad": "0" * 40, "last_good": "1" * 40, "reported_at": "2026-01-01"}


@pytest.mark.parametrize(("text", "message"), [
    ('{"schema": "pytest-llmperf/nightly-state", "reported": ' + "[" * 200_000
     + "]" * 200_000 + "}", "nested too deeply"),
    (json.dumps({"schema": nightly.STATE_SCHEMA, "schema_version": 1,
                 "reported": [{**STATE_ENTRY, "change_pct": 12.5}]}).replace("12.5", "NaN"),
     "NaN is not a JSON number"),
    (json.dumps({"schema": nightly.STATE_SCHEMA, "schema_version": 1,
                 "reported": [STATE_ENTRY, {**STATE_ENTRY, "change_pct": "12%"}]}),
     "entry 1 of \"reported\" has a 'change_pct' that is not a finite number"),
    (json.dumps({"schema": nightly.STATE_SCHEMA, "schema_version": 1,
                 "reported": [{**STATE_ENTRY, "first_bad": ["x"]}]}),
     "entry 0 of \"reported\" has no text 'first_bad'"),
])
def test_a_bad_state_file_is_refused_and_kept(
        tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    stepped_repo(repo, ["--llmperf", "tests/test_perf.py"])
    state = tmp_path / "state.json"
    state.write_text(text)
    out_json, out_md = tmp_path / "n.json", tmp_path / "n.md"
    rc, _, err = nightly_main(repo, "--state", str(state), "--json", str(out_json),
                              "--markdown", str(out_md), capsys=capsys)
    assert rc == 2
    no_internal_traceback(err)
    [line] = err.strip().splitlines()
    assert line.startswith(f"llmperf nightly: error: --state {state}: ")
    assert message in line and "it was not changed" in line
    assert state.read_text() == text  # never overwritten
    assert not out_json.exists() and not out_md.exists()
