"""Hostile and careless servers (issue 15, classes 2, 3 and 6, server side).

- Secrets: a gateway that echoes the request's headers into its error bodies (HTTP 401/500,
  an error event mid-stream), a server started with a secret in its arguments that fails to
  start: the key reaches no file a session writes and not the terminal.
- Hangs and orphans: a managed server that requires an API key (the health probe sends it; a
  wrong key fails at once), a wrapper command whose real server is a grandchild (gone after
  pytest is killed), a tokenize endpoint that never answers (the request timeout holds, the
  fallback is said).
- Odd values from a server: negative or absurd ``usage`` counts, malformed URLs.
- Network calls (issue 23, items 11, 17, 19, 24): a model list, a health probe, a tokenizer,
  ``/metrics`` or a streamed answer dripped a byte at a time ends at its deadline; a port that
  does not speak HTTP or sends a 10 MB header is one line on every path (model list, health
  probe, tokenizer, streamed requests); an SSE line beyond ``MAX_SSE_LINE`` is a failed
  request; a header that HTTP cannot carry is a usage error before any request; the model
  list over TLS; a blocking call given a dripped head, too many headers, no line end, a body
  cut short, no answer or too large a body, and a streamed answer whose chunk-size line never
  ends, each one line.

Split by tier from tests/test_hostile_servers.py: these are its sessions tests; the others are
in tests/unit/engines/test_hostile_servers.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import alive, git, no_internal_traceback

from pytest_llmperf.engines.base import EngineError
from pytest_llmperf.engines.blocking_http import FetchError, fetch
from pytest_llmperf.engines.openai import MAX_SSE_LINE, OpenAIEngine
from pytest_llmperf.redact import SECRET_MARK
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer

# Deliberately shapeless: only knowing the value (not a pattern) can redact it.
API_KEY = "Zq8wPlainValue4711Kx"
GATEWAY_TOKEN = "plain7f3a9cGatewayValue"


def files_containing(root: Path, *secrets: str) -> list[str]:
    """Every file under ``root`` (outside .git) that holds one of ``secrets``."""
    found = []
    for path in root.rglob("*"):
        if ".git" in path.parts or not path.is_file():
            continue
        data = path.read_bytes()
        if any(s.encode() in data for s in secrets):
            found.append(str(path.relative_to(root)))
    return found


# --------------------------------------------------------------------------- secrets


SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_gateway(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=6, requests=2))
"""


@pytest.mark.parametrize("mode", [
    OracleConfig(ttft_ms=1, itl_ms=1, fail_status=401, echo_headers=True),
    OracleConfig(ttft_ms=1, itl_ms=1, fail_status=500, echo_headers=True),
    OracleConfig(ttft_ms=1, itl_ms=1, error_after=2, echo_headers=True),
], ids=["http_401", "http_500", "mid_stream"])
def test_echoed_headers_reach_no_report(pytester: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch,
                                        mode: OracleConfig) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_gateway=SUITE)
    (pytester.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "tests")
    with OracleServer(mode) as oracle:
        res = pytester.runpytest(
            "--llmperf", f"--llmperf-url={oracle.url}",
            f"--llmperf-headers=X-Gateway-Token: {GATEWAY_TOKEN}",
            "--llmperf-json=out/results.json", "--llmperf-html=out/report.html",
            "--llmperf-markdown=out/summary.md", "--llmperf-save", "--llmperf-save-dirty",
            "-rA")
        # The server really saw (and echoed) both secrets.
        assert oracle.logs or mode.fail_status
    data = json.loads((pytester.path / "out/results.json").read_text())
    errors = [s["error"] for s in data["tests"][0]["runs"][0]["samples"] if s.get("error")]
    assert errors and all(SECRET_MARK in e for e in errors), errors
    kinds = {s["error_kind"] for s in data["tests"][0]["runs"][0]["samples"]}
    assert kinds == ({f"http_{mode.fail_status}"} if mode.fail_status else {"stream_error"})
    for name in ("out/results.json", "out/report.html", "out/summary.md"):
        assert (pytester.path / name).is_file(), name
    assert list((pytester.path / "baselines").rglob("*.json")), "nothing was saved"
    output = res.stdout.str() + res.stderr.str()
    assert API_KEY not in output and GATEWAY_TOKEN not in output
    assert files_containing(pytester.path, API_KEY, GATEWAY_TOKEN) == []


