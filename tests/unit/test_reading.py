"""pytest_llmperf.reading: every stored file is read bounded (issue 23, items 12 and 16)."""

from __future__ import annotations

import os
import threading

import pytest

from pytest_llmperf import reading
from pytest_llmperf.reading import ReadLimitError


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "base.json"
    os.mkfifo(fifo)
    done = threading.Event()
    err: list[BaseException] = []

    def read() -> None:
        try:
            reading.read_json(fifo)
        except BaseException as exc:
            err.append(exc)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    assert isinstance(err[0], ReadLimitError)
    assert "FIFO" in str(err[0]) and str(fifo) in str(err[0])
    assert not reading.is_regular_file(fifo)


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "x.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(ReadLimitError, match="a device, not a regular file"):
        reading.read_bytes(link)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ReadLimitError, match="a directory"):
        reading.read_bytes(tmp_path)


def test_size_limit_names_the_limit_and_the_variable(tmp_path, monkeypatch):
    f = tmp_path / "big.json"
    f.write_bytes(b"[" + b"1," * 600_000 + b"1]")
    monkeypatch.setenv(reading.MAX_FILE_ENV, "1")
    with pytest.raises(ReadLimitError, match=r"1\.1 MiB is larger than the 1 MiB limit.*"
                       + reading.MAX_FILE_ENV):
        reading.read_json(f)
    monkeypatch.setenv(reading.MAX_FILE_ENV, "2")
    assert len(reading.read_json(f)) == 600_001
    assert reading.read_bytes(f, limit=10**9)[:2] == b"[1"


def test_bad_limit_values_fall_back_to_the_default(monkeypatch):
    for raw in ("", "x", "-3", "nan", "0"):
        monkeypatch.setenv(reading.MAX_FILE_ENV, raw)
        assert reading.max_file_bytes() == reading.DEFAULT_MAX_FILE_MB * 2**20


def test_deep_nesting_nan_and_bad_json_are_one_line_errors(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ReadLimitError, match="nested too deeply"):
        reading.read_json(deep)
    nan = tmp_path / "nan.json"
    nan.write_text('{"a": NaN}')
    with pytest.raises(ReadLimitError, match="NaN is not a JSON number"):
        reading.read_json(nan)
    for bad in (b"{", b"\xff\xfe"):
        (tmp_path / "bad.json").write_bytes(bad)
        with pytest.raises(ReadLimitError, match=r"bad\.json"):
            reading.read_json(tmp_path / "bad.json")
    with pytest.raises(ReadLimitError, match="not UTF-8"):
        reading.read_text(tmp_path / "bad.json")


def test_a_missing_file_is_the_usual_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        reading.read_bytes(tmp_path / "missing.json")
