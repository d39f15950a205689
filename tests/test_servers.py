"""Servers as fixtures: a real ``python -m llama_cpp.server`` on the tiny model, started and
stopped by the plugin, through real pytest sessions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import no_internal_traceback

from pytest_llmperf.engines.servers import (
    RECIPES,
    ManagedServer,
    ServerError,
    build_server,
    engine_arg_flags,
    free_port,
)
from pytest_llmperf.settings import Settings

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python's server extra")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


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


def test_missing_executable_names_the_fix() -> None:
    with pytest.raises(ServerError, match=r"not on PATH.*vllm"):
        build_server(Settings(server="vllm", model="some/model"))
    with pytest.raises(ServerError, match="--llmperf-server-model"):
        build_server(Settings(server="ollama", model="x"))


def test_recipes_name_host_and_port() -> None:
    for name, recipe in RECIPES.items():
        text = " ".join(recipe.argv) + " " + " ".join(recipe.env.values())
        assert "{port}" in text and "{host}" in text, name
        assert recipe.health_path.startswith("/")


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


def test_a_server_command_is_shown_without_its_secrets(tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, "-m", "x", "--api-key", "k3yValue0042",
                            "--hf-token=hfValue0042", "--port", "1"], port=1,
                           log_path=tmp_path / "log")
    (tmp_path / "log").write_text("loaded with api_key=k3yValue0042 and hfValue0042\n")
    shown = server.info()["command"] + server.log_tail()
    assert "k3yValue0042" not in shown and "hfValue0042" not in shown
    assert "--api-key '***'" in shown and "--port 1" in shown


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


def test_trtllm_serve_gets_its_engine_args_in_an_options_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # trtllm-serve has no flag per LLM API argument: they travel in --extra_llm_api_options
    # (a YAML file; JSON is YAML), the context as --max_seq_len, on the pytorch backend.
    import json

    from pytest_llmperf.engines.servers import RECIPES, ServerError, recipe_flags

    monkeypatch.setenv("LLMPERF_CACHE_DIR", str(tmp_path))
    settings = Settings(server="trtllm", model="/models/llama", context_len=4096,
                        dtype="bfloat16",
                        engine_arg='{"kv_cache_config": {"free_gpu_memory_fraction": 0.8}}')
    recipe = RECIPES["trtllm"]
    assert recipe.argv[-2:] == ("--backend", "pytorch")
    flags = recipe_flags(recipe, settings)
    assert flags[:3] == ["--max_seq_len", "4096", "--extra_llm_api_options"]
    options = json.loads(Path(flags[3]).read_text())
    assert options == {"dtype": "bfloat16",
                       "kv_cache_config": {"free_gpu_memory_fraction": 0.8}}
    assert recipe_flags(recipe, settings) == flags  # the same arguments, the same file
    assert recipe_flags(recipe, Settings(server="trtllm", model="m")) == []
    with pytest.raises(ServerError, match="pre-quantized"):
        recipe_flags(recipe, Settings(server="trtllm", model="m", quantization="fp8"))
