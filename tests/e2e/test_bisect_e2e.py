"""``llmperf bisect``: the binary search and ABBA order, the paired decision over sessions, and
the real command on a real git repository whose commits slow down a test-oracle engine.

Split by tier from tests/test_bisect.py: these are its e2e tests; the others are in
tests/unit/commits/test_bisect.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import cli_exit_code, git, llmperf, worktrees

# ---------------------------------------------------------------------------------------------
# The command on a real repository.

CONFTEST = '''
"""Test oracle for llmperf bisect: an in-process engine with a known schedule."""

import asyncio
import time
from pathlib import Path

import pytest

from pytest_llmperf.engines.base import Engine, Generation
from pytest_llmperf.testing.oracle import WordTokenizer


class ScheduleOracleEngine(Engine):
    """Test oracle: one token every delay_ms (read from delay_ms.txt at the repository root)."""

    kind = "schedule-oracle"
    max_concurrency = 1

    def __init__(self, delay_ms: float) -> None:
        self.delay_ms = delay_ms
        self._tokenizer = WordTokenizer()

    @property
    def tokenizer(self):
        return self._tokenizer

    def info(self):
        return {"kind": self.kind, "delay_ms": self.delay_ms}

    async def generate(self, prompt, params, on_chunk):
        for _ in range(params.max_tokens):
            await asyncio.sleep(self.delay_ms / 1e3)
            on_chunk(time.perf_counter_ns(), 1)
        return Generation(output_tokens=params.max_tokens, source="engine")


@pytest.fixture(scope="session")
def oracle_engine():
    delay = float((Path(__file__).parent / "delay_ms.txt").read_text())
    return ScheduleOracleEngine(delay)
'''

TEST_FILE = '''
from pytest_llmperf import Workload, llmperf


@llmperf(tpot_p50_ms=1.0)  # always broken: a failed threshold still gives numbers
def test_generation_speed(llmperf_bench, oracle_engine):
    llmperf_bench(oracle_engine, Workload(input_tokens=4, output_tokens=4, requests=3))
'''

DELAYS_MS = (4, 4, 12, 12, 12)  # commit 3 makes every token three times slower
# Quick: 4 pairs (8 sessions) per comparison. 4 pairs reach p = 1/16 at best, so alpha 0.1;
# the 50% tolerance keeps an A/A comparison on a busy machine from flagging timer noise.
FAST = ["--alpha", "0.1", "--pairs", "4", "--max-regression-pct", "50"]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Commits 1-5 on main (delay 3, 3, 9, 9, 9 ms per token) and a branch ``broken`` off
    commit 5 whose test file does not compile."""
    root = tmp_path_factory.mktemp("bisect") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (root / "test_speed.py").write_text(textwrap.dedent(TEST_FILE))
    shas = []
    for i, delay in enumerate(DELAYS_MS, start=1):
        (root / "delay_ms.txt").write_text(f"{delay}\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "--allow-empty", "-m", f"commit {i}: {delay} ms per token")
        shas.append(git(root, "rev-parse", "HEAD"))
    git(root, "checkout", "-q", "-b", "broken")
    (root / "test_speed.py").write_text("def test_oops(:\n")
    git(root, "commit", "-q", "-am", "broken test file")
    broken = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "main")
    return {"root": root, "shas": shas, "broken": broken}


def test_bisect_names_the_commit_that_slowed_down(history: dict[str, Any]) -> None:
    root, shas = history["root"], history["shas"]
    out_json = root.parent / "out" / "bisect.json"
    res = llmperf(root, "bisect", shas[0], "main", *FAST, "--json", str(out_json),
                  "--", "test_speed.py")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"first bad commit: {shas[2][:12]} commit 3: 12 ms per token" in res.stdout
    verdict_line = res.stdout.splitlines()[1]
    assert "test_speed.py::test_generation_speed: " in verdict_line
    assert "regression" in verdict_line and "change +" in verdict_line
    table = res.stdout.split("\n\n", 1)[1]
    assert f"{shas[2][:12]}  commit 3" in table and "<- first bad" in table
    progress = [ln for ln in res.stderr.splitlines() if ln.startswith("[bisect] comparing")]
    assert len(progress) == 3 * 8  # confirm, then commits 3 and 2: 4 pairs each
    assert f"comparing {shas[4][:12]} against {shas[0][:12]}: pair 1/4, run 1/8" in progress[0]
    assert "Traceback" not in res.stderr
    assert len(worktrees(root)) == 1  # only the main one: every worktree was removed

    doc = json.loads(out_json.read_text())
    assert doc["version"] == 1 and doc["schema"] == "pytest-llmperf/bisect"
    assert doc["first_bad"]["commit"] == shas[2] and doc["confirmed"] is True
    assert doc["candidates"] == shas[1:]
    tested = {c["commit"]: c["verdict"] for c in doc["comparisons"]}
    assert tested == {shas[1]: "ok", shas[2]: "regression", shas[4]: "regression"}
    assert out_json.read_text() == json.dumps(doc, sort_keys=True, indent=1) + "\n"


