"""A report path in a directory this uid cannot write (a container's /results owned by root or
another uid) is one line naming both uids and the fix (chown, or podman's :U)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf import files
from pytest_llmperf.files import ReportPathError, check_path


def test_the_error_names_the_uid_the_owner_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    owner = results.stat().st_uid
    monkeypatch.setattr(files.os, "access", lambda p, mode: False)
    monkeypatch.setattr(files.os, "getuid", lambda: owner + 1234)
    with pytest.raises(ReportPathError) as info:
        check_path("--llmperf-json", str(results / "llmperf.json"))
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"--llmperf-json {results}/llmperf.json: directory {results} is not writable by uid "
        f"{owner + 1234} (it is uid {owner}'s): make it writable for this user, e.g. chown "
        f"{owner + 1234} {results}, or podman's -v DIR:{results}:U")


def test_the_owner_itself_is_told_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files.os, "access", lambda p, mode: False)
    with pytest.raises(ReportPathError, match=rf"is not writable by uid {os.getuid()}, its owner$"):
        check_path("--llmperf-html", str(tmp_path / "r.html"))