def saved_session(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A session of SUITE in a fresh git repository, with every output and a save."""
    pytester.makepyfile(test_gateway=SUITE)
    (pytester.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "tests")
    return pytester.runpytest(
        "--llmperf", *args, "--llmperf-json=out/results.json", "--llmperf-html=out/report.html",
        "--llmperf-markdown=out/summary.md", "--llmperf-save", "--llmperf-save-dirty", "-rA")


def test_credentials_in_the_url_query_reach_no_record(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23, item 7: a key in the URL's query (not named api_key) is no more stored than
    one in a header: engine.url and the recorded pytest arguments keep the URL's scheme, host,
    port, path and parameter names, never a value."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    key, sig = "plainQueryKey0815", "plainQuerySig4711"
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1)) as oracle:
        res = saved_session(pytester, f"--llmperf-url={oracle.url}/?key={key}&sig={sig}")
    res.assert_outcomes(passed=1)
    shown = f"{oracle.url}/?key={SECRET_MARK}&sig={SECRET_MARK}"
    data = json.loads((pytester.path / "out/results.json").read_text())
    assert data["tests"][0]["runs"][0]["engine"]["url"] == shown
    (saved,) = (pytester.path / "baselines").rglob("*.json")
    (test,) = json.loads(saved.read_text())["tests"].values()
    run = test["runs"][0]
    assert run["engine"]["url"] == shown
    assert f"--llmperf-url={shown}" in run["client"]["pytest_args"]
    output = res.stdout.str() + res.stderr.str()
    assert key not in output and sig not in output
    assert files_containing(pytester.path, key, sig) == []


# A server's error text that would drive a terminal: set its title (OSC), colour it (CSI),
# erase the screen, ring the bell, reverse what follows (a bidi override).
ESCAPES = "\x1b]0;pwned\x07\x1b[31mred alert\x1b[0m\x1b[2J\x07 \u202eevil\x9b1m done"


@pytest.mark.parametrize("mode", [
    OracleConfig(ttft_ms=1, itl_ms=1, fail_status=500, error_text=ESCAPES,
                 model="oracle\x1b]0;model\x07"),
    OracleConfig(ttft_ms=1, itl_ms=1, error_after=2, error_text=ESCAPES),
], ids=["http_500", "mid_stream"])
def test_terminal_escapes_from_a_server_reach_no_output(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         mode: OracleConfig) -> None:
    """Issue 23, item 10: what a server says reaches the records without its control
    characters (the text kept), so neither the terminal nor a report replays them."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    with OracleServer(mode) as oracle:
        res = saved_session(pytester, f"--llmperf-url={oracle.url}")
    res.assert_outcomes(failed=1)
    data = json.loads((pytester.path / "out/results.json").read_text())
    run = data["tests"][0]["runs"][0]
    errors = [s["error"] for s in run["samples"] if s.get("error")]
    assert errors and all("red alert" in e and "evil" in e and "done" in e for e in errors)
    assert run["engine"]["model"] == "oracle"
    output = res.stdout.str() + res.stderr.str()
    assert "red alert" in output
    written = {name: (pytester.path / name).read_text() for name in
               ("out/results.json", "out/report.html", "out/summary.md")}
    (saved,) = (pytester.path / "baselines").rglob("*.json")
    written["baseline"] = saved.read_text()
    for name, text in {"terminal": output, **written}.items():
        for bad in ("\x1b", "\x07", "\x9b", "\u202e", "\\u001b", "\\u0007", "\\u202e",
                    "&#27;", "&#x1b;", "pwned"):
            assert bad not in text, (name, bad)


def test_secret_in_server_args_is_not_printed_when_the_server_fails(
        pytester: pytest.Pytester) -> None:
    secret, token = "k3yArgValue0042", "hfTokenArgValue0042"
    pytester.makepyfile("""
        def test_served(llm_server):
            pass
    """)
    # A server that prints its command line (as many do) and dies.
    cmd = f"{sys.executable} -c 'import sys; print(sys.argv, flush=True); sys.exit(3)'"
    res = pytester.runpytest(f"--llmperf-server-cmd={cmd}",
                             f"--llmperf-server-args=--api-key {secret} --hf-token={token}",
                             "--llmperf-server-timeout=30", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    output = res.stdout.str() + res.stderr.str()
    assert "exited with code 3" in output
    assert "--api-key '***'" in output  # the command is shown, without its secret
    assert secret not in output and token not in output
    assert "During handling" not in output
    no_internal_traceback(output)


# --------------------------------------------------------------------------- hangs, orphans


KEYED_SERVER = f"{sys.executable} -m pytest_llmperf.testing.oracle --port {{port}} " \
               f"--ttft-ms 1 --itl-ms 1 --api-key {API_KEY}"


def test_health_probe_sends_the_api_key(pytester: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(SUITE)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    res = pytester.runpytest("--llmperf", f"--llmperf-server-cmd={KEYED_SERVER}",
                             "--llmperf-server-timeout=20", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)


def test_a_server_refusing_our_key_fails_at_once(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(SUITE)
    monkeypatch.setenv("OPENAI_API_KEY", "the-wrong-key-000")
    res = pytester.runpytest("--llmperf", f"--llmperf-server-cmd={KEYED_SERVER}",
                             "--llmperf-server-timeout=20", "-p", "no:cacheprovider")
    output = res.stdout.str() + res.stderr.str()
    assert "refuses our credentials (HTTP 401" in output, output
    assert "did not become healthy" not in output
    assert API_KEY not in output and "the-wrong-key-000" not in output
    no_internal_traceback(output)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_wrapper_servers_grandchild_dies_with_pytest(tmp_path: Path, sig: int) -> None:
    (tmp_path / "test_wrapped.py").write_text(
        "import time\nfrom pathlib import Path\n\n"
        "def test_wrapped(llm_server):\n"
        "    Path('ready').write_text(llm_server.url)\n"
        "    time.sleep(600)\n")
    # The real server is the shell's child: pytest's grandchild.
    wrapper = (f'sh -c "{sys.executable} -m pytest_llmperf.testing.oracle --port {{port}} & '
               'echo $! > grandchild.pid; wait"')
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_wrapped.py",
         f"--llmperf-server-cmd={wrapper}", "--llmperf-server-timeout=60"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    grandchild = None
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, "the pytest session ended before its server was up"
            assert time.monotonic() < deadline, "the server never came up"
            time.sleep(0.1)
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        assert alive(grandchild)
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(grandchild), "the wrapped server outlived pytest"
    finally:
        if proc.poll() is None:
            proc.kill()
        if grandchild is not None and alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_a_tokenizer_that_never_answers_honours_the_request_timeout() -> None:
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1, stall_tokenize=True)) as oracle:
        engine = OpenAIEngine(oracle.url, timeout_s=1.0)
        try:
            assert engine.tokenizer is None
            # One try, not a retry on the same stalled endpoint.
            assert oracle.tokenize_requests == 1
            [warning] = engine.warnings
            assert "tokenize" in warning and "1 s" in warning, warning
            assert "--llmperf-tokenizer" in warning
        finally:
            engine.close()


def test_the_tokenizer_fallback_is_a_warning_on_the_result(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "alpha bravo", "output_tokens": 3}\n')
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1, stall_tokenize=True)) as oracle:
        engine = OpenAIEngine(oracle.url, timeout_s=1.0)
        try:
            result = run_benchmark(engine, Workload(prompts_file=str(prompts), requests=2))
        finally:
            engine.close()
    assert result.errors == 0
    assert any("tokenize" in w for w in result.warnings), result.warnings


