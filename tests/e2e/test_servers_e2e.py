"""Servers as fixtures: a real ``python -m llama_cpp.server`` on the tiny model, started and
stopped by the plugin, through real pytest sessions.

Split by tier from tests/test_servers.py: these are its e2e tests; the others are in
tests/unit/engines/test_servers.py, tests/sessions/test_servers_session.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import alive

from pytest_llmperf.engines.servers import (
    build_server,
)
from pytest_llmperf.settings import Settings

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python's server extra")


SERVED_SUITE = """
import os
from pathlib import Path

from pytest_llmperf import Workload, llmperf


@llmperf()
def test_concurrent_requests(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=24, output_tokens=8,
                                                requests=6, concurrency=3))
    s = result.summary
    assert llm_engine.kind == "openai"
    assert s["errors"] == 0 and s["requests"] == 6, [r.error for r in result.samples]
    # ignore_eos works on llama_cpp.server (min_tokens + logit_bias on every EOG token):
    # every answer is exactly output_tokens long.
    assert s["output_tokens"] == 6 * 8, [(r.output_tokens, r.output_tokens_source)
                                         for r in result.samples]
    assert {r.output_tokens_source for r in result.samples} == {"max_tokens"}
    assert all(len(r.chunk_ns) >= 1 for r in result.samples)
    # The server process counts as the engine's memory.
    pids = llm_engine.memory_pids()
    assert pids and os.getpid() not in pids
    assert s["peak_rss_mb"] > 10
    Path("server.pid").write_text(str(pids[0]))
    chat = llmperf_bench(llm_engine, Workload(input_tokens=24, output_tokens=8, requests=2,
                                              chat=True))
    assert chat.errors == 0 and chat.summary["output_tokens"] == 2 * 8, [
        (r.error, r.output_tokens, r.output_tokens_source) for r in chat.samples]


@llmperf(max_errors=2)  # the failures are what this test checks
def test_impossible_length_is_a_recorded_error(llmperf_bench, llm_engine):
    # 600 prompt tokens do not fit the server's n_ctx=512: it fails every request.
    result = llmperf_bench(llm_engine, Workload(input_tokens=600, output_tokens=4, requests=2))
    assert result.errors == 2
    # llama_cpp.server fails inside the stream, after its headers: depending on when its
    # worker aborts the response, the client sees the stream end without [DONE] or the
    # chunked body cut off. Both are this server failing mid-stream, never a success.
    assert {r.error_kind for r in result.samples} <= {"incomplete", "dropped"}
    assert all(r.error and not r.chunk_ns for r in result.samples)
    assert any("every request failed" in w for w in result.warnings)
