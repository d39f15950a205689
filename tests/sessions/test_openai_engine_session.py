"""The HTTP engine against the test oracle: a server that streams on a known schedule.

Timed checks use generous tolerances (the machine is shared and noisy); the precise figures
are in benchmarks/client_fidelity.py.

Split by tier from tests/test_openai_engine.py: these are its sessions tests; the others are in
tests/unit/engines/test_openai_engine.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from helpers import no_internal_traceback

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.run.bench import run_benchmark
from pytest_llmperf.run.workload import Workload
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer

TOL_MS = 25.0  # a loaded 2-core machine; the benchmark has the precise numbers


def test_session_against_a_url_matches_the_schedule(
    pytester: pytest.Pytester, oracle: OracleServer
) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(ttft_p50_ms=60 + 25, itl_p50_ms=15 + 5)
        def test_served(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=24, output_tokens=12,
                                                        requests=6, concurrency=2))
            assert llm_engine.kind == "openai"
            s = result.summary
            assert s["errors"] == 0 and s["requests"] == 6
            assert s["output_tokens"] == 6 * 12
            assert abs(s["ttft_p50_ms"] - 60) < 25, s["ttft_p50_ms"]
            assert abs(s["itl_p50_ms"] - 15) < 5, s["itl_p50_ms"]
            assert abs(s["tpot_p50_ms"] - 15) < 5, s["tpot_p50_ms"]
            assert {r.output_tokens_source for r in result.samples} == {"usage"}
            assert all(len(r.chunk_ns) == 12 for r in result.samples)
        """
    )
    out = pytester.path / "out.json"
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                f"--llmperf-json={out}")
    result.assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    run = data["tests"][0]["runs"][0]
    assert run["engine"]["kind"] == "openai"
    assert run["engine"]["tokenizer"] == "server:vllm"
    # The oracle saw every request, warm-up included, with stream_options.include_usage.
    assert len(oracle.logs) == 7
    assert all(log.body["stream_options"] == {"include_usage": True} for log in oracle.logs)
    assert all(log.body["ignore_eos"] is True for log in oracle.logs)


def run(url: str, workload: Workload, **engine_kwargs: object) -> object:
    engine = OpenAIEngine(url, **engine_kwargs)  # type: ignore[arg-type]
    try:
        return run_benchmark(engine, workload)
    finally:
        engine.close()


@pytest.mark.parametrize("oracle", [OracleConfig(ttft_ms=40, itl_ms=20, tokens_per_chunk=4)],
                         indirect=True)
def test_coalesced_chunks_are_split_per_token(oracle: OracleServer) -> None:
    result = run(oracle.url, Workload(input_tokens=16, output_tokens=16, requests=3))
    s = result.summary  # type: ignore[attr-defined]
    assert s["errors"] == 0
    for r in result.samples:  # type: ignore[attr-defined]
        assert r.chunk_tokens == [4, 4, 4, 4]
        assert r.output_tokens == 16
    assert s["multi_token_chunks"] == 3 * 4
    # A 20 ms gap carrying 4 tokens is 4 ITLs of 5 ms, not one of 20.
    assert abs(s["itl_p50_ms"] - 5) < 2.5, s["itl_p50_ms"]
    assert abs(s["tpot_p50_ms"] - 80 / 15) < 3, s["tpot_p50_ms"]


@pytest.mark.parametrize("oracle", [OracleConfig(ttft_ms=80, itl_ms=10, role_chunk=True)],
                         indirect=True)
def test_role_only_chat_chunk_is_not_a_token(oracle: OracleServer) -> None:
    result = run(oracle.url, Workload(input_tokens=16, output_tokens=8, requests=3, chat=True))
    s = result.summary  # type: ignore[attr-defined]
    assert s["errors"] == 0
    # The role chunk goes out at once; counted as a token, TTFT would be about 0 ms.
    assert s["ttft_p50_ms"] > 80 - 5
    assert abs(s["ttft_p50_ms"] - 80) < TOL_MS
    assert all(len(r.chunk_ns) == 8 for r in result.samples)  # type: ignore[attr-defined]
    assert all(log.body.get("messages") for log in oracle.logs)


