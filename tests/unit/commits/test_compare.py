"""``llmperf compare BASE [HEAD]``: the paired PR gate, run for real on a git repository whose
suite measures the known-schedule engine oracle (``testing/schedule_engine.py``): a commit
that only edits a comment passes, a commit that makes one test's tokens three times slower
fails naming that test and its metrics, and every output file is written and parseable.

Split by tier from tests/test_compare.py: these are its unit tests; the others are in
tests/e2e/test_compare_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.cli import main


def test_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "a"]) == 2
    err = capsys.readouterr().err
    assert "is not inside a git repository" in err and len(err.strip().splitlines()) == 1