def test_no_change_between_good_and_bad_is_not_confirmed(history: dict[str, Any]) -> None:
    root, shas = history["root"], history["shas"]
    res = llmperf(root, "bisect", shas[0], shas[1], *FAST)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.startswith(f"regression not confirmed: {shas[1][:12]} is not slower "
                                 f"than {shas[0][:12]}")
    assert f"{shas[0][:12]}  commit 1" in res.stdout  # the table
    assert len(worktrees(root)) == 1


def test_a_session_without_numbers_names_the_commit_and_shows_its_output(
    history: dict[str, Any],
) -> None:
    root, shas = history["root"], history["shas"]
    res = llmperf(root, "bisect", shas[0], "broken", *FAST)
    assert res.returncode == 2
    first, *tail = res.stderr.split("llmperf: error: ", 1)[1].splitlines()
    assert f"the pytest session at {history['broken'][:12]} (broken test file)" in first
    assert "pytest exited with status 2" in first
    assert any("SyntaxError" in ln or "error" in ln.lower() for ln in tail)
    assert "Traceback (most recent call last)" not in res.stderr
    assert len(worktrees(root)) == 1


def test_keep_worktrees_keeps_them(history: dict[str, Any]) -> None:
    root, shas = history["root"], history["shas"]
    # Adjacent commits, and a test selection that measures nothing: fails after one session
    # (which ran: a relative --python works although sessions run in another directory).
    python = os.path.relpath(sys.executable, root)
    res = llmperf(root, "bisect", shas[0], shas[1], *FAST, "--keep-worktrees",
                  "--python", python, "--", "-k", "no_such_test")
    assert res.returncode == 2 and "exited with status 5" in res.stderr
    [kept] = worktrees(root)[1:]
    path = Path(kept.split()[0])
    assert shas[0][:7] in kept and (path / "delay_ms.txt").read_text() == "4\n"
    assert f"kept the worktrees and session results under {path.parent}" in res.stderr
    git(root, "worktree", "remove", "--force", str(path))
    shutil.rmtree(path.parent)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_bisect_removes_its_worktrees(history: dict[str, Any],
                                                     sig: signal.Signals) -> None:
    root, shas = history["root"], history["shas"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_llmperf.cli", "bisect", shas[0], "main", *FAST],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while len(worktrees(root)) < 3 and time.monotonic() < deadline:  # both checked out
            time.sleep(0.1)
        assert len(worktrees(root)) == 3
        # Ctrl-C reaches the whole foreground group; a cancelled CI job's SIGTERM only us.
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.rstrip().endswith("llmperf: interrupted")
    assert len(worktrees(root)) == 1


@pytest.mark.parametrize("argv,needle", [
    (["bisect", "nosuchref", "main"], "GOOD 'nosuchref' is not a commit, branch or tag"),
    (["bisect", "{c1}", "nosuchref"], "BAD 'nosuchref' is not a commit"),
    (["bisect", "{c3}", "{c1}"], "is not an ancestor of BAD"),
    (["bisect", "main", "main"], "the same commit"),
    (["bisect", "{c1}", "main", "--pairs", "6"], "--pairs 6 can never flag a regression"),
    (["bisect", "{c1}", "main", "--alpha", "2"], "--alpha 2: must be between 0 and 0.5"),
    (["bisect", "{c1}", "main", "--python", "/no/such/python"], "no such executable"),
    (["bisect", "{c1}"], "required: BAD"),
    (["bisect", "{c1}", "main", "--pairs", "x"], "invalid int value"),
])
def test_bad_usage_is_one_line_and_exit_2(
    history: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str,
) -> None:
    shas = history["shas"]
    monkeypatch.chdir(history["root"])
    argv = [a.format(c1=shas[0], c3=shas[2]) for a in argv]
    code = cli_exit_code(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err
    assert len(worktrees(history["root"])) == 1
