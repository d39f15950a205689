"""``llmperf compare --served`` given a broken set-up (issue 23, class 2): exit 1 means "HEAD
regressed", so bad usage and a broken set-up must exit 2 with one line, never a traceback (which
Python exits 1 with): a server command with an unbalanced quote, a server that answers its port
with something that is not HTTP. And its ``--json`` keeps no secret of its command line (class 6):
``settings.served`` and ``settings.pytest_args`` are stored redacted.

``llmperf compare`` killed outright (issue 23, class 13: SIGKILL, which no handler sees): its
servers and its pytest session die with it, and the next compare (or bisect) in the repository
removes the worktrees it could not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import git, no_internal_traceback, worktrees

# Answers every connection with bytes that are no HTTP status line.
GARBAGE_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"SSH-2.0-OpenSSH_9.6 not http\\r\\n\\r\\n")
    c.close()
"""


def compare(root: Path, served: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "compare", "HEAD~1",
                           "HEAD", "--server-timeout", "30", "--served", served, "--",
                           "test_served.py"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if not line.startswith("[compare]")]


def test_an_unbalanced_quote_in_served_is_bad_usage(served_repo: Path) -> None:
    proc = compare(served_repo, f"{sys.executable} 'serve.py --port {{port}}")
    assert proc.returncode == 2, proc.stderr
    no_internal_traceback(proc.stderr)
    (line,) = error_lines(proc)
    assert line.startswith("llmperf: error: --served: the server command cannot be split")
    assert "no closing quotation" in line
    assert len(worktrees(served_repo)) == 1


def test_a_server_that_does_not_speak_http_is_a_broken_set_up(served_repo: Path,
                                                               tmp_path: Path) -> None:
    script = tmp_path / "garbage.py"
    script.write_text(textwrap.dedent(GARBAGE_SERVER))
    proc = compare(served_repo, f"{sys.executable} {script} {{port}}")
    assert proc.returncode == 2, proc.stderr
    no_internal_traceback(proc.stderr)
    (line,) = error_lines(proc)
    assert "does not speak HTTP" in line and "SSH-2.0-OpenSSH_9.6" in line, line
    assert len(worktrees(served_repo)) == 1


# Prints the credentials it was started with, as a failing server's log does, and exits.
LEAKY_SERVER = """
import os, sys
print("starting with api_key=plainApiKey0815 and " + os.environ["MY_TOKEN"], flush=True)
print("OPENAI_API_KEY=sk-plainOpenAiKey0123456789abcd", flush=True)
print("\\x1b]0;pwned\\x07\\x1b[31mfatal: cannot bind\\x1b[0m", flush=True)
sys.exit(3)
"""


def test_a_failing_served_servers_log_is_shown_redacted(served_repo: Path,
                                                        tmp_path: Path) -> None:
    """Class 5: the log tail of a ``--served`` server that fails to start is shown with its
    secrets as ``***`` and without its terminal escapes, as ``--llmperf-server-cmd`` shows
    it."""
    script = tmp_path / "leaky.py"
    script.write_text(textwrap.dedent(LEAKY_SERVER))
    proc = compare(served_repo, f"env MY_TOKEN=MY_TOKEN=plainEnvTok4711 {sys.executable} "
                                f"{script} {{port}}")
    assert proc.returncode == 2, proc.stderr
    no_internal_traceback(proc.stderr)
    output = proc.stdout + proc.stderr
    for secret in ("plainApiKey0815", "plainEnvTok4711", "sk-plainOpenAiKey", "\x1b", "\x07"):
        assert secret not in output, secret
    assert "fatal: cannot bind" in output and "exited with code 3" in output, output
    assert "api_key=***" in output and "OPENAI_API_KEY=***" in output, output


def test_compare_json_stores_no_secret_of_its_command_line(served_repo: Path,
                                                           tmp_path: Path) -> None:
    token, gateway, bearer = "plainEnvTok0815", "plainGateway4711", "plainBearer2342"
    headers = f"X-Gateway-Token: {gateway}; Authorization: Bearer {bearer}"
    served = f"env SERVE_TOKEN={token} {sys.executable} serve.py --port {{port}}"
    out = tmp_path / "compare.json"
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "compare", "HEAD",
                           "HEAD", "--pairs", "4", "--alpha", "0.2", "--server-timeout", "30",
                           "--served", served, "--json", str(out), "--", "test_served.py",
                           "--llmperf-headers", headers], cwd=served_repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    settings = json.loads(out.read_text())["settings"]
    assert settings["served"] == (f"env SERVE_TOKEN=*** {sys.executable} serve.py "
                                  "--port {port}")
    assert settings["pytest_args"] == [
        "test_served.py", "--llmperf-headers",
        "X-Gateway-Token: ***; Authorization: Bearer ***"]
    for secret in (token, gateway, bearer):
        assert secret not in out.read_text() + proc.stdout + proc.stderr, secret


