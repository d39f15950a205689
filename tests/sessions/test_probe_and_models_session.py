"""The native-build crash check, the packaged model cache, and the real Gemma model.

Split by tier from tests/test_probe_and_models.py: these are its sessions tests; the others are
in tests/unit/models/test_probe_and_models.py, tests/e2e/test_probe_and_models_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.engines import probe
from pytest_llmperf.engines.base import EngineError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMPERF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMPERF_SKIP_PROBE", raising=False)
    return tmp_path / "cache"


def test_a_crashing_native_build_becomes_an_error_with_the_fix(
    tiny_model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for ggml's AMX kernels faulting: the check process dies of SIGSEGV.
    monkeypatch.setattr(probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(EngineError) as info:
        probe.check_native_build(tiny_model)
    message = str(info.value)
    assert "crashed with SIGSEGV" in message
    assert "-DGGML_AMX_TILE=OFF" in message and "-DGGML_NATIVE=OFF" in message
    assert not (cache / "probe.json").exists()  # a crash is never remembered as fine


def test_a_good_build_is_checked_once_and_remembered(tiny_model: Path, cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    probe.check_native_build(tiny_model)
    record = json.loads((cache / "probe.json").read_text())
    assert len(record["ok"]) == 1
    # Remembered: a crashing check would now not even run.
    monkeypatch.setattr(probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    probe.check_native_build(tiny_model)
