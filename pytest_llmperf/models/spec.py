"""Model specs: which model file or checkpoint, in which format, run by which engine.

A spec string names one variant of the configured model (``--llmperf-model``):

- ``source``: the model itself, as configured (the honest reference for accuracy drops);
- a GGUF type (``Q8_0``, ``Q4_0``, ``Q4_K_M``, ``F16``, ...): made from a GGUF source with
  llama.cpp's quantizer, run by llama_cpp;
- ``awq`` / ``gptq``: made from a Hugging Face model (a local checkpoint directory, or a hub
  id) with llm-compressor (``models/quantize.py``; on the CPU too), run by vLLM, which reads
  the compressed-tensors format from the checkpoint; ``awq=PATH`` or ``gptq=PATH`` points at
  an existing checkpoint instead;
- ``fp16`` / ``bf16`` / ``fp8``: the Hugging Face model in that dtype (fp8: vLLM's dynamic FP8
  quantization), run by vLLM; ``fp8=PATH`` points at a pre-quantized checkpoint.

The Hugging Face formats run wherever vLLM runs (a GPU, or vLLM's CPU build); without vLLM
they skip with the reason. ``source`` is a GGUF file (llama.cpp) or a Hugging Face checkpoint
directory (``config.json`` and weights; vLLM).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..installed import installed
from .packaged import PACKAGED_MODELS, ModelError, resolve_model
from .quantize import (
    GGUF_FTYPES,
    QuantizeError,
    QuantizeUnavailable,
    gguf_file_type,
    quantize_checkpoint,
    quantize_gguf,
)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")

FORMATS = ("gguf", "awq", "gptq", "fp16", "bf16", "fp8")
VLLM_FORMATS = ("awq", "gptq", "fp16", "bf16", "fp8")
REFERENCE = "source"


@dataclass(frozen=True)
class ModelSpec:
    """One concrete model variant."""

    label: str  # what the test id shows: "source", "Q8_0", "awq", ...
    source: str  # the model it was made from (path or hub id)
    path: str  # the file or checkpoint directory the engine loads
    format: str  # gguf, awq, gptq, fp16, bf16, fp8
    quant_type: str | None  # Q8_0, Q4_K_M, F16, W4A16, ... (None when unknown)
    source_format: str | None  # the source's own type, e.g. Q4_K_M for the packaged Gemma
    engine: str  # llama_cpp or vllm (trtllm can run the HF formats too)
    size_bytes: int | None = None
    is_reference: bool = False
    quantize_s: float | None = None  # time spent producing it (0: from the cache)
    # vLLM's quantization= ("fp8" for online FP8; None: vLLM reads the checkpoint's own)
    vllm_quantization: str | None = None
    dtype: str | None = None  # vLLM's dtype= ("float16", "bfloat16", "auto")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_formats(text: str | None) -> list[str]:
    """``"source,Q8_0, q4_0"`` -> ``["source", "Q8_0", "Q4_0"]`` (GGUF types upper-cased)."""
    if not text:
        return []
    out = []
    for raw in str(text).replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        head, sep, tail = item.partition("=")
        key = head.strip()
        if key.lower() in (REFERENCE, *VLLM_FORMATS):
            key = key.lower()
        elif key.upper().replace("-", "_") in GGUF_FTYPES:
            key = key.upper().replace("-", "_")
        else:
            raise QuantizeError(
                f"unknown model format {item!r}: use 'source', a GGUF type "
                f"({', '.join(('Q8_0', 'Q4_0', 'Q4_K_M', 'F16', 'BF16'))}, ...), "
                "or awq, gptq, fp16, bf16, fp8 (optionally =PATH to an existing checkpoint)"
            )
        out.append(key + (sep + tail.strip() if sep else ""))
    return out


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def is_hf_checkpoint(path: Path) -> bool:
    """A local Hugging Face checkpoint: a directory with config.json and weight files."""
    return (path.is_dir() and (path / "config.json").is_file()
            and any(p.name.endswith(WEIGHT_SUFFIXES) for p in path.iterdir()))


def materialize(label: str, source: str, *, nthread: int = 0) -> ModelSpec:
    """The spec named by ``label`` made from ``source`` (a packaged model name, a GGUF file, a
    Hugging Face checkpoint directory or a hub id): quantizes on first use. Raises
    QuantizeUnavailable (skip) or QuantizeError."""
    head, _, given = label.partition("=")
    fmt = head.lower()
    path = Path(source).expanduser()
    if path.is_dir() and not is_hf_checkpoint(path):
        raise QuantizeError(
            f"model {source!r} is a directory but not a Hugging Face checkpoint (it needs "
            "config.json and *.safetensors weights)")
    if fmt in VLLM_FORMATS:
        return _vllm_spec(fmt, source, given or None)
    local: Path | None = None
    if source in PACKAGED_MODELS or path.is_file():
        try:
            local = resolve_model(source)
        except ModelError as exc:
            raise QuantizeError(str(exc)) from None
    if fmt == REFERENCE and (local is None or not _is_gguf(local)):
        return _vllm_spec(REFERENCE, source, None)  # a Hugging Face model, as it is, on vLLM
    if local is None or not _is_gguf(local):
        raise QuantizeUnavailable(
            f"model format {label!r} needs a GGUF source, and {source!r} is not a GGUF file "
            "(set --llmperf-model to a .gguf file)"
        )
    source_type = gguf_file_type(local)
    if fmt == REFERENCE:
        return ModelSpec(label=REFERENCE, source=source, path=str(local), format="gguf",
                         quant_type=source_type, source_format=source_type, engine="llama_cpp",
                         size_bytes=local.stat().st_size, is_reference=True, quantize_s=0.0)
    qfile = quantize_gguf(local, head, nthread=nthread)
    notes = []
    if source_type not in (None, "F32", "F16", "BF16"):
        notes.append(f"made from a {source_type} source: carries the source's quantization loss")
    return ModelSpec(label=qfile.qtype, source=source, path=str(qfile.path), format="gguf",
                     quant_type=qfile.qtype, source_format=source_type, engine="llama_cpp",
                     size_bytes=qfile.size_bytes, is_reference=False,
                     quantize_s=qfile.seconds, notes=notes)


def _dir_size(path: Path) -> int | None:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None


def checkpoint_dtype(path: Path) -> str | None:
    """The weights' dtype a local checkpoint's config.json records (bfloat16, float16, ...)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return str(value) if isinstance(value, str) else None