def test_a_model_without_a_chat_template_says_how_to_give_one() -> None:
    """vLLM answers every chat request for a model without a chat template with HTTP 400: the
    failure keeps the server's words and says how to give one (issue 27, point 5)."""
    with OracleServer(OracleConfig(ttft_ms=5, itl_ms=2, chat_template=False)) as server:
        chat = run(server.url, Workload(input_tokens=8, output_tokens=4, requests=2,
                                        chat=True))
        plain = run(server.url, Workload(input_tokens=8, output_tokens=4, requests=2))
    failed = chat.samples[-1]  # type: ignore[attr-defined]
    assert failed.error_kind == "http_400"
    assert "default chat template is no longer allowed" in failed.error
    assert '--llmperf-server-args "--chat-template FILE.jinja"' in failed.error
    assert "--llmperf-endpoint completions" in failed.error
    assert plain.summary["errors"] == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("oracle", [OracleConfig(ttft_ms=5, itl_ms=2, usage_offset=2)],
                         indirect=True)
def test_usage_count_disagreeing_with_the_client_is_flagged(oracle: OracleServer) -> None:
    result = run(oracle.url, Workload(input_tokens=8, output_tokens=6, requests=2),
                 tokenizer=WordTokenizer())
    rec = result.samples[-1]  # type: ignore[attr-defined]
    assert rec.output_tokens_source == "usage"
    assert rec.output_tokens == 8  # what the server reported
    assert rec.client_token_count == 6  # what the client's tokenizer counted
    assert any("disagrees" in w for w in result.warnings)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cfg", "source", "count"),
    [
        (OracleConfig(ttft_ms=5, itl_ms=2, usage=False), "max_tokens", 6),
        (OracleConfig(ttft_ms=5, itl_ms=2, usage=False, finish_reason="stop"), "tokenizer", 6),
        # "length" after 3 of 6 tokens (a full context): counted, and a truncated answer.
        (OracleConfig(ttft_ms=5, itl_ms=2, usage=False, truncate_at=3), "tokenizer", 3),
    ],
)
def test_without_usage_the_count_falls_back(cfg: OracleConfig, source: str, count: int) -> None:
    with OracleServer(cfg) as server:
        result = run(server.url, Workload(input_tokens=8, output_tokens=6, requests=2),
                     tokenizer=WordTokenizer())
    rec = result.samples[-1]  # type: ignore[attr-defined]
    assert (rec.output_tokens_source, rec.output_tokens) == (source, count)
    if cfg.truncate_at:
        assert rec.error_kind == "truncated"
        assert rec.error.startswith("truncated: 3 of the 6 output tokens asked for (tokenizer")
        return
    assert rec.error is None
    assert not [w for w in result.warnings if "disagree" in w]  # type: ignore[attr-defined]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("cfg", "kind", "timeout_s"),
    [
        (OracleConfig(ttft_ms=5, itl_ms=2, fail_status=503), "http_503", 30),
        (OracleConfig(ttft_ms=5, itl_ms=2, max_model_len=20), "context", 30),
        (OracleConfig(ttft_ms=5, itl_ms=5, drop_after=3), "dropped", 30),
        (OracleConfig(ttft_ms=5, itl_ms=2, malformed_after=2), "malformed_sse", 30),
        (OracleConfig(ttft_ms=5, itl_ms=5, stall_after=2), "timeout", 0.5),
    ],
)
def test_every_failure_is_recorded_per_request(
    cfg: OracleConfig, kind: str, timeout_s: float
) -> None:
    with OracleServer(cfg) as server:
        result = run(server.url, Workload(input_tokens=12, output_tokens=10, requests=3,
                                          concurrency=3), timeout_s=timeout_s,
                     tokenizer=WordTokenizer())
    s = result.summary  # type: ignore[attr-defined]
    assert (s["requests"], s["errors"]) == (3, 3)
    kinds = {r.error_kind for r in result.samples}  # type: ignore[attr-defined]
    assert kinds == {kind}
    first = result.samples[1]  # type: ignore[attr-defined]
    if kind.startswith("http_"):
        assert kind[5:] in first.error
    if kind == "context":  # prompt + output do not fit: what to do, and the server's words
        assert first.error.startswith("12 prompt + 10 output tokens do not fit the server's "
                                      "context"), first.error
        assert "--llmperf-context-len" in first.error
        assert "maximum context length is 20 tokens" in first.error
    assert any(w.startswith("every request failed") for w in result.warnings)  # type: ignore[attr-defined]


