"""The TensorRT-LLM adapter (engines/trtllm.py) in a pytest session, on a machine without
TensorRT-LLM or a GPU.

Split by tier from tests/test_trtllm_adapter.py: these are its sessions tests; the others, and
the stand-in for TensorRT-LLM's source that they drive, are in
tests/unit/engines/test_trtllm_adapter.py.
"""

from __future__ import annotations

import pytest


def test_quantization_fails_a_session_in_one_line(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_t="""
        from pytest_llmperf import llmperf, Workload

        @llmperf(min_tps=1)
        def test_t(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(requests=1))
    """)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-engine=trtllm",
                                        "--llmperf-model=org/model-FP8",
                                        "--llmperf-quantization=fp8")
    assert result.parseoutcomes() == {"errors": 1}
    result.stdout.fnmatch_lines(["*llmperf: the trtllm engine cannot quantize on load*"])
    assert "Traceback" not in result.stdout.str() and "trtllm.py" not in result.stdout.str()