"""


def test_llama_cpp_server_recipe_in_a_session(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(SERVED_SUITE)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-server=llama_cpp", "-W",
                                        "ignore::pytest.PytestWarning")
    assert result.parseoutcomes().get("passed") == 2, result.stdout.str()[-3000:]
    pid = int((llmperf_pytester.path / "server.pid").read_text())
    assert not alive(pid), "the server outlived the session"


def test_llm_server_fixture_and_a_server_that_dies_mid_run(
    llmperf_pytester: pytest.Pytester,
) -> None:
    llmperf_pytester.makepyfile(
        """
        import os
        import signal
        import threading
        import time
        from pathlib import Path

        from pytest_llmperf import Workload, llmperf


        def kill_after_requests(server, n):
            # Kill the server once it has logged n requests: independent of machine speed.
            def watch():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    text = server.log_path.read_text(errors="replace")
                    if text.count("POST /v1/completions") >= n:
                        os.killpg(server.pid, signal.SIGKILL)
                        return
                    time.sleep(0.01)
            thread = threading.Thread(target=watch, daemon=True)
            thread.start()
            return thread


        @llmperf(max_errors=30)  # the failures are what this test checks
        def test_dies_mid_run(llmperf_bench, llm_server, llm_server_engine):
            assert llm_server.url.startswith("http://127.0.0.1:")
            assert llm_server.pid in llm_server_engine.memory_pids()
            Path("server.pid").write_text(str(llm_server.pid))
            watcher = kill_after_requests(llm_server, 4)
            result = llmperf_bench(llm_server_engine, Workload(
                input_tokens=16, output_tokens=48, requests=30, warmup=0, concurrency=2))
            watcher.join(5)
            s = result.summary
            assert s["requests"] == 30
            assert 1 <= s["requests"] - s["errors"] <= 6, s["errors"]
            kinds = {r.error_kind for r in result.samples if r.error}
            assert kinds <= {"dropped", "connection", "incomplete"}, kinds
            assert "connection" in kinds  # requests after the death found nobody listening
        """
    )
    result = llmperf_pytester.runpytest("--llmperf", "-W", "ignore::pytest.PytestWarning")
    result.assert_outcomes(passed=1)
    pid = int((llmperf_pytester.path / "server.pid").read_text())
    assert not alive(pid)


def test_real_server_that_exits_at_startup_shows_its_log(
    llmperf_pytester: pytest.Pytester, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)  # a GGUF header and nothing else
    llmperf_pytester.makepyfile(
        """
        def test_one(llm_server):
            raise AssertionError("not reached")
        """
    )
    result = llmperf_pytester.runpytest(f"--llmperf-model={bad}", "--llmperf-server=llama_cpp",
                                        "--llmperf-server-timeout=60")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "the llama_cpp server exited with code" in out
    assert "last lines of its log" in out
    assert "llama_cpp.server" in out  # the command line is shown
    assert "Failed to load model from file" in out  # the server's own words, from its log
    assert "pytest_llmperf/" not in out  # the traceback in the log is the server's, not ours


def test_no_orphan_server_after_ctrl_c(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(
        """
        import time
        from pathlib import Path

        def test_hangs(llm_server):
            Path("server.pid").write_text(str(llm_server.pid))
            time.sleep(120)
        """
    )
    proc = llmperf_pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "pytester", "--llmperf-server=llama_cpp",
         "-p", "no:cacheprovider"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    pid_file = llmperf_pytester.path / "server.pid"
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("the pytest session ended before its server started")
            time.sleep(0.05)
        assert pid_file.exists(), "the server never started"
        time.sleep(0.2)
        server_pid = int(pid_file.read_text())
        assert alive(server_pid)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 15
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(server_pid), "the server outlived an interrupted session"


def test_attach_by_url_with_the_servers_own_tokenizer(
    llmperf_pytester: pytest.Pytester, tiny_model: Path
) -> None:
    """--llmperf-url to a running llama_cpp.server; prompts of exact length come from its
    /extras/tokenize endpoint (no local tokenizer)."""
    server = build_server(Settings(server="llama_cpp", model=str(tiny_model), n_ctx=512,
                                   threads=1))
    with server.start(timeout_s=60):
        llmperf_pytester.makepyfile(
            """
            import json
            import urllib.request

            from pytest_llmperf import Workload, llmperf
            from pytest_llmperf.run.workload import build_prompts

            @llmperf()
            def test_attached(llmperf_bench, llm_engine):
                assert llm_engine.info()["tokenizer"] == "server:llama-cpp-python"
                wl = Workload(input_tokens=40, output_tokens=4, requests=2)
                result = llmperf_bench(llm_engine, wl)
                assert result.errors == 0
                # The server counts the same prompt length we built.
                prompt = build_prompts(llm_engine.tokenizer, wl)[0].text
                req = urllib.request.Request(
                    llm_engine.root + "/v1/completions",
                    data=json.dumps({"prompt": prompt, "max_tokens": 1}).encode(),
                    headers={"Content-Type": "application/json"})
                usage = json.loads(urllib.request.urlopen(req, timeout=60).read())["usage"]
                assert usage["prompt_tokens"] == 40
            """
        )
        result = llmperf_pytester.runpytest("--llmperf", f"--llmperf-url={server.url}",
                                            "--llmperf-tokenizer=server")
        assert result.parseoutcomes().get("passed") == 1, result.stdout.str()[-3000:]
        assert server.alive()  # attached, not ours to stop
