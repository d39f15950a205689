"""``llmperf init --engine vllm`` end to end on vLLM's CPU build (``.venv-vllm``; skipped
without it): in an empty git repository, the written suite (its conftest, the pytest.ini's
``llmperf_engine = vllm`` and ``llmperf_model``) passes ``pytest --llmperf`` on the tiny
random-weight Llama. The other engines' runs are tests/e2e/test_init_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, git
from vllm_sessions import ENGINE_ARGS, run_session


def test_the_vllm_scaffold_passes(tmp_path: Path, tiny_hf_model: Path) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    env = {"PYTHONPATH": str(ROOT)}
    init = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "init", "--engine",
                           "vllm", "--model", str(tiny_hf_model), "--ci", "none"],
                          cwd=repo, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert init.returncode == 0, init.stdout + init.stderr
    assert f"llmperf_model = {tiny_hf_model}\n" in (repo / "pytest.ini").read_text()
    assert (repo / "tests" / "perf" / "conftest.py").is_file()
    engine_args = [f"--llmperf-engine-arg={k}={str(v).lower()}" for k, v in ENGINE_ARGS.items()]
    result = run_session(repo, ["--llmperf", "tests/perf", *engine_args], env=env)
    assert result.returncode == 0, result.output[-4000:]
    assert "1 passed" in result.output
