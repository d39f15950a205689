"""The ``llmperf`` command on real baseline files in a real git repository.

Split by tier from tests/test_cli.py: these are its unit tests; the others are in
tests/sessions/test_cli_session.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.cli import main


def test_no_baseline_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["baselines", "list"]) == 2
    err = capsys.readouterr().err
    assert "no baseline directory" in err and "--llmperf-save" in err
