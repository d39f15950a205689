"""Produce quantized model variants, cached: GGUF through llama.cpp's own quantizer, AWQ / GPTQ
checkpoints of a Hugging Face model through llm-compressor (on a GPU, or on the CPU).

GGUF variants are written to ``<cache>/quantized/<source sha256[:16]>/<stem>.<TYPE>.gguf``:
made once per source file content and type, written to a temporary file and renamed, so a
failed or interrupted quantize never leaves a partial file where a cached one is looked for.
AWQ / GPTQ checkpoints likewise go to ``<cache>/quantized/checkpoints/<name>-<method>-w<bits>-
<key>``, the key made from the source's content and the recipe (``checkpoint_path``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .packaged import cache_dir, sha256_file

# GGUF type name -> llama_ftype (llama.h). Names as llama-quantize spells them.
GGUF_FTYPES: dict[str, int] = {
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q8_0": 7,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q2_K": 10,
    "Q3_K_S": 11,
    "Q3_K_M": 12,
    "Q3_K_L": 13,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "Q5_K_S": 16,
    "Q5_K_M": 17,
    "Q6_K": 18,
    "IQ4_NL": 25,
    "IQ4_XS": 30,
    "BF16": 32,
}
FTYPE_NAMES: dict[int, str] = {v: k for k, v in GGUF_FTYPES.items()}
# Types llama.cpp can make without an importance matrix (the IQ2/IQ1 types need one).
UNQUANTIZED_FTYPES = frozenset({0, 1, 32})


class QuantizeError(RuntimeError):
    """A quantized variant cannot be produced (bad type, bad source, quantizer failure)."""


class QuantizeUnavailable(QuantizeError):
    """The toolkit or hardware a format needs is missing: a skip, with the reason."""


def normalize_gguf_type(name: str) -> str:
    key = name.strip().upper().replace("-", "_")
    if key not in GGUF_FTYPES:
        raise QuantizeError(
            f"unknown GGUF quantization type {name!r}; known types: {', '.join(GGUF_FTYPES)}"
        )
    return key


# ---------------------------------------------------------------------------- GGUF metadata

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise QuantizeError("truncated GGUF header")
    return data


def _read_value(fh: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _GGUF_SCALARS:
        fmt = _GGUF_SCALARS[vtype]
        return struct.unpack(fmt, _read(fh, struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        (n,) = struct.unpack("<Q", _read(fh, 8))
        raw = _read(fh, n)
        return raw.decode("utf-8", errors="replace") if keep else None
    if vtype == _ARRAY:
        itype, count = struct.unpack("<IQ", _read(fh, 12))
        if itype in _GGUF_SCALARS:
            fh.seek(struct.calcsize(_GGUF_SCALARS[itype]) * count, os.SEEK_CUR)
            return None
        for _ in range(count):
            _read_value(fh, itype, keep=False)
        return None
    raise QuantizeError(f"unknown GGUF value type {vtype}")


def gguf_metadata(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Scalar and string key/values of a GGUF header (arrays skipped); only ``keys`` if given."""
    out: dict[str, Any] = {}
    with Path(path).open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise QuantizeError(f"{path} is not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack("<IQQ", _read(fh, 20))
        if version < 2:
            raise QuantizeError(f"{path}: GGUF version {version} is too old")
        for _ in range(n_kv):
            (klen,) = struct.unpack("<Q", _read(fh, 8))
            key = _read(fh, klen).decode("utf-8", errors="replace")
            (vtype,) = struct.unpack("<I", _read(fh, 4))
            value = _read_value(fh, vtype, keep=not keys or key in keys)
            if value is not None and (not keys or key in keys):
                out[key] = value
    return out


def gguf_file_type(path: str | Path) -> str | None:
    """The GGUF quantization type name recorded in the file (general.file_type), if any."""
    ftype = gguf_metadata(path, ("general.file_type",)).get("general.file_type")
    if ftype is None:
        return None
    return FTYPE_NAMES.get(int(ftype), f"ftype{ftype}")


# ---------------------------------------------------------------------------- GGUF quantize

@dataclass(frozen=True)
class QuantizedFile:
    path: Path
    qtype: str
    source: Path
    source_type: str | None
    size_bytes: int
    seconds: float  # time spent quantizing (0 when it came from the cache)
    cached: bool


def _source_digest(source: Path) -> str:
    """sha256 of the source, memoised next to the cache by (path, size, mtime)."""
    st = source.stat()
    memo = cache_dir() / "quantized" / "hashes"
    memo.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(
        f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    ).hexdigest()[:24]
    marker = memo / key
    if marker.is_file():
        text = marker.read_text().strip()
        if len(text) == 64:
            return text
    digest = sha256_file(source)
    tmp = marker.with_name(marker.name + f".{os.getpid()}.tmp")
    tmp.write_text(digest)
    os.replace(tmp, marker)
    return digest


def quantized_path(source: Path, qtype: str, directory: Path | None = None) -> Path:
    directory = directory or cache_dir() / "quantized" / _source_digest(source)[:16]
    stem = source.name[:-5] if source.name.endswith(".gguf") else source.name
    return directory / f"{stem}.{qtype}.gguf"


def _llama_quantize(src: Path, dst: Path, ftype: int, allow_requantize: bool,
                    nthread: int) -> int:
    try:
        import llama_cpp
    except ImportError as exc:
        raise QuantizeUnavailable(
            f"GGUF quantization needs llama-cpp-python ({exc}): "
            "pip install 'pytest-llmperf[llama]'"
        ) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = nthread
    params.allow_requantize = allow_requantize
    import logging

    # llama-cpp-python maps ggml's log levels to logging levels by an older numbering (its
    # errors come out as DEBUG): let everything through while captured, then restore.
    py_logger = logging.getLogger("llama-cpp-python")
    level = py_logger.level
    py_logger.setLevel(logging.DEBUG)
    try:
        with _CapturedStderr() as log:
            rc = int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                                    ctypes.byref(params)))
    finally:
        py_logger.setLevel(level)
    if rc != 0:
        tail = [line for line in log.text().splitlines() if line.strip()][-3:]
        raise QuantizeError(
            f"llama.cpp could not quantize {src.name} to {FTYPE_NAMES.get(ftype, ftype)} "
            f"(return code {rc}): {' | '.join(tail) or 'no log'}"
        )
    return rc


