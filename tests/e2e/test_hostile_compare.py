"""``llmperf compare --served`` given a broken set-up (issue 23, class 2): exit 1 means "HEAD
regressed", so bad usage and a broken set-up must exit 2 with one line, never a traceback (which
Python exits 1 with): a server command with an unbalanced quote, a server that answers its port
with something that is not HTTP. And its ``--json`` keeps no secret of its command line (class 6):
``settings.served`` and ``settings.pytest_args`` are stored redacted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import no_internal_traceback, worktrees

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
