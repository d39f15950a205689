"""GGUF quantization of the tiny model with llama.cpp's own quantizer, and its cache.

Split by tier from tests/test_quantize.py: these are its unit tests; the others are in
tests/sessions/test_quantize_session.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import hf_dir

from pytest_llmperf.models.quantize import (
    QuantizeError,
    QuantizeUnavailable,
    checkpoint_path,
    quantize_checkpoint,
)
from pytest_llmperf.models.spec import materialize, parse_formats, vllm_installed

pytestmark = pytest.mark.usefixtures("isolated_cache")  # LLMPERF_CACHE_DIR in tmp_path


def test_parse_formats() -> None:
    assert parse_formats("source, q8_0,Q4-K-M ,awq=/ckpt/x,FP8") == [
        "source", "Q8_0", "Q4_K_M", "awq=/ckpt/x", "fp8"]
    assert parse_formats("") == []
    with pytest.raises(QuantizeError, match="unknown model format 'int3'"):
        parse_formats("source,int3")



def test_a_local_checkpoint_directory_is_a_source(tmp_path: Path) -> None:
    ckpt = hf_dir(tmp_path / "ckpt")
    if not vllm_installed():
        with pytest.raises(QuantizeUnavailable, match="'source' runs on vLLM"):
            materialize("source", str(ckpt))
    else:
        spec = materialize("source", str(ckpt))
        assert (spec.engine, spec.path, spec.is_reference) == ("vllm", str(ckpt), True)
        assert spec.quant_type == spec.source_format == "bfloat16"
    with pytest.raises(QuantizeUnavailable, match="needs a GGUF source"):
        materialize("Q8_0", str(ckpt))
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantizeError, match="is a directory but not a Hugging Face checkpoint"):
        materialize("source", str(tmp_path / "empty"))


def test_checkpoint_cache_key_is_the_content_and_the_recipe(tmp_path: Path) -> None:
    a = hf_dir(tmp_path / "a" / "model")
    same = hf_dir(tmp_path / "b" / "model")  # the same bytes elsewhere
    other = hf_dir(tmp_path / "c" / "model", weights=b"weightz")
    key = checkpoint_path(str(a), "awq")
    assert key.parent == tmp_path / "cache" / "quantized" / "checkpoints"
    assert key.name.startswith("model-awq-w4-")
    assert checkpoint_path(str(same), "awq") == key
    assert checkpoint_path(str(other), "awq") != key
    assert len({key, checkpoint_path(str(a), "gptq"), checkpoint_path(str(a), "awq", 8),
                checkpoint_path(str(a), "awq", calibration=["other text"]),
                checkpoint_path(str(a), "awq", n_grid=5)}) == 5


def test_checkpoint_quantization_without_llm_compressor_names_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = hf_dir(tmp_path / "ckpt")
    with pytest.raises(QuantizeError, match="unknown checkpoint quantization 'int8'"):
        quantize_checkpoint(str(ckpt), "int8")
    monkeypatch.setenv("LLMPERF_QUANT_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(QuantizeError, match=r"LLMPERF_QUANT_PYTHON=.*is not an executable"):
        quantize_checkpoint(str(ckpt), "gptq")
    monkeypatch.delenv("LLMPERF_QUANT_PYTHON")
    if importlib.util.find_spec("llmcompressor") is not None:
        return
    with pytest.raises(QuantizeUnavailable,
                       match=r"made with llm-compressor, which is not installed.*"
                             r"LLMPERF_QUANT_PYTHON"):
        quantize_checkpoint(str(ckpt), "gptq")


def test_hub_model_source_runs_on_vllm_only() -> None:
    if vllm_installed():
        pytest.skip("vLLM is installed here")
    with pytest.raises(QuantizeUnavailable, match="'source' runs on vLLM"):
        materialize("source", "Qwen/Qwen2.5-0.5B-Instruct")
