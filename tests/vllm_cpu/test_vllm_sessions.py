"""Whole pytest sessions against a real vLLM, as a user runs them: the same small suite passes
in-process (``--llmperf-engine vllm``) and served (``--llmperf-server vllm``); the session
ends without vLLM's shutdown noise and leaves no process behind, after a normal end and after
Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from vllm_sessions import DOES_NOT_FIT, NOISE, run_session

from pytest_llmperf.engines.servers import build_server
from pytest_llmperf.settings import Settings


def _check_clean(session, what: str) -> None:  # type: ignore[no-untyped-def]
    noisy = [n for n in NOISE if n in session.output]
    assert not noisy, f"{what}: the session printed {noisy}:\n{session.output[-4000:]}"
    assert session.seen, f"{what}: no child process was seen (the watch did not work)"
    assert not session.survivors(), (
        f"{what}: processes outlived the session: {session.survivors()}")


def test_in_process_suite_runs_quietly_and_leaves_nothing(suite_dir: Path) -> None:
    info = suite_dir / "info.json"
    session = run_session(suite_dir, ["--llmperf", "-q", "-s", "--llmperf-engine=vllm",
                                      "--llmperf-context-len=512"],
                          env={"SUITE_INFO": str(info)})
    assert session.returncode == 1, session.output[-6000:]
    assert "1 failed, 2 passed" in session.output, session.output[-6000:]
    truncated = re.search(DOES_NOT_FIT, session.output)
    assert truncated and truncated.group(1) == "truncated", session.output[-6000:]
    print(f"in-process vLLM, 500 + 64 tokens in a 512 context: {truncated.group(0)}")
    data = json.loads(info.read_text())
    assert data["engine"]["kind"] == "vllm"
    assert data["engine"]["settings"]["effective_max_model_len"] == 512
    assert data["engine"]["settings"]["engine_args"] == {"enforce_eager": True}
    _check_clean(session, "in-process vLLM")


def test_served_suite_runs_and_leaves_nothing(suite_dir: Path) -> None:
    info = suite_dir / "info.json"
    session = run_session(suite_dir, ["--llmperf", "-q", "--llmperf-server=vllm",
                                      "--llmperf-context-len=512"],
                          env={"SUITE_INFO": str(info)})
    assert session.returncode == 1, session.output[-6000:]
    assert "1 failed, 2 passed" in session.output, session.output[-6000:]
    truncated = re.search(DOES_NOT_FIT, session.output)
    # vLLM's server cuts max_tokens to what fits and then refuses min_tokens: a refusal.
    assert truncated and truncated.group(1) == "context", session.output[-6000:]
    print(f"served vLLM, 500 + 64 tokens in a 512 context: {truncated.group(0)}")
    server = json.loads(info.read_text())["engine"]["server"]
    assert server["recipe"] == "vllm"
    assert f"{sys.executable} -m vllm.entrypoints." in server["command"]
    assert "--max-model-len 512" in server["command"]
    assert "--enforce-eager" in server["command"]
    _check_clean(session, "served vLLM")


def test_sigint_to_a_session_with_a_served_vllm_leaves_no_process(
        suite_dir: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    (suite_dir / "test_suite.py").write_text(f'''
from pathlib import Path
from pytest_llmperf import Workload, llmperf


@llmperf()
def test_long(llmperf_bench, llm_engine):
    Path({str(started)!r}).write_text("x")
    llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=64, concurrency=2,
                                       requests=100000, warmup=0))
''')
    session = run_session(suite_dir, ["--llmperf", "-q", "--llmperf-server=vllm"],
                          interrupt_when=started)
    assert started.exists(), session.output[-6000:]
    assert session.returncode != 0  # interrupted
    assert any("vllm.entrypoints" in cmd for cmd in session.seen.values()), session.seen
    assert not session.survivors(), f"orphans after SIGINT: {session.survivors()}"


def test_served_recipe_renders_settings_as_flags(tiny_hf_model: Path) -> None:
    settings = Settings(engine="openai", server="vllm", model=str(tiny_hf_model),
                        context_len=1024, dtype="bfloat16", quantization="fp8",
                        engine_arg=json.dumps({"enable_prefix_caching": False,
                                               "max_num_seqs": 8, "enforce_eager": True,
                                               "speculative_config": {"method": "ngram"}}))
    server = build_server(settings)
    argv = server.argv
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry"]
    assert argv[3:5] == ["--model", str(tiny_hf_model)]
    text = " ".join(argv)
    for flags in ("--max-model-len 1024", "--dtype bfloat16", "--quantization fp8",
                  "--no-enable-prefix-caching", "--max-num-seqs 8", "--enforce-eager",
                  '--speculative-config {"method": "ngram"}'):
        assert flags in text, (flags, argv)
    assert server.env.get("VLLM_CPU_KVCACHE_SPACE") in (None, "1")


def test_a_vllm_server_that_dies_at_start_shows_the_root_cause(
        tiny_hf_model: Path, tmp_path: Path) -> None:
    import shutil

    import pytest

    from pytest_llmperf.engines.servers import ServerError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_attention_heads"] = 3  # 128 is not a multiple of 3
    (broken / "config.json").write_text(json.dumps(config))
    server = build_server(Settings(engine="openai", server="vllm", model=str(broken)))
    with pytest.raises(ServerError) as info:
        server.start(timeout_s=300)
    message = str(info.value)
    assert "the vllm server exited with code" in message
    first = message.partition("first error in its log:")[2].partition("last lines")[0]
    assert "Traceback (most recent call last)" in first
    assert "is not a multiple of the number of attention heads (3)" in first
