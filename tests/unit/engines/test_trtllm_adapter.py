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

Split by tier from tests/test_trtllm_adapter.py: these are its unit tests; the others are in
tests/sessions/test_trtllm_adapter_session.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from pytest_llmperf.engines import EngineError, create_engine
from pytest_llmperf.engines.base import GenerationParams, Prompt, RequestError
from pytest_llmperf.engines.gpu_common import BackgroundLoop
from pytest_llmperf.engines.trtllm import (
    RESERVED_ARGS,
    TRTLLMEngine,
    check_engine_args,
    quantization_refusal,
    sampling_kwargs,
    stream_request,
)
from pytest_llmperf.settings import Settings

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


class TRTLLMSourceStandIn:
    """Stand-in for ``tensorrt_llm.LLM`` (PyTorch backend), shapes copied from the source as
    listed in this module's docstring. Each request generates ``max_tokens`` ids (ignoring EOS)
    in steps of ``step_sizes`` tokens, one step per event-loop turn."""

    # TorchLlmArgs fields the tests use (the real class has ~100).
    FIELDS = frozenset({"model", "tokenizer", "dtype", "max_seq_len", "max_batch_size",
                        "max_num_tokens", "kv_cache_config", "tensor_parallel_size",
                        "trust_remote_code", "enable_chunked_prefill", "backend",
                        "skip_tokenizer_init"})
    instances: ClassVar[list[TRTLLMSourceStandIn]] = []

    @dataclasses.dataclass(kw_only=True)
    class SamplingParams:  # public fields of tensorrt_llm.sampling_params.SamplingParams
        end_id: int | None = None
        pad_id: int | None = None
        max_tokens: int = 32
        bad: Any = None
        bad_token_ids: Any = None
        stop: Any = None
        stop_token_ids: Any = None
        include_stop_str_in_output: bool = False
        embedding_bias: Any = None
        logits_processor: Any = None
        apply_batched_logits_processor: bool = False
        n: int = 1
        best_of: int | None = None
        use_beam_search: bool = False
        top_k: int | None = None
        top_p: float | None = None
        top_p_min: float | None = None
        top_p_reset_ids: int | None = None
        top_p_decay: float | None = None
        seed: int | None = None
        temperature: float | None = None
        min_tokens: int | None = None
        beam_search_diversity_rate: float | None = None
        repetition_penalty: float | None = None
        presence_penalty: float | None = None
        frequency_penalty: float | None = None
        length_penalty: float | None = None
        early_stopping: int | None = None
        no_repeat_ngram_size: int | None = None
        min_p: float | None = None
        beam_width_array: Any = None
        logprobs: int | None = None
        prompt_logprobs: int | None = None
        return_context_logits: bool = False
        return_generation_logits: bool = False
        exclude_input_from_output: bool = True
        return_encoder_output: bool = False
        return_perf_metrics: bool = False
        additional_model_outputs: Any = None
        lookahead_config: Any = None
        guided_decoding: Any = None
        ignore_eos: bool = False
        detokenize: bool = True
        add_special_tokens: bool = True
        truncate_prompt_tokens: int | None = None
        skip_special_tokens: bool = True
        spaces_between_special_tokens: bool = True

        def __post_init__(self) -> None:
            if self.temperature is not None and self.temperature < 0:
                raise ValueError(f"require temperature >= 0, got temperature={self.temperature}")

    class HFTokenizer:
        """A word-level Hugging Face-like tokenizer: <s>=0, </s>=1, "Ġword" pieces 2..9,
        <unk>=10 for any other word."""

        all_special_ids: ClassVar[list[int]] = [0, 1, 10]

        def __init__(self) -> None:
            self.vocab = ({"<s>": 0, "</s>": 1, "<unk>": 10}
                          | {f"\u0120{w}": i + 2 for i, w in enumerate(WORDS)})
            self.pieces = {i: p for p, i in self.vocab.items()}

        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            ids = [self.vocab.get(f"\u0120{w}", 10) for w in text.split()]
            return [0, *ids] if add_special_tokens else ids

        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return "".join(self.pieces[i].replace("\u0120", " ") for i in ids
                           if i not in self.all_special_ids)

        def get_vocab(self) -> dict[str, int]:
            return dict(self.vocab)

    @dataclasses.dataclass
    class CompletionOutput:  # tensorrt_llm.executor.result.CompletionOutput
        index: int
        text: str = ""
        token_ids: list[int] = dataclasses.field(default_factory=list)
        finish_reason: str | None = None
        _last_text_len: int = 0
        _last_token_ids_len: int = 0

        @property
        def text_diff(self) -> str:
            return self.text[self._last_text_len:]

        @property
        def token_ids_diff(self) -> list[int]:
            return self.token_ids[self._last_token_ids_len:]

    class RequestOutput:
        def __init__(self, llm: TRTLLMSourceStandIn, prompt_token_ids: list[int],
                     sampling: Any) -> None:
            asyncio.get_running_loop()  # GenerationResultBase: aqueue only with a running loop
            self._llm, self.prompt_token_ids, self.sampling_params = llm, prompt_token_ids, sampling
            self._outputs = [TRTLLMSourceStandIn.CompletionOutput(0)]
            self._done = False
            self._steps = self._plan(sampling.max_tokens)

        def _plan(self, n: int) -> Iterator[list[int]]:
            sizes = iter(self._llm.step_sizes * (n + 1))
            made = 0
            while made < n:
                k = min(next(sizes), n - made)
                yield [2 + (made + j) % len(WORDS) for j in range(k)]
                made += k

        @property
        def outputs(self) -> list[Any]:
            return self._outputs[:self.sampling_params.n]

        @property
        def finished(self) -> bool:
            return self._done

        def __aiter__(self) -> TRTLLMSourceStandIn.RequestOutput:
            return self

        async def __anext__(self) -> TRTLLMSourceStandIn.RequestOutput:
            if self._done:
                raise StopAsyncIteration
            await asyncio.sleep(0.001)  # the response arrives from the executor's thread
            new = next(self._steps, [])
            out = self._outputs[0]
            out._last_token_ids_len = len(out.token_ids)
            out.token_ids.extend(new)
            self._done = len(out.token_ids) >= self.sampling_params.max_tokens
            out._last_text_len = len(out.text)
            out.text = self._llm.tokenizer.tokenizer.decode(out.token_ids)
            if self._done:
                out.finish_reason = "length"
            return self

    def __init__(self, model: str, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in self.FIELDS:
                raise ValueError(f"LLM got invalid argument: {key}")
        self.model, self.kwargs = model, kwargs
        self.tokenizer = types.SimpleNamespace(tokenizer=TRTLLMSourceStandIn.HFTokenizer())
        self.step_sizes = [1]
        self.requests: list[tuple[Any, Any, bool]] = []
        self.shut_down = False
        TRTLLMSourceStandIn.instances.append(self)

    def generate_async(self, inputs: Any, sampling_params: Any = None,
                       streaming: bool = False) -> Any:
        if self.shut_down:
            raise RuntimeError("LLM is shutting down")
        self.requests.append((inputs, sampling_params, streaming))
        if isinstance(inputs, str):
            ids = self.tokenizer.tokenizer.encode(inputs)
        elif isinstance(inputs, list):
            assert isinstance(inputs[0], int)
            ids = inputs
        elif isinstance(inputs, dict):
            assert inputs.get("prompt") is not None or inputs.get("prompt_token_ids") is not None
            ids = inputs.get("prompt_token_ids") or self.tokenizer.tokenizer.encode(
                inputs["prompt"])
        else:
            raise TypeError(f"Invalid type of inputs for llm.generate: {type(inputs)}")
        max_num_tokens = self.kwargs.get("max_num_tokens", 8192)
        if len(ids) > max_num_tokens:
            raise ValueError(f"The sum of prompt length ({float(len(ids))}), query length (0) "
                             f"should not exceed max_num_tokens ({max_num_tokens})")
        return TRTLLMSourceStandIn.RequestOutput(self, list(ids), sampling_params)

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> type[TRTLLMSourceStandIn]:
    """The stand-in installed as ``tensorrt_llm`` (with ``llmapi.TorchLlmArgs``), and torch
    reporting one CUDA device, as on a GPU machine with TensorRT-LLM."""
    trt = types.ModuleType("tensorrt_llm")
    trt.__version__ = "stand-in"  # type: ignore[attr-defined]
    trt.LLM = TRTLLMSourceStandIn  # type: ignore[attr-defined]
    trt.SamplingParams = TRTLLMSourceStandIn.SamplingParams  # type: ignore[attr-defined]
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.TorchLlmArgs = types.SimpleNamespace(  # type: ignore[attr-defined]
        model_fields=dict.fromkeys(TRTLLMSourceStandIn.FIELDS))
    trt.llmapi = llmapi  # type: ignore[attr-defined]
    cuda = types.SimpleNamespace(is_available=lambda: True, get_device_name=lambda i: "GPU-0")
    monkeypatch.setitem(sys.modules, "tensorrt_llm", trt)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    TRTLLMSourceStandIn.instances.clear()
    return TRTLLMSourceStandIn


def _params(n: int, temperature: float = 0.0) -> GenerationParams:
    return GenerationParams(max_tokens=n, ignore_eos=True, temperature=temperature, seed=7)


def test_streaming_counts_each_steps_new_tokens_as_one_chunk(standin: Any) -> None:
    llm = standin("m")
    llm.step_sizes = [1, 3, 2]  # stream_interval > 1: several tokens in one step
    prompt = Prompt(text="alpha bravo", token_ids=(0, 2, 3), input_tokens=3, output_tokens=10)
    chunks: list[tuple[int, int]] = []

    async def run() -> Any:
        return await stream_request(llm, standin.SamplingParams, prompt, _params(10),
                                    lambda t, k: chunks.append((t, k)))

    gen = asyncio.run(run())
    assert [k for _, k in chunks] == [1, 3, 2, 1, 3]
    assert gen.output_tokens == 10 and gen.source == "engine"
    stamps = [t for t, _ in chunks]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert gen.text == " alpha bravo charlie delta echo foxtrot golf hotel alpha bravo"
    (inputs, sampling, streaming), = llm.requests
    assert inputs == {"prompt_token_ids": [0, 2, 3]} and streaming is True
    assert (sampling.max_tokens, sampling.ignore_eos, sampling.temperature, sampling.seed) == (
        10, True, 0.0, None)


def test_text_prompt_and_sampling_seed(standin: Any) -> None:
    llm = standin("m")
    prompt = Prompt(text="alpha bravo", token_ids=None, input_tokens=3, output_tokens=4)

    async def run() -> Any:
        return await stream_request(llm, standin.SamplingParams, prompt, _params(4, 0.8),
                                    lambda t, k: None)

    assert asyncio.run(run()).output_tokens == 4
    inputs, sampling, _ = llm.requests[0]
    assert inputs == "alpha bravo" and (sampling.temperature, sampling.seed) == (0.8, 7)
    assert sampling_kwargs(_params(4)) == {"max_tokens": 4, "ignore_eos": True,
                                           "temperature": 0.0}


def test_engine_from_settings_as_users_make_it(standin: Any) -> None:
    engine = create_engine(Settings(engine="trtllm", model="org/model", context_len=4096,
                                    engine_arg='{"kv_cache_config": {"dtype": "fp8"}, '
                                               '"max_batch_size": 8}'))
    assert isinstance(engine, TRTLLMEngine)
    try:
        llm, = standin.instances
        assert llm.model == "org/model"
        assert llm.kwargs == {"dtype": "auto", "max_seq_len": 4096, "max_batch_size": 8,
                              "kv_cache_config": {"dtype": "fp8"}}
        info = engine.info()
        assert (info["kind"], info["version"], info["gpu"]) == ("trtllm", "stand-in", "GPU-0")
        assert info["settings"]["engine_args"] == {"kv_cache_config": {"dtype": "fp8"},
                                                   "max_batch_size": 8}
        # the LLM's own tokenizer, wrapped: synthetic prompts use its "Ġword" pieces
        assert list(engine.tokenizer.word_token_ids()) == list(range(2, 10))
        assert engine.tokenizer.tokenize("alpha hotel") == [0, 2, 9]
        prompt = Prompt(text="alpha", token_ids=(0, 2), input_tokens=2, output_tokens=5)
        counts: list[int] = []

        async def run() -> Any:  # another loop than the engine's, as the load generator does
            return await engine.generate(prompt, _params(5), lambda t, k: counts.append(k))

        assert asyncio.run(run()).output_tokens == 5 and counts == [1] * 5
        llm.kwargs["max_num_tokens"] = 1  # the source's own length check fails the request
        with pytest.raises(RequestError, match=r"TensorRT-LLM request failed: .*max_num_tokens"):
            asyncio.run(run())
    finally:
        engine.close()
    assert llm.shut_down and not engine._loop.loop.is_running()


def test_no_context_len_leaves_the_models_own(standin: Any) -> None:
    TRTLLMEngine("org/model").close()
    assert standin.instances[0].kwargs == {"dtype": "auto"}


def test_unknown_engine_argument_names_the_valid_ones(standin: Any) -> None:
    with pytest.raises(EngineError) as err:
        create_engine(Settings(engine="trtllm", model="m", engine_arg='{"max_model_len": 8}'))
    message = str(err.value)
    assert message.startswith("unknown TensorRT-LLM engine argument max_model_len "
                              "(did you mean max_seq_len, set by --llmperf-context-len?); ")
    assert "valid (TorchLlmArgs): backend" not in message  # reserved keys are not offered
    assert "max_batch_size, max_num_tokens" in message and "\n" not in message
    assert not standin.instances  # refused before loading anything


@pytest.mark.parametrize(("key", "use"), sorted(RESERVED_ARGS.items()))
def test_plugin_settings_are_not_engine_arguments(key: str, use: str) -> None:
    with pytest.raises(EngineError, match=f"argument '{key}' is set by the plugin; use "):
        check_engine_args({key: 1, "max_batch_size": 8}, None)
    check_engine_args({"max_batch_size": 8}, None)
    check_engine_args({"max_batch_size": 8}, {"max_batch_size", "model"})


def test_quantization_is_refused_with_the_pre_quantized_route() -> None:
    assert quantization_refusal(None) is None
    why = quantization_refusal("fp8")
    assert why is not None and "rejects LLM(quant_config=...)" in why
    # before TensorRT-LLM is even imported: the same answer on a machine without it
    with pytest.raises(EngineError, match=r"cannot quantize on load \(--llmperf-quantization"):
        create_engine(Settings(engine="trtllm", model="m", quantization="fp8"))


def test_request_after_shutdown_is_a_request_error(standin: Any) -> None:
    engine = TRTLLMEngine("org/model")
    llm = standin.instances[0]
    llm.shutdown()
    prompt = Prompt(text="alpha", token_ids=(0, 2), input_tokens=2, output_tokens=2)

    async def run() -> Any:
        return await engine.generate(prompt, _params(2), lambda t, k: None)

    try:
        with pytest.raises(RequestError, match="LLM is shutting down"):
            asyncio.run(run())
    finally:
        engine.close()


def test_background_loop_runs_generate_async_with_a_running_loop(standin: Any) -> None:
    """generate_async is called on the engine's own loop thread, where a loop is running."""
    llm = standin("m")
    loop = BackgroundLoop("t")
    try:
        prompt = Prompt(text="alpha", token_ids=(0, 2), input_tokens=2, output_tokens=3)
        fut = loop.submit(stream_request(llm, standin.SamplingParams, prompt, _params(3),
                                         lambda t, k: None))
        assert fut.result(timeout=10).output_tokens == 3
    finally:
        loop.close()
