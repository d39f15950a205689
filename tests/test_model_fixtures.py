"""The quantized_model / quantized_engine fixtures in real pytest sessions on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEST_FILE = """
from pytest_llmperf import llmperf, Workload

SEEN = []

@llmperf(max_errors=0)
def test_formats(quantized_model, quantized_engine, llmperf_bench, record_property):
    info = quantized_engine.info()
    assert info["model_path"] == quantized_model.path
    assert quantized_model.engine == "llama_cpp"
    SEEN.append((quantized_model.label, quantized_model.quant_type, id(quantized_engine)))
    record_property("seen", repr(SEEN[-1]))
    result = llmperf_bench(quantized_engine, Workload(input_tokens=8, output_tokens=4,
                                                      requests=2, warmup=0))
    assert result.summary["output_tokens"] == 8

def test_engines_are_cached_per_model():
    ids = {}
    for label, _, engine_id in SEEN:
        ids.setdefault(label, set()).add(engine_id)
    assert len(SEEN) >= 2
    assert all(len(v) == 1 for v in ids.values())
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPERF_CACHE_DIR", str(tmp_path / "cache"))


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def test_formats_from_the_command_line(llmperf_pytester: pytest.Pytester,
                                       tmp_path: Path) -> None:
    llmperf_pytester.makepyfile(test_q=TEST_FILE)
    out = tmp_path / "r.json"
    result = llmperf_pytester.runpytest(
        "--llmperf", "--llmperf-quant-formats=source,Q8_0,q4_0", f"--llmperf-json={out}",
        "-rA", "-p", "no:cacheprovider",
    )
    result.stdout.fnmatch_lines([
        "PASSED test_q.py::test_formats?source?",
        "PASSED test_q.py::test_formats?Q8_0?",
        "PASSED test_q.py::test_formats?Q4_0?",
    ])
    assert outcomes(result)["passed"] == 4
    data = json.loads(out.read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in data["tests"]}
    paths = {name: t["runs"][0]["engine"]["model_path"] for name, t in tests.items()}
    assert paths["test_formats[source]"].endswith("tiny.gguf")
    assert paths["test_formats[Q8_0]"].endswith("tiny.Q8_0.gguf")
    assert paths["test_formats[Q4_0]"].endswith("tiny.Q4_0.gguf")
    descs = {name: t["runs"][0]["engine"]["model_desc"] for name, t in tests.items()}
    assert "Q8_0" in descs["test_formats[Q8_0]"] and "Q4_0" in descs["test_formats[Q4_0]"]


def test_formats_from_the_ini_file(llmperf_pytester: pytest.Pytester, tiny_model: Path) -> None:
    llmperf_pytester.makeini(f"""
        [pytest]
        llmperf_model = {tiny_model}
        llmperf_threads = 1
        llmperf_n_ctx = 512
        llmperf_quant_formats = F16, Q4_K_M
    """)
    llmperf_pytester.makepyfile(test_q=TEST_FILE)
    result = llmperf_pytester.runpytest("--llmperf", "-rA", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["PASSED test_q.py::test_formats?F16?",
                                 "PASSED test_q.py::test_formats?Q4_K_M?"])
    assert outcomes(result)["passed"] == 3


def test_default_is_the_source_only(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_q="""
        def test_one(quantized_model):
            assert quantized_model.label == "source" and quantized_model.is_reference
            assert quantized_model.quant_type == "F32"
    """)
    result = llmperf_pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_one?source?*"])
    assert llmperf_pytester.runpytest().parseoutcomes()["passed"] == 1


def test_indirect_parametrize_overrides_the_option(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_q="""
        import pytest

        @pytest.mark.parametrize("quantized_model", ["Q8_0", "source"], indirect=True)
        def test_pinned(quantized_model, quantized_engine):
            assert quantized_model.label in ("Q8_0", "source")
            assert quantized_engine.info()["model_path"] == quantized_model.path
    """)
    result = llmperf_pytester.runpytest("--llmperf-quant-formats=F16,Q4_0,Q4_K_M", "-rA")
    result.stdout.fnmatch_lines(["PASSED test_q.py::test_pinned?Q8_0?",
                                 "PASSED test_q.py::test_pinned?source?"])
    assert outcomes(result) == {"passed": 2}


def test_gpu_format_skips_with_its_reason(llmperf_pytester: pytest.Pytester) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here: the skip path cannot be exercised")
    llmperf_pytester.makepyfile(test_q="""
        def test_gpu(quantized_model):
            assert quantized_model.label == "source"  # the GPU formats never get here
    """)
    result = llmperf_pytester.runpytest("--llmperf-quant-formats=source,awq,fp8", "-rs")
    assert outcomes(result) == {"passed": 1, "skipped": 2}
    result.stdout.fnmatch_lines([
        "*SKIPPED*test_q.py*llmperf: model format 'awq' runs on vLLM, which is not installed: "
        "pip install 'pytest-llmperf?vllm?'*",
    ])


def test_gguf_format_from_a_non_gguf_source_skips(pytester: pytest.Pytester,
                                                  tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"{}")
    pytester.makepyfile(test_q="""
        def test_q(quantized_model):
            raise AssertionError("must not run")
    """)
    result = pytester.runpytest(f"--llmperf-model={model}", "--llmperf-quant-formats=Q8_0",
                                "-rs")
    assert outcomes(result) == {"skipped": 1}
    result.stdout.fnmatch_lines(["*needs a GGUF source*not a GGUF file*"])


def test_unknown_format_is_a_collection_error(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_q="def test_q(quantized_model): pass\n")
    result = llmperf_pytester.runpytest("--llmperf-quant-formats=Q8_0,int3")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert outcomes(result) == {"errors": 1}
    result.stdout.fnmatch_lines(["*--llmperf-quant-formats*unknown model format 'int3'*"])
    assert "model_fixtures.py" not in result.stdout.str()  # no traceback into the plugin


def test_failed_quantize_fails_the_test_in_one_line(pytester: pytest.Pytester,
                                                    tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:100_000])
    pytester.makepyfile(test_q="def test_q(quantized_model): pass\n")
    result = pytester.runpytest(f"--llmperf-model={broken}", "--llmperf-quant-formats=Q8_0")
    assert outcomes(result) == {"errors": 1}
    result.stdout.fnmatch_lines([
        "*llmperf: llama.cpp could not quantize broken.gguf to Q8_0 (return code 1)*"
        "not within the file bounds*",
    ])
    assert "quantize.py" not in result.stdout.str()  # no traceback into our internals