class _CapturedStderr:
    """Capture what llama.cpp logs: fd 2 (its C logger) and sys.stderr (llama-cpp-python's
    log callback writes there, which pytest may have replaced)."""

    def __enter__(self) -> _CapturedStderr:
        import io
        import sys

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        self._py = io.StringIO()
        self._saved_py = sys.stderr
        sys.stderr = self._py
        return self

    def __exit__(self, *exc: object) -> None:
        import sys

        sys.stderr = self._saved_py
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self._text = self._file.read().decode("utf-8", errors="replace") + self._py.getvalue()
        self._file.close()

    def text(self) -> str:
        return getattr(self, "_text", "")


Quantizer = Callable[[Path, Path, int, bool, int], int]


def quantize_gguf(
    source: str | Path,
    qtype: str,
    *,
    directory: Path | None = None,
    nthread: int = 0,
    quantizer: Quantizer | None = None,
) -> QuantizedFile:
    """A GGUF variant of ``source`` in ``qtype`` (Q8_0, Q4_0, Q4_K_M, F16, ...), cached.

    A quantized source is requantized (``allow_requantize``): the result carries the source's
    loss too, so the honest reference for an accuracy drop is the source file itself.
    """
    src = Path(source).expanduser()
    if not src.is_file():
        raise QuantizeError(f"source model not found: {src}")
    qtype = normalize_gguf_type(qtype)
    source_type = gguf_file_type(src)
    dst = quantized_path(src, qtype, directory)
    if dst.is_file() and dst.stat().st_size > 0:
        return QuantizedFile(dst, qtype, src, source_type, dst.stat().st_size, 0.0, True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ftype = GGUF_FTYPES[qtype]
    allow_requantize = source_type is None or GGUF_FTYPES.get(source_type) not in (
        UNQUANTIZED_FTYPES
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    t0 = time.perf_counter()
    try:
        rc = (quantizer or _llama_quantize)(src, tmp, ftype, allow_requantize, nthread)
        if rc != 0:
            raise QuantizeError(
                f"llama.cpp could not quantize {src.name} to {qtype} (return code {rc}); "
                "see llama.cpp's log above for the tensor it stopped at"
            )
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise QuantizeError(f"llama.cpp wrote no output quantizing {src.name} to {qtype}")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)  # a failed quantize leaves no partial file
    seconds = time.perf_counter() - t0
    return QuantizedFile(dst, qtype, src, source_type, dst.stat().st_size, seconds, False)


# ---------------------------------------------------------------------------- AWQ / GPTQ

CHECKPOINT_METHODS = ("awq", "gptq")
# Bump when what the worker writes changes, so older cached checkpoints are not used.
CHECKPOINT_FORMAT = 1
QUANT_PYTHON_ENV = "LLMPERF_QUANT_PYTHON"
DEFAULT_CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization trades a little accuracy for memory and speed.",
    "A model turns a prompt into tokens, and each new token depends on every token before it.",
    "Latency is the time a person waits for the first word; throughput is words per second.",
] * 4
HINT = ("pip install 'pytest-llmperf[quant]' (llm-compressor), or set LLMPERF_QUANT_PYTHON to "
        "a Python that has it: llm-compressor pins other transformers and compressed-tensors "
        "versions than vLLM, so it usually lives in a virtual environment of its own")


@dataclass(frozen=True)
class QuantizedCheckpoint:
    path: Path
    method: str  # awq or gptq
    scheme: str  # W4A16_ASYM (awq), W4A16 (gptq)
    source: str
    size_bytes: int
    seconds: float  # time spent quantizing (0 when it came from the cache)
    cached: bool


