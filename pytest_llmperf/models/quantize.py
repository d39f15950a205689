"""Produce quantized model variants, cached: GGUF through llama.cpp's own quantizer on the CPU,
AWQ / GPTQ through llm-compressor / gptqmodel on a GPU.

GGUF variants are written to ``<cache>/quantized/<source sha256[:16]>/<stem>.<TYPE>.gguf``:
made once per source file content and type, written to a temporary file and renamed, so a
failed or interrupted quantize never leaves a partial file where a cached one is looked for.
"""

from __future__ import annotations

import ctypes
import hashlib
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

def gpu_available() -> tuple[bool, str]:
    """(True, name) when a CUDA GPU is visible to torch, else (False, why not)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    try:
        if not torch.cuda.is_available():
            return False, "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        return True, torch.cuda.get_device_name(0)
    except Exception as exc:  # a broken driver
        return False, f"CUDA is unusable: {exc}"


def _require(module: str, extra_hint: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise QuantizeUnavailable(f"{module} is not installed ({exc}); {extra_hint}") from None


def quantize_checkpoint(
    source: str,
    method: str,
    *,
    directory: Path | None = None,
    bits: int = 4,
    group_size: int = 128,
    calibration: list[str] | None = None,
) -> Path:
    """An AWQ or GPTQ checkpoint (a directory vLLM loads) made from an FP16/BF16 HF model.

    AWQ goes through llm-compressor (autoawq is deprecated in its favour); GPTQ through
    gptqmodel (auto-gptq is archived), else llm-compressor's GPTQModifier. Both need a CUDA
    GPU; without the toolkit or the GPU this raises QuantizeUnavailable naming what is missing.
    """
    method = method.lower()
    if method not in ("awq", "gptq"):
        raise QuantizeError(f"unknown checkpoint quantization {method!r}: use awq or gptq")
    ok, why = gpu_available()
    if not ok:
        raise QuantizeUnavailable(f"{method.upper()} quantization needs a CUDA GPU: {why}")
    name = source.rstrip("/").replace("/", "--")
    out = (directory or cache_dir() / "quantized" / "checkpoints") / f"{name}-{method}-w{bits}"
    if (out / "config.json").is_file():
        return out
    texts = calibration or [
        "The quick brown fox jumps over the lazy dog.",
        "Quantization trades a little accuracy for memory and speed.",
    ] * 64
    tmp = out.with_name(out.name + f".{os.getpid()}.part")
    hint = "pip install 'pytest-llmperf[quant]'"
    gptqmodel = None
    if method == "gptq":
        try:
            gptqmodel = _require("gptqmodel", hint)
        except QuantizeUnavailable:
            gptqmodel = None
    if gptqmodel is None:
        _require("llmcompressor", hint)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if gptqmodel is not None:
            qcfg = gptqmodel.QuantizeConfig(bits=bits, group_size=group_size)
            model = gptqmodel.GPTQModel.load(source, qcfg)
            model.quantize(texts, batch_size=1)
            model.save(str(tmp))
        else:
            _llm_compressor(source, method, bits, texts, tmp)
        os.replace(tmp, out)
    except QuantizeError:
        raise
    except Exception as exc:
        raise QuantizeError(f"{method.upper()} quantization of {source!r} failed: {exc}") from None
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)  # never a half-written checkpoint
    return out


def _llm_compressor(source: str, method: str, bits: int, texts: list[str], out: Path) -> None:
    """llm-compressor's documented one-shot flow: tokenized calibration text, a recipe,
    ``oneshot``, then ``save_pretrained(save_compressed=True)`` (vLLM loads the result as
    compressed-tensors)."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, torch_dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(source)
    if method == "awq":
        from llmcompressor.modifiers.awq import AWQModifier

        recipe: list[Any] = [AWQModifier(targets=["Linear"], scheme=f"W{bits}A16_ASYM",
                                         ignore=["lm_head"])]
    else:
        from llmcompressor.modifiers.quantization import GPTQModifier

        recipe = [GPTQModifier(targets="Linear", scheme=f"W{bits}A16", ignore=["lm_head"])]
    ds = Dataset.from_dict({"text": texts}).map(
        lambda row: tokenizer(row["text"], truncation=True, max_length=512,
                              add_special_tokens=False),
        remove_columns=["text"],
    )
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=512,
            num_calibration_samples=len(texts))
    model.save_pretrained(str(out), save_compressed=True)
    tokenizer.save_pretrained(str(out))
