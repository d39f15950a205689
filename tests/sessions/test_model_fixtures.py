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


pytestmark = pytest.mark.usefixtures("isolated_cache")  # LLMPERF_CACHE_DIR in tmp_path


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
    from pytest_llmperf.models.spec import vllm_installed

    if vllm_installed():
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


VARIANT_SCORES = """
from pytest_llmperf import llmperf

KW = dict(task="llmperf_words", limit=6, backend="builtin")

def test_variants_of_one_model_are_scored_apart(llmperf_engine_factory, llmperf_accuracy):
    # Two variants of the same model file: other engine settings, so other engines.
    fp16 = llmperf_engine_factory(dtype="float16")
    bf16 = llmperf_engine_factory(dtype="bfloat16", quantization="fp8")
    assert fp16 is not bf16
    a = llmperf_accuracy(fp16, reference=None, **KW)
    b = llmperf_accuracy(bf16, reference=None, **KW)
    assert a.result is not b.result  # scored twice, not the first score reused
    assert "dtype=float16" in a.result.model
    assert "dtype=bfloat16" in b.result.model and "quantization=fp8" in b.result.model
    # The same variant again is the cached score.
    assert llmperf_accuracy(fp16, reference=None, **KW).result is a.result
    # One variant against the other is a real comparison, not the variant with itself.
    c = llmperf_accuracy(fp16, reference=bf16, **KW)
    assert c.reference is b.result and c.result is a.result
    assert c.comparison.reference == b.result.model
    assert c.comparison.candidate == a.result.model
"""


def test_accuracy_is_cached_per_variant_not_per_model_file(
        llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_v=VARIANT_SCORES)
    result = llmperf_pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    assert outcomes(result).get("passed") == 1, result.stdout.str()[-3000:]


LIVE_ENGINES = """
from pytest_llmperf.session import LLMPerfSession

SEEN = []

def test_formats(request, quantized_model, quantized_engine, llmperf_accuracy):
    engines = LLMPerfSession.of(request.config).engines
    # Only this variant is loaded: the previous test's variant was closed before it.
    assert list(engines.values()) == [quantized_engine]
    record = llmperf_accuracy(quantized_engine, "llmperf_words", limit=4, backend="builtin")
    # The reference (source) was loaded to be scored, then closed again.
    assert list(engines.values()) == [quantized_engine]
    SEEN.append((quantized_model.label, record.result.model, record.reference.model,
                 record.reference is record.result))

def test_after(request):
    assert [s[0] for s in SEEN] == ["Q8_0", "source", "Q4_0"]
    assert SEEN[0][2] == SEEN[1][1] == SEEN[2][2] == "tiny.gguf"  # the source is the reference
    assert [s[3] for s in SEEN] == [False, True, False]  # only the source is its own
    assert SEEN[0][1] == "tiny.Q8_0.gguf" and SEEN[2][1] == "tiny.Q4_0.gguf"
    assert len(LLMPerfSession.of(request.config).engines) == 1
"""


def test_one_format_variant_is_loaded_at_a_time(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_live=LIVE_ENGINES)
    result = llmperf_pytester.runpytest("--llmperf-quant-formats=Q8_0,source,Q4_0", "-rA",
                                        "-p", "no:cacheprovider")
    assert outcomes(result).get("passed") == 4, result.stdout.str()[-3000:]


@pytest.mark.skipif(not hasattr(__import__("pytest_llmperf.settings").settings.Settings,
                                "keep_variants"),
                    reason="the keep_variants setting is not declared yet")
def test_keep_variants_keeps_every_format_loaded(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_keep="""
        from pytest_llmperf.session import LLMPerfSession

        def test_formats(request, quantized_model, quantized_engine):
            engines = LLMPerfSession.of(request.config).engines
            assert quantized_engine in engines.values()
            request.config.stash.setdefault("n", []).append(len(engines))

        def test_after(request):
            assert len(LLMPerfSession.of(request.config).engines) == 2
    """)
    result = llmperf_pytester.runpytest("--llmperf-quant-formats=Q8_0,Q4_0",
                                        "--llmperf-keep-variants", "-p", "no:cacheprovider")
    assert outcomes(result).get("passed") == 3, result.stdout.str()[-3000:]
