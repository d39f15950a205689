"""GGUF quantization of the tiny model with llama.cpp's own quantizer, and its cache.

Split by tier from tests/test_quantize.py: these are its sessions tests; the others are in
tests/unit/models/test_quantize.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from helpers import hf_dir

from pytest_llmperf.models.quantize import (
    QuantizeError,
    QuantizeUnavailable,
    gguf_file_type,
    gguf_metadata,
    quantize_checkpoint,
    quantize_gguf,
)
from pytest_llmperf.models.spec import materialize, vllm_installed

gguf = pytest.importorskip("gguf", reason="reading tensor types needs the gguf package (dev)")

# The type llama.cpp gives an attention weight, and the bits per weight of that type.
EXPECTED = {"Q8_0": ("Q8_0", 8.5), "Q4_0": ("Q4_0", 4.5), "Q4_K_M": ("Q4_K", 4.5),
            "F16": ("F16", 16.0)}


pytestmark = pytest.mark.usefixtures("isolated_cache")  # LLMPERF_CACHE_DIR in tmp_path


def tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


def weight_bytes(path: Path, name: str) -> int:
    return next(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors if t.name == name)


@pytest.mark.parametrize("qtype", sorted(EXPECTED))
def test_each_type_is_made_with_its_tensor_type_and_size(tiny_model: Path, qtype: str) -> None:
    out = quantize_gguf(tiny_model, qtype, nthread=1)
    assert out.path.is_file() and out.path.name == f"tiny.{qtype}.gguf"
    assert gguf_file_type(out.path) == qtype
    assert out.source_type == "F32" and not out.cached
    types = tensor_types(out.path)
    tensor_type, bits = EXPECTED[qtype]
    assert types["blk.0.attn_q.weight"] == tensor_type
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1-d tensors stay F32
    # 256x256 weights take exactly bits/8 bytes per weight in that type.
    assert weight_bytes(out.path, "blk.0.attn_q.weight") == int(256 * 256 * bits / 8)
    assert out.size_bytes == out.path.stat().st_size
    source_size = tiny_model.stat().st_size
    assert out.size_bytes < source_size * (bits / 32) * 1.25 + 64 * 1024


def test_sizes_are_ordered_by_bits(tiny_model: Path) -> None:
    sizes = {q: quantize_gguf(tiny_model, q).size_bytes for q in ("F16", "Q8_0", "Q4_K_M",
                                                                  "Q4_0")}
    assert tiny_model.stat().st_size > sizes["F16"] > sizes["Q8_0"] > sizes["Q4_K_M"]
    assert sizes["Q8_0"] > sizes["Q4_0"]


def test_quantized_model_loads_and_generates(tiny_model: Path) -> None:
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings

    out = quantize_gguf(tiny_model, "Q4_K_M")
    engine = LlamaCppEngine(LlamaCppSettings(str(out.path), n_threads=1, n_ctx=256))
    try:
        assert "Q4_K" in engine.info()["model_desc"]
    finally:
        engine.close()


def test_cached_by_source_hash_and_type(tiny_model: Path, tmp_path: Path) -> None:
    first = quantize_gguf(tiny_model, "q8_0")  # type names are case-insensitive
    stamp = first.path.stat().st_mtime_ns
    again = quantize_gguf(tiny_model, "Q8_0")
    assert again.cached and again.path == first.path and again.seconds == 0.0
    assert again.path.stat().st_mtime_ns == stamp
    # The same bytes under another name share the cache directory (keyed by content) ...
    copy = tmp_path / "copy" / "tiny.gguf"
    copy.parent.mkdir()
    shutil.copy(tiny_model, copy)
    assert quantize_gguf(copy, "Q8_0").path == first.path
    # ... and different bytes do not.
    from pytest_llmperf.testing.tiny_model import write_tiny_gguf

    other = write_tiny_gguf(tmp_path / "other" / "tiny.gguf", seed=1)
    assert quantize_gguf(other, "Q8_0").path.parent != first.path.parent


def test_requantize_from_a_quantized_source(tiny_model: Path) -> None:
    q4 = quantize_gguf(tiny_model, "Q4_K_M")
    q8 = quantize_gguf(q4.path, "Q8_0")  # needs allow_requantize
    assert q8.source_type == "Q4_K_M"
    assert gguf_file_type(q8.path) == "Q8_0"
    assert tensor_types(q8.path)["blk.0.attn_q.weight"] == "Q8_0"


def test_a_failed_quantize_leaves_no_partial_file(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:100_000])  # header intact, tensors cut off
    with pytest.raises(QuantizeError, match=r"could not quantize broken\.gguf to Q8_0"):
        quantize_gguf(broken, "Q8_0")
    root = tmp_path / "cache" / "quantized"
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.parent.name != "hashes"]
    assert leftovers == []
    assert [p.name for p in root.iterdir()] != []  # it did get as far as its directory


def test_an_interrupted_write_leaves_no_partial_file(tiny_model: Path, tmp_path: Path) -> None:
    def half_then_fail(src: Path, dst: Path, ftype: int, allow: bool, nthread: int) -> int:
        dst.write_bytes(b"GGUF" + b"\0" * 4096)  # what llama.cpp leaves when it stops midway
        return 1

    with pytest.raises(QuantizeError, match="return code 1"):
        quantize_gguf(tiny_model, "Q4_0", directory=tmp_path / "out", quantizer=half_then_fail)
    assert list((tmp_path / "out").iterdir()) == []

    def crash(src: Path, dst: Path, ftype: int, allow: bool, nthread: int) -> int:
        dst.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize_gguf(tiny_model, "Q4_0", directory=tmp_path / "out", quantizer=crash)
    assert list((tmp_path / "out").iterdir()) == []
    # and a later good run is not confused by the failures
    assert gguf_file_type(quantize_gguf(tiny_model, "Q4_0", directory=tmp_path / "out").path) \
        == "Q4_0"


def test_bad_inputs_name_the_problem(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match=r"unknown GGUF quantization type 'Q3_X'.*Q8_0"):
        quantize_gguf(tiny_model, "Q3_X")
    with pytest.raises(QuantizeError, match="source model not found"):
        quantize_gguf(tmp_path / "missing.gguf", "Q8_0")
    text = tmp_path / "model.bin"
    text.write_bytes(b"not a model")
    with pytest.raises(QuantizeError, match="not a GGUF file"):
        quantize_gguf(text, "Q8_0")


def test_gguf_metadata_reads_the_header(tiny_model: Path) -> None:
    meta = gguf_metadata(tiny_model)
    assert meta["general.architecture"] == "llama"
    assert meta["llama.embedding_length"] == 256
    assert meta["general.file_type"] == 0
    assert "tokenizer.ggml.tokens" not in meta  # arrays are skipped


def test_materialize_specs(tiny_model: Path) -> None:
    ref = materialize("source", str(tiny_model))
    assert ref.is_reference and ref.path == str(tiny_model) and ref.quant_type == "F32"
    assert ref.engine == "llama_cpp" and ref.size_bytes == tiny_model.stat().st_size
    q = materialize("Q4_0", str(tiny_model))
    assert (q.format, q.quant_type, q.source_format, q.is_reference) == ("gguf", "Q4_0",
                                                                          "F32", False)
    assert q.notes == []  # an unquantized source: no inherited loss
    q2 = materialize("Q8_0", materialize("Q4_K_M", str(tiny_model)).path)
    assert q2.source_format == "Q4_K_M" and "carries the source's" in q2.notes[0]


def test_vllm_formats_are_unavailable_without_vllm_with_the_reason(tiny_model: Path) -> None:
    if vllm_installed():
        pytest.skip("vLLM is installed here")
    with pytest.raises(QuantizeUnavailable, match="runs on vLLM, which is not installed"):
        materialize("awq", "Qwen/Qwen2.5-0.5B-Instruct")



def test_a_failed_checkpoint_quantization_names_the_error_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = hf_dir(tmp_path / "ckpt")  # not loadable: the worker fails
    monkeypatch.setenv("LLMPERF_QUANT_PYTHON", sys.executable)
    with pytest.raises(QuantizeError) as info:
        quantize_checkpoint(str(ckpt), "awq")
    message = str(info.value)
    assert message.startswith(f"AWQ quantization of {str(ckpt)!r} with llm-compressor failed "
                              "(exit code 1): ")
    assert "Error" in message.rsplit(": ", 2)[-2] and "\n" not in message  # the error line
    root = tmp_path / "cache" / "quantized" / "checkpoints"
    assert list(root.iterdir()) == []  # no checkpoint, no temporary directory