def vllm_installed() -> bool:
    """Whether vLLM is importable, without importing it (seconds). A namespace package (a
    folder named ``vllm`` on sys.path, such as a test folder) is not vLLM."""
    return installed("vllm")


def _vllm_spec(fmt: str, source: str, given: str | None) -> ModelSpec:
    if not vllm_installed():
        raise QuantizeUnavailable(
            f"model format {fmt!r} runs on vLLM, which is not installed: "
            "pip install 'pytest-llmperf[vllm]' (without a GPU: scripts/setup_vllm_cpu.sh)"
        )
    path = given or source
    quantization: str | None = None
    dtype = "auto"
    qtype: str | None = None
    seconds: float | None = None
    notes: list[str] = []
    if fmt in ("awq", "gptq"):
        if given is None:
            made = quantize_checkpoint(source, fmt)
            path, qtype, seconds = str(made.path), made.scheme, made.seconds
            notes.append(f"made with llm-compressor ({made.scheme}, group size 128)")
        else:
            qtype = "W4A16"
    elif fmt == "fp8":
        quantization, qtype = ("fp8" if given is None else None), "FP8"
    elif fmt == REFERENCE:
        local = Path(source).expanduser()
        qtype = checkpoint_dtype(local) if local.is_dir() else None
        seconds = 0.0
    else:
        dtype = {"fp16": "float16", "bf16": "bfloat16"}[fmt]
        qtype = fmt.upper()
    local = Path(source).expanduser()
    return ModelSpec(label=fmt, source=source, path=path, format=fmt, quant_type=qtype,
                     source_format=checkpoint_dtype(local) if local.is_dir() else None,
                     engine="vllm", size_bytes=_dir_size(Path(path)),
                     is_reference=fmt == REFERENCE, quantize_s=seconds,
                     vllm_quantization=quantization, dtype=dtype, notes=notes)