def test_dead_server_is_a_clean_session_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_served(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(requests=1))
        """
    )
    result = pytester.runpytest("--llmperf", f"--llmperf-url=http://127.0.0.1:{closed_port()}")
    result.assert_outcomes(errors=1)  # the llm_engine fixture fails: the test never ran
    result.stdout.fnmatch_lines(["*cannot reach the server at http://127.0.0.1:*--llmperf-url*"])
    no_internal_traceback(result.stdout.str())


def test_connection_refused_mid_run_is_recorded() -> None:
    with OracleServer(OracleConfig(ttft_ms=5, itl_ms=2)) as server:
        engine = OpenAIEngine(server.url, tokenizer=WordTokenizer())
    try:  # the oracle is gone now
        result = run_benchmark(engine, Workload(input_tokens=8, output_tokens=4, requests=2))
    finally:
        engine.close()
    assert {r.error_kind for r in result.samples} == {"connection"}
    assert "cannot connect" in result.samples[0].error


@pytest.mark.parametrize("oracle", [OracleConfig(ttft_ms=5, itl_ms=2, api_key="sekrit")],
                         indirect=True)
def test_api_key_from_env_and_custom_headers(
    pytester: pytest.Pytester, oracle: OracleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_served(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=4,
                                                        requests=2))
            assert result.errors == 0
        """
    )
    monkeypatch.setenv("MY_KEY", "sekrit")
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                "--llmperf-api-key-env=MY_KEY",
                                "--llmperf-headers=X-Team: perf; X-Run: 7")
    result.assert_outcomes(passed=1)
    gen = [log for log in oracle.logs]
    assert gen and all(log.headers["authorization"] == "Bearer sekrit" for log in gen)
    assert all(log.headers["x-team"] == "perf" and log.headers["x-run"] == "7" for log in gen)

    monkeypatch.setenv("MY_KEY", "wrong")
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                "--llmperf-api-key-env=MY_KEY")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*refused the API key (HTTP 401)*--llmperf-api-key-env*"])
    no_internal_traceback(result.stdout.str())


def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    """A server with a self-signed certificate is refused unless verification is turned off."""
    ssl = pytest.importorskip("ssl")
    trustme = pytest.importorskip("trustme", reason="needs trustme for a test CA")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    with OracleServer(OracleConfig(ttft_ms=5, itl_ms=2), ssl=ctx) as server:
        url = server.url.replace("http://", "https://")
        wl = Workload(input_tokens=8, output_tokens=4, requests=1)
        strict = run(url, wl, tokenizer=WordTokenizer(), model="oracle")
        assert {r.error_kind for r in strict.samples} == {"connection"}  # type: ignore[attr-defined]
        assert "TLS" in strict.samples[0].error  # type: ignore[attr-defined]
        loose = run(url, wl, tokenizer=WordTokenizer(), model="oracle", tls_verify=False)
        assert loose.summary["errors"] == 0  # type: ignore[attr-defined]
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        pinned = run(url, wl, tokenizer=WordTokenizer(), model="oracle", tls_verify=str(ca_file))
        assert pinned.summary["errors"] == 0  # type: ignore[attr-defined]


def test_memory_of_a_local_server_is_the_listening_process() -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "pytest_llmperf.testing.oracle",
                             "--ttft-ms", "5", "--itl-ms", "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        engine = OpenAIEngine(url)
        assert list(engine.memory_pids()) == [proc.pid]
        result = run_benchmark(engine, Workload(input_tokens=8, output_tokens=4, requests=2))
        engine.close()
        assert result.summary["errors"] == 0
        assert result.summary["peak_rss_mb"] > 5  # the oracle process, not zero
    finally:
        proc.terminate()
        proc.wait(10)


def test_eos_suppression_fields(tiny_model: Path) -> None:
    """A local GGUF names every end-of-generation token for a logit bias; without one,
    min_tokens. Never both (llama-cpp-python's server then drops both)."""
    from pytest_llmperf.engines.tokenizers import GgufTokenizer

    wl = Workload(input_tokens=8, output_tokens=4, requests=1, warmup=0)
    with OracleServer(OracleConfig(ttft_ms=5, itl_ms=2)) as server:
        run(server.url, wl, tokenizer=GgufTokenizer(tiny_model), model="oracle")
        body = server.logs[-1].body
        assert body["ignore_eos"] is True and "min_tokens" not in body
        assert body["logit_bias"] == {"2": -100}  # </s> in the tiny vocabulary
        run(server.url, Workload(input_tokens=8, output_tokens=4, requests=1, warmup=0,
                                 ignore_eos=True), tokenizer=WordTokenizer())
        body = server.logs[-1].body
        assert body["min_tokens"] == 4 and "logit_bias" not in body


