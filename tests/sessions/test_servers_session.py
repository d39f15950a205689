"""Servers as fixtures: a real ``python -m llama_cpp.server`` on the tiny model, started and
stopped by the plugin, through real pytest sessions.

Split by tier from tests/test_servers.py: these are its sessions tests; the others are in
tests/unit/engines/test_servers.py, tests/e2e/test_servers_e2e.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from helpers import alive, no_internal_traceback

from pytest_llmperf.engines.servers import (
    ManagedServer,
    ServerError,
    build_server,
    engine_arg_flags,
    free_port,
)
from pytest_llmperf.settings import Settings

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python's server extra")


NEVER_HEALTHY = (
    f"{sys.executable} -c \"import sys, time; print('loading weights...', flush=True); "
    "print('fatal: CUDA out of memory', file=sys.stderr, flush=True); time.sleep(60)\""
)


def test_server_that_never_becomes_healthy_shows_its_log(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_one(llmperf_bench, llm_server):
            raise AssertionError("not reached")

        @llmperf()
        def test_two(llmperf_bench, llm_server):
            raise AssertionError("not reached")
        """
    )
    t0 = time.monotonic()
    result = pytester.runpytest("--llmperf", f"--llmperf-server-cmd={NEVER_HEALTHY}",
                                "--llmperf-server-timeout=2")
    assert time.monotonic() - t0 < 30  # one wait of 2 s, not one per test
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "did not become healthy" in out and "within 2 s" in out
    assert "fatal: CUDA out of memory" in out  # the tail of the server's log
    assert "--llmperf-server-timeout" in out
    no_internal_traceback(out)


def test_managed_server_kills_its_whole_process_group(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    script = (
        "import http.server, subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(child_file)!r}, 'w').write(str(c.pid))\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    port = free_port()
    server = ManagedServer([sys.executable, "-c", script, str(port)], port=port,
                           log_path=tmp_path / "s.log")
    with server.start(timeout_s=30):
        child = int(child_file.read_text())
        assert alive(child) and child in server.pids()
    assert not alive(child) and not server.alive()


# A server that dies at start the way vLLM does: its root cause (a traceback, each line under
# vLLM's per-process and logger prefixes) early in the log, then many lines of other noise
# that end with "see root cause above".
_DIES_AT_START = r"""
import sys
p = "(EngineCore pid=4242) ERROR 11-30 12:00:00 [core.py:1] "
print("(APIServer pid=1) INFO starting, token=s3cretValue42")
for i in range(5):
    print(f"(APIServer pid=1) INFO loading {i}")
print(p + "EngineCore failed to start.")
print(p + "Traceback (most recent call last):")
print(p + '  File "core.py", line 10, in run')
print(p + "    load(model)")
print(p + "ValueError: head size 48 is not supported (key s3cretValue42)")
for i in range(40):
    print(f"(APIServer pid=1) noise line {i}")
print("Traceback (most recent call last):")
print('  File "api_server.py", line 9, in main')
print("RuntimeError: Engine core initialization failed. See root cause above.")
sys.exit(3)
"""


def test_a_server_that_dies_at_start_shows_its_first_error(tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, "-c", _DIES_AT_START], name="dying",
                           port=free_port(), log_path=tmp_path / "dying.log",
                           secrets=["s3cretValue42"])
    with pytest.raises(ServerError) as info:
        server.start(timeout_s=60)
    message = str(info.value)
    assert "the dying server exited with code 3" in message
    assert "first error in its log:" in message
    first, _, tail = message.partition("first error in its log:")[2].partition(
        "last lines of its log:")
    for line in ("EngineCore failed to start.", "Traceback (most recent call last):",
                 'File "core.py", line 10, in run',
                 "ValueError: head size 48 is not supported"):
        assert line in first, (line, message)
    assert "noise line" not in first  # the block ends at its exception line
    assert "See root cause above" in tail and "noise line 39" in tail
    assert "s3cretValue42" not in message and "***" in message


def test_first_error_is_not_repeated_when_the_tail_shows_it(tmp_path: Path) -> None:
    script = ("import sys\nprint('Traceback (most recent call last):')\n"
              "print('  File \"x\", line 1')\nprint('OSError: port in use')\nsys.exit(1)")
    server = ManagedServer([sys.executable, "-c", script], port=free_port(),
                           log_path=tmp_path / "short.log")
    with pytest.raises(ServerError) as info:
        server.start(timeout_s=60)
    assert "first error in its log" not in str(info.value)
    assert "OSError: port in use" in str(info.value)


def test_engine_args_render_as_flags_of_each_recipe(tiny_model: Path) -> None:
    args = {"max_num_seqs": 8, "enable_prefix_caching": True, "enforce_eager": False,
            "speculative_config": {"method": "ngram", "num_speculative_tokens": 3}}
    assert engine_arg_flags(args) == [
        "--max-num-seqs", "8", "--enable-prefix-caching", "--no-enforce-eager",
        "--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3}']
    assert engine_arg_flags({"max_batch_size": 4, "trust_remote_code": True},
                            "underscore") == ["--max_batch_size", "4", "--trust_remote_code"]
    server = build_server(Settings(server="llama_cpp", model=str(tiny_model), context_len=300,
                                   engine_arg='{"n_batch": 64, "verbose": false}'))
    text = " ".join(server.argv)
    assert "--n_ctx 300" in text and text.endswith("--n_batch 64 --verbose False")
