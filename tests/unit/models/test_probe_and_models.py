"""The native-build crash check, the packaged model cache, and the real Gemma model.

Split by tier from tests/test_probe_and_models.py: these are its unit tests; the others are in
tests/sessions/test_probe_and_models_session.py, tests/e2e/test_probe_and_models_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.models.packaged import ModelError, packaged_model_path, resolve_model


def test_unknown_model_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found: give a path to a \.gguf file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="is not a file"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="unknown packaged model"):
        packaged_model_path("gpt-17")