def test_the_engine_redacts_its_key_and_sends_one_authorization(oracle: OracleServer) -> None:
    key = "Zq8wKeyForTheRedactor"
    engine = OpenAIEngine(oracle.url, api_key=key, headers={"authorization": f"Bearer {key}"})
    try:
        # The user's own (lower-case) Authorization header is not doubled by the API key.
        assert [k.lower() for k in engine._headers].count("authorization") == 1
        assert engine.redactor(f"echo: Authorization: Bearer {key}; raw {key}").count(key) == 0
        assert engine.warnings == []  # the oracle tokenizes: no fallback to report
    finally:
        engine.close()


def test_the_servers_tokenizer_is_safe_from_threads() -> None:
    """Multi-turn sessions tokenize from their own threads during a run: one connection, one
    call at a time (before the lock, 4 threads x 200 calls failed about 1 in 5 with 'Idle')."""
    from concurrent.futures import ThreadPoolExecutor

    from pytest_llmperf.engines.tokenizers import ServerTokenizer

    with OracleServer(OracleConfig()) as server:
        tok = ServerTokenizer(server.url, None, {}, False)
        assert tok.probe()
        texts = ["red orange yellow " * (i % 7 + 1) for i in range(200)]
        with ThreadPoolExecutor(4) as pool:
            counts = list(pool.map(lambda t: len(tok.tokenize(t)), texts))
    # The oracle's tokenizer: one token per word after a BOS.
    assert counts == [len(WordTokenizer().tokenize(t)) for t in texts]


QUERY = "key=K&x=1"  # what a gateway authenticates (?key=) or versions (?api-version=) by


@pytest.mark.parametrize("tail", ["/?", "/v1?", "?"], ids=["root", "v1", "bare"])
def test_the_url_query_reaches_every_request(tail: str) -> None:
    """A query in --llmperf-url goes with every request, each at its own path: the model list,
    the server's tokenizer, both streamed endpoints and /metrics (before the fix it swallowed
    the path of the model list, the tokenizer and /metrics, and the streamed requests lost it:
    no model, no tokenizer, no metrics)."""
    from pytest_llmperf.engines.tokenizers import ServerTokenizer

    wl = Workload(input_tokens=8, output_tokens=4, requests=2)
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1, metrics=True)) as oracle:
        engine = OpenAIEngine(f"{oracle.url}{tail}{QUERY}")
        try:
            assert engine.model == "oracle"
            assert isinstance(engine.tokenizer, ServerTokenizer)
            assert engine.warnings == []
            plain = run_benchmark(engine, wl)
            chat = run_benchmark(engine, Workload(input_tokens=8, output_tokens=4, requests=2,
                                                  chat=True))
            assert engine.info()["url"] == f"{oracle.url}/?key=***&x=***"
        finally:
            engine.close()
        targets = list(oracle.seen_targets)
    assert plain.summary["errors"] == 0 and chat.summary["errors"] == 0
    assert plain.summary["output_tokens"] == 2 * 4
    assert plain.summary["prefix_hit_rate"] is not None  # /metrics was read
    paths = {t.partition("?")[0] for t in targets}
    asked = {"/v1/models", "/tokenize", "/v1/completions", "/v1/chat/completions", "/metrics"}
    assert asked <= paths <= {*asked, "/detokenize"}, targets
    for target in targets:
        query = target.partition("?")[2]
        assert query == QUERY or query.startswith(QUERY + "&name"), target


@pytest.mark.parametrize("oracle", [OracleConfig(ttft_ms=1, itl_ms=1, metrics=True)],
                         indirect=True)
def test_a_session_with_a_url_query(pytester: pytest.Pytester, oracle: OracleServer) -> None:
    """--llmperf-url with a query: the model is found, the run passes, every request had the
    query, and the record shows the parameter names, not their values."""
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_served(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=4,
                                                        requests=3))
            assert result.errors == 0
        """
    )
    out = pytester.path / "out.json"
    result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}/?{QUERY}",
                                f"--llmperf-json={out}")
    result.assert_outcomes(passed=1)
    run_ = json.loads(out.read_text())["tests"][0]["runs"][0]
    assert run_["engine"]["model"] == "oracle"
    assert run_["engine"]["tokenizer"] == "server:vllm"
    assert run_["engine"]["url"] == f"{oracle.url}/?key=***&x=***"
    assert run_["summary"]["errors"] == 0 and run_["summary"]["prefix_hit_rate"] is not None
    assert len(oracle.logs) == 4 and all(log.body["model"] == "oracle" for log in oracle.logs)
    assert oracle.seen_targets and all(t.partition("?")[2].startswith(QUERY)
                                       for t in oracle.seen_targets), oracle.seen_targets