def checkpoint_digest(source: str) -> str:
    """What a Hugging Face checkpoint is, by content: the sha256 of every file of a local
    directory (names and contents; each file's hash memoised by path, size and mtime), or the
    hub id itself."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return hashlib.sha256(f"hub:{source}".encode()).hexdigest()
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = item.relative_to(path).as_posix()
        if rel.startswith("."):
            continue
        digest.update(f"{rel}\0{_source_digest(item)}\n".encode())
    return digest.hexdigest()


def checkpoint_path(source: str, method: str, bits: int = 4,
                    calibration: list[str] | None = None, *, n_grid: int = 20,
                    directory: Path | None = None) -> Path:
    """Where the ``method`` checkpoint of ``source`` is cached: one directory per source
    content and recipe (method, bits, calibration text, tool format)."""
    texts = calibration or DEFAULT_CALIBRATION
    recipe = json.dumps({"format": CHECKPOINT_FORMAT, "source": checkpoint_digest(source),
                         "method": method, "bits": bits, "n_grid": n_grid,
                         "texts": hashlib.sha256("\0".join(texts).encode()).hexdigest()},
                        sort_keys=True)
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    name = Path(source.rstrip("/")).name or "model"
    return (directory or cache_dir() / "quantized" / "checkpoints") / (
        f"{name}-{method}-w{bits}-{key}")


def quant_python() -> str:
    """The Python that runs llm-compressor: LLMPERF_QUANT_PYTHON, else this one when it has
    llm-compressor; QuantizeUnavailable naming the fix otherwise."""
    import importlib.util
    import sys

    given = os.environ.get(QUANT_PYTHON_ENV, "").strip()
    if given:
        exe = Path(given).expanduser()
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise QuantizeError(f"{QUANT_PYTHON_ENV}={given!r} is not an executable Python")
        return str(exe)
    if importlib.util.find_spec("llmcompressor") is not None:
        return sys.executable
    raise QuantizeUnavailable(f"AWQ and GPTQ checkpoints are made with llm-compressor, which "
                              f"is not installed: {HINT}")


def _last_error(log: str) -> str:
    """The exception line of a Python traceback in ``log`` (else its last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) and " " not in head:
            return line
    return lines[-1] if lines else "no output"


def quantize_checkpoint(
    source: str,
    method: str,
    *,
    directory: Path | None = None,
    bits: int = 4,
    calibration: list[str] | None = None,
    n_grid: int = 20,
    python: str | None = None,
) -> QuantizedCheckpoint:
    """An AWQ or GPTQ checkpoint (a directory vLLM loads) of a Hugging Face model, cached.

    Made with llm-compressor (autoawq and auto-gptq are retired in its favour) in a process
    of its own (``models/llmc_worker.py``, under ``python`` or ``quant_python()``), on the GPU
    when torch sees one, else on the CPU (a small model takes seconds). Written to a temporary
    sibling directory and renamed into place, so a failed or interrupted run never leaves a
    checkpoint where a cached one is looked for. Raises QuantizeUnavailable without
    llm-compressor, QuantizeError when quantizing fails (with the tool's error line).
    """
    import shutil
    import subprocess

    method = method.lower()
    if method not in CHECKPOINT_METHODS:
        raise QuantizeError(f"unknown checkpoint quantization {method!r}: use awq or gptq")
    local = Path(source).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise QuantizeError(f"{source!r} is not a Hugging Face checkpoint directory "
                            "(no config.json)")
    texts = list(calibration or DEFAULT_CALIBRATION)
    scheme = f"W{bits}A16_ASYM" if method == "awq" else f"W{bits}A16"
    out = checkpoint_path(source, method, bits, texts, n_grid=n_grid, directory=directory)
    if (out / "config.json").is_file():
        return QuantizedCheckpoint(out, method, scheme, source, _tree_size(out), 0.0, True)
    exe = python or quant_python()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    request = {"source": str(local) if local.exists() else source, "method": method,
               "bits": bits, "texts": texts, "max_seq_length": 512, "n_grid": n_grid,
               "out": str(tmp / "checkpoint")}
    (tmp / "request.json").write_text(json.dumps(request))
    worker = Path(__file__).with_name("llmc_worker.py")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    try:
        with (tmp / "log.txt").open("w") as log:
            rc = subprocess.call([exe, str(worker), str(tmp / "request.json")],
                                 stdout=log, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL)
        made = tmp / "checkpoint"
        if rc != 0 or not (made / "config.json").is_file():
            text = (tmp / "log.txt").read_text(errors="replace")
            raise QuantizeError(f"{method.upper()} quantization of {source!r} with "
                                f"llm-compressor failed (exit code {rc}): {_last_error(text)}")
        try:
            os.rename(made, out)
        except OSError:
            if not (out / "config.json").is_file():  # another maker finished first: theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # never a half-written checkpoint
    seconds = time.perf_counter() - t0
    return QuantizedCheckpoint(out, method, scheme, source, _tree_size(out), seconds, False)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