# ---------------------------------------------------------------------------------------------
# SIGKILL (class 13)

# A session that says it started (its pid in $LLMPERF_TEST_STARTED) and then runs for ten
# minutes, when $LLMPERF_TEST_STARTED is set; else it measures nothing (a session with no
# numbers: bisect stops there with exit 2).
SLOW_TEST = """
import os, time

def test_slow():
    started = os.environ.get("LLMPERF_TEST_STARTED")
    if started:
        with open(started + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(started + ".tmp", started)
        time.sleep(600)
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_compare(root: Path, started: list[subprocess.Popen[str]], *args: str,
                  env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.Popen([sys.executable, "-m", "pytest_llmperf.cli", "compare", "HEAD~1",
                             "HEAD", *args], cwd=root, env={**base, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started.append(proc)
    return proc


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], guard_s: float = 60.0) -> list[int]:
    """The pids still running once all are gone or ``guard_s`` has passed (a hang guard)."""
    deadline = time.monotonic() + guard_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:120]}")
    return out


def run_dirs(root: Path) -> set[Path]:
    """The directories holding the worktrees git knows of, the main one's excepted."""
    listed = git(root, "worktree", "list", "--porcelain").splitlines()
    paths = [Path(line.split(" ", 1)[1]) for line in listed if line.startswith("worktree ")]
    return {p.parent for p in paths[1:]}


def test_a_sigkilled_compare_served_leaves_no_server_and_the_next_run_removes_its_worktrees(
        served_repo: Path, started: list[subprocess.Popen[str]]) -> None:
    served = f"{sys.executable} serve.py --port {{port}}"
    proc = start_compare(served_repo, started, "--server-timeout", "60", "--served", served,
                         "--", "test_served.py")
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # until both servers answered: the session is starting
        seen.append(line)
        if "one session, every request sent to both servers" in line:
            break
    assert seen and "one session" in seen[-1], "".join(seen)
    deadline = time.monotonic() + 60  # a hang guard: the session starts at once
    while time.monotonic() < deadline:
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        lines = describe(children)
        if any("-m pytest --llmperf" in ln for ln in lines):
            break
        time.sleep(0.05)
    assert len([ln for ln in lines if "serve.py" in ln]) == 2, lines
    assert len([ln for ln in lines if "-m pytest --llmperf" in ln]) == 1, lines
    left = run_dirs(served_repo)
    assert len(left) == 1  # BASE's and HEAD's worktrees, in the run's directory
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert wait_gone(children) == [], describe(children)  # servers, watchdogs, the session
    assert run_dirs(served_repo) == left and all(d.is_dir() for d in left)  # nobody cleaned

    again = compare(served_repo, served)
    assert again.returncode in (0, 1), again.stderr
    (line,) = [ln for ln in again.stderr.splitlines() if "killed before" in ln]
    assert line == (f"[compare] removed the worktrees of 1 earlier run(s) killed before they "
                    f"could clean up (process {proc.pid} gone): {next(iter(left))}")
    assert not any(d.exists() for d in left)
    assert len(worktrees(served_repo)) == 1


def test_a_sigkilled_compare_leaves_no_session_and_bisect_removes_its_worktrees(
        tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "test_slow.py").write_text(textwrap.dedent(SLOW_TEST))
    for n in (1, 2):
        (root / "n.txt").write_text(str(n))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"c{n}")
    flag = tmp_path / "session.pid"
    proc = start_compare(root, started, "--", "test_slow.py",
                         env={"LLMPERF_TEST_STARTED": str(flag)})
    deadline = time.monotonic() + 120  # a hang guard: the first session starts in seconds
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert flag.exists(), proc.communicate()[1]
    session = int(flag.read_text())
    assert psutil.Process(session).ppid() == proc.pid
    left = run_dirs(root)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert wait_gone([session]) == [], describe([session])  # not ten more minutes
    assert len(left) == 1 and all(d.is_dir() for d in left)

    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    out = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "bisect", "HEAD~1",
                          "HEAD", "--", "test_slow.py"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr  # the session measured nothing
    assert (f"[bisect] removed the worktrees of 1 earlier run(s) killed before they could "
            f"clean up (process {proc.pid} gone): {next(iter(left))}") in out.stderr
    assert not any(d.exists() for d in left)
    assert len(worktrees(root)) == 1