# --------------------------------------------------------------------------- odd values


@pytest.mark.parametrize("count", [-5, 10**30, "12", 2.5, True])
def test_bad_usage_counts_are_recorded_errors(count: object) -> None:
    cfg = OracleConfig(ttft_ms=1, itl_ms=1, usage_tokens=count)  # type: ignore[arg-type]
    with OracleServer(cfg) as oracle:
        engine = OpenAIEngine(oracle.url, timeout_s=10.0)
        try:
            result = run_benchmark(engine, Workload(input_tokens=4, output_tokens=5,
                                                    requests=2))
        finally:
            engine.close()
    measured = [r for r in result.samples if not r.warmup]
    assert {r.error_kind for r in measured} == {"bad_usage"}, [r.error for r in measured]
    assert all(repr(count) in (r.error or "") or str(count) in (r.error or "")
               for r in measured)
    assert all("\n" not in (r.error or "") for r in measured)
    tps = result.summary.get("output_tps")
    assert tps is None or tps >= 0
    assert (result.summary.get("output_tokens") or 0) >= 0


def test_a_negative_usage_count_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from pytest_llmperf import Workload, llmperf

        @llmperf(min_tps=1)
        def test_served(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=5, requests=2))
    """)
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1, usage_tokens=-5)) as oracle:
        res = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                 "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    no_internal_traceback(res.stdout.str() + res.stderr.str())


def test_a_malformed_url_in_a_session_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    res = pytester.runpytest("--llmperf", "--llmperf-url=http://127.0.0.1:abc",
                             "-p", "no:cacheprovider")
    output = res.stdout.str() + res.stderr.str()
    assert "--llmperf-url 'http://127.0.0.1:abc'" in output, output
    no_internal_traceback(output)


# --------------------------------------------------------------------------- network calls
# (issue 23, items 11, 17, 19, 24): every call has a total deadline, a server that does not
# speak HTTP (or sends a huge head, or a huge event) is one line, a header that cannot be sent
# is a usage error before any request. A hang before the fix ends in the guard's timeout
# (``HANG_GUARD_S``), far beyond the few seconds each deadline allows.

HANG_GUARD_S = 90
DRIPPING_MODELS = f"{sys.executable} -m pytest_llmperf.testing.oracle --port {{port}} " \
                  "--drip /v1/models --drip-ms 100"
NOT_HTTP_SERVER = f"{sys.executable} -m pytest_llmperf.testing.oracle --port {{port}} --not-http"


def _session_output(pytester: pytest.Pytester, *args: str) -> str:
    """The output of a pytest session in a subprocess, ended after ``HANG_GUARD_S``."""
    pytester.makepyfile(SUITE)
    res = pytester.runpytest_subprocess("--llmperf", "-p", "no:cacheprovider", *args,
                                        timeout=HANG_GUARD_S)
    return res.stdout.str() + res.stderr.str()


def test_a_model_list_dripped_a_byte_at_a_time_ends_at_the_request_timeout(
        pytester: pytest.Pytester) -> None:
    with OracleServer(OracleConfig(drip_paths=("/v1/models",), drip_ms=100)) as oracle:
        output = _session_output(pytester, f"--llmperf-url={oracle.url}",
                                 "--llmperf-request-timeout=2", "--llmperf-server-timeout=2")
    assert "/v1/models gave no complete answer within 2 s" in output, output
    no_internal_traceback(output)


def test_a_health_probe_dripped_a_byte_at_a_time_ends_at_the_server_timeout(
        pytester: pytest.Pytester) -> None:
    output = _session_output(pytester, f"--llmperf-server-cmd={DRIPPING_MODELS}",
                             "--llmperf-server-timeout=3")
    assert "did not become healthy" in output and "within 3 s" in output, output
    assert "gave no complete answer within" in output  # the last probe: why
    no_internal_traceback(output)


def test_the_tokenizer_and_metrics_dripped_a_byte_at_a_time_end_at_their_deadlines() -> None:
    cfg = OracleConfig(ttft_ms=1, itl_ms=1, drip_paths=("/tokenize", "/metrics"), drip_ms=100)
    outcome: dict[str, object] = {}

    def calls(url: str) -> None:
        engine = OpenAIEngine(url, timeout_s=1.0)
        try:
            outcome["warnings"] = engine.warnings
            outcome["metrics"] = engine.metrics_snapshot()
        finally:
            engine.close()

    with OracleServer(cfg) as oracle:
        worker = threading.Thread(target=calls, args=(oracle.url,), daemon=True)
        worker.start()
        worker.join(HANG_GUARD_S)
        assert not worker.is_alive(), "a dripped answer held a call past its deadline"
    [warning] = outcome["warnings"]  # type: ignore[misc]
    assert "did not answer within 1 s" in warning, warning
    assert outcome["metrics"] is None


def test_a_streamed_answer_dripped_a_byte_at_a_time_is_a_timeout() -> None:
    cfg = OracleConfig(ttft_ms=1, itl_ms=1, drip_paths=("/v1/completions",), drip_ms=100)
    with OracleServer(cfg) as oracle:
        engine = OpenAIEngine(oracle.url, timeout_s=1.0)
        try:
            result = run_benchmark(engine, Workload(input_tokens=4, output_tokens=4,
                                                    requests=1, warmup=0))
        finally:
            engine.close()
    [sample] = result.samples
    assert sample.error_kind == "timeout", sample.error


@pytest.mark.parametrize("mode", [
    OracleConfig(not_http=True), OracleConfig(huge_header_bytes=10 << 20),
], ids=["not_http", "huge_header"])
def test_a_url_that_is_no_http_server_is_one_line(pytester: pytest.Pytester,
                                                  mode: OracleConfig) -> None:
    with OracleServer(mode) as oracle:
        output = _session_output(pytester, f"--llmperf-url={oracle.url}")
    expected = ("/v1/models does not speak HTTP: it answered 'SSH-2.0-OpenSSH_9.6 not http'"
                if mode.not_http else
                "/v1/models sent a broken HTTP answer: a header line longer than 64 KiB")
    assert expected in output, output
    no_internal_traceback(output)


def test_a_started_server_that_is_no_http_server_is_one_line(pytester: pytest.Pytester) -> None:
    output = _session_output(pytester, f"--llmperf-server-cmd={NOT_HTTP_SERVER}",
                             "--llmperf-server-timeout=30")
    assert "/v1/models does not speak HTTP: it answered 'SSH-2.0-OpenSSH_9.6" in output, output
    assert "did not become healthy" not in output  # said at once, not after the timeout
    no_internal_traceback(output)


def test_streamed_requests_to_no_http_server_are_recorded_errors(tmp_path: Path) -> None:
    # The model named, so the requests themselves meet the garbage (the model list is not
    # asked); the tokenizer probe meets it first and says so.
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "alpha bravo", "output_tokens": 3}\n')
    with OracleServer(OracleConfig(not_http=True)) as oracle:
        engine = OpenAIEngine(oracle.url, model="oracle", timeout_s=5.0)
        try:
            result = run_benchmark(engine, Workload(prompts_file=str(prompts), requests=2,
                                                    warmup=0))
        finally:
            engine.close()
    assert any("does not speak HTTP" in w for w in engine.warnings), engine.warnings
    assert {s.error_kind for s in result.samples} == {"malformed"}
    assert all("does not speak HTTP: it answered 'SSH-2.0-OpenSSH_9.6" in (s.error or "")
               for s in result.samples), [s.error for s in result.samples]


def test_an_sse_line_beyond_the_cap_is_a_failed_request_and_one_within_it_is_read() -> None:
    huge = MAX_SSE_LINE + (1 << 20)
    for size, kind in ((huge, "malformed_sse"), (MAX_SSE_LINE // 2, None)):
        cfg = OracleConfig(ttft_ms=1, itl_ms=1, huge_event_bytes=size)
        with OracleServer(cfg) as oracle:
            engine = OpenAIEngine(oracle.url, timeout_s=60.0)
            try:
                result = run_benchmark(engine, Workload(input_tokens=4, output_tokens=3,
                                                        requests=1, warmup=0))
            finally:
                engine.close()
        [sample] = result.samples
        assert sample.error_kind == kind, sample.error
        if kind:
            assert f"longer than {MAX_SSE_LINE >> 20} MiB" in (sample.error or "")
        else:
            assert sample.output_tokens == 3


def test_a_header_that_cannot_be_sent_is_a_usage_error_before_any_request(
        pytester: pytest.Pytester) -> None:
    secret = "caf\u00e9-\u65e5\u672c-Zq8wValue"
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1)) as oracle:
        pytester.makepyfile(SUITE)
        res = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                 f"--llmperf-headers=X-Name: {secret}", "-p", "no:cacheprovider")
        assert oracle.logs == []  # nothing was sent
    output = res.stdout.str() + res.stderr.str()
    assert res.ret == pytest.ExitCode.USAGE_ERROR, output
    assert ("--llmperf-headers: the value of X-Name has a character that is not Latin-1"
            in output), output
    assert "cannot reach" not in output and secret not in output
    no_internal_traceback(output)


def test_the_model_list_over_tls_is_verified_and_a_refusal_says_why(tmp_path: Path) -> None:
    ssl = pytest.importorskip("ssl")
    trustme = pytest.importorskip("trustme", reason="needs trustme for a test CA")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1), ssl=ctx) as oracle:
        url = oracle.url.replace("http://", "https://")
        with pytest.raises(EngineError) as info:
            OpenAIEngine(url)
        message = str(info.value)
        assert "/v1/models failed" in message and "CERTIFICATE_VERIFY_FAILED" in message
        assert "--llmperf-tls-verify" in message and "is it running" not in message
        for verify in (False, str(ca_file)):
            engine = OpenAIEngine(url, tls_verify=verify)
            try:  # the model list, the tokenizer and /metrics over TLS
                assert engine.model == "oracle" and engine.tokenizer is not None
                assert engine.metrics_snapshot() is None  # 404: no metrics
            finally:
                engine.close()


class _RawServer:
    """A listener that answers each request with ``answer`` (a byte every ``drip_s`` when
    given), then closes the connection."""

    def __init__(self, answer: bytes, drip_s: float = 0.0) -> None:
        self.answer, self.drip_s = answer, drip_s
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                with conn, contextlib.suppress(OSError):
                    conn.recv(65536)
                    if not self.drip_s:
                        conn.sendall(self.answer)
                    for i in range(len(self.answer) if self.drip_s else 0):
                        conn.sendall(self.answer[i:i + 1])
                        time.sleep(self.drip_s)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("answer, drip_s, kind, said", [
    (b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 4000 + b"\r\n\r\n", 0.05, "timeout",
     "gave no complete answer within 1 s"),
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", 0,
     "malformed", "sent a broken HTTP answer: 'got more than 100 headers'"),
    (b"x" * 70000, 0, "not_http", "does not speak HTTP: it answered 64 KiB without a line end"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", 0, "dropped",
     "sent an incomplete answer (5 bytes of its body read)"),
    (b"", 0, "dropped", "closed the connection without answering"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000, 0, "too_large",
     "answered more than 2048 bytes"),
], ids=["dripped_head", "101_headers", "no_line_end", "cut_short", "no_answer", "too_large"])
def test_a_blocking_call_ends_in_one_line_whatever_the_server_sends(
        answer: bytes, drip_s: float, kind: str, said: str) -> None:
    server = _RawServer(answer, drip_s)
    try:
        with pytest.raises(FetchError) as info:
            fetch(server.url + "/v1/models?key=Zq8wQueryValue", timeout_s=1.0, max_body=2048)
    finally:
        server.close()
    assert info.value.kind == kind
    assert str(info.value) == f"{server.url}/v1/models {said}"  # no query: it may be a key


def test_a_chunk_size_line_that_never_ends_is_a_malformed_answer() -> None:
    server = _RawServer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 200000)
    try:
        engine = OpenAIEngine(server.url, model="m", tokenizer=WordTokenizer(), timeout_s=10.0)
        result = run_benchmark(engine, Workload(input_tokens=4, output_tokens=2, requests=1,
                                                warmup=0))
    finally:
        server.close()
    [sample] = result.samples
    assert sample.error_kind == "malformed", sample.error
    assert "a chunk-size or trailer line longer than 64 KiB" in (sample.error or "")
