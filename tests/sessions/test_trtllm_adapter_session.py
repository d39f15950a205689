"""The TensorRT-LLM adapter (engines/trtllm.py) on a machine without TensorRT-LLM or a GPU.

TensorRT-LLM cannot be installed here, so its streaming, argument and shutdown logic is driven
against ``TRTLLMSourceStandIn``, a named stand-in whose shapes are copied from the TensorRT-LLM
source (NVIDIA/TensorRT-LLM; commits and symbols in docs/engines-verified.md):

- ``LLM.__init__``: unknown keyword -> ``ValueError("LLM got invalid argument: KEY")``, the
  valid keys being ``TorchLlmArgs.model_fields`` (tensorrt_llm/llmapi/llm.py, BaseLLM.__init__).
- ``LLM.generate_async(inputs, sampling_params, ..., streaming=False)``: inputs through
  ``prompt_inputs`` (tensorrt_llm/inputs/data.py: str -> TextPrompt, list of int ->
  TokensPrompt, a dict with ``prompt`` or ``prompt_token_ids`` as is, else TypeError);
  ``RuntimeError("LLM is shutting down")`` after ``shutdown()``; the result's queue is an
  asyncio one only when created with a running event loop (executor/result.py,
  GenerationResultBase.__init__ / ``_aresult_step`` asserts it).
- The result is its own async iterator (``__aiter__`` returns self, ``__anext__`` steps then
  returns self, StopAsyncIteration once ``_done``); ``finished`` is ``_done``; each step sets
  ``output._last_token_ids_len = len(output.token_ids)`` and then extends ``token_ids``, so
  ``token_ids_diff`` is that step's new tokens; ``text_diff`` likewise from ``_last_text_len``
  (executor/result.py, CompletionOutput, ``_handle_sequence``, DetokenizedGenerationResultBase).
  A step may carry several tokens (``stream_interval``).
- ``SamplingParams``: a kw-only dataclass; its public field names are copied below, so a
  misspelt keyword fails as it would there (tensorrt_llm/sampling_params.py).
- ``LLM.tokenizer``: a TransformersTokenizer whose ``.tokenizer`` is the HF tokenizer
  (llmapi/tokenizer.py). ``LLM.shutdown()`` stops the executor (llmapi/llm.py).

Split by tier from tests/test_trtllm_adapter.py: these are its sessions tests; the others are
in tests/unit/engines/test_trtllm_adapter.py.
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
