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
