"""Make an AWQ or GPTQ checkpoint with llm-compressor: run as a script, in its own process.

``python llmc_worker.py REQUEST.json`` where the request holds ``source`` (a Hugging Face
checkpoint directory or hub id), ``method`` (awq or gptq), ``bits``, ``texts`` (calibration
text), ``max_seq_length``, ``n_grid`` (AWQ's scale search) and ``out`` (the directory to
write). It imports nothing from pytest-llmperf, so it runs under any
Python that has llm-compressor: the one running the tests, or another virtual environment
(``LLMPERF_QUANT_PYTHON``), since llm-compressor pins transformers and compressed-tensors
versions that differ from vLLM's.

It follows llm-compressor's documented one-shot flow: tokenized calibration text, a recipe
(``AWQModifier`` with the asymmetric ``W{bits}A16_ASYM`` preset, or ``GPTQModifier`` with
``W{bits}A16``; both group weights by 128; ``lm_head`` left unquantized), ``oneshot``, then
``save_pretrained(save_compressed=True)``: a compressed-tensors checkpoint that vLLM loads
without being told its quantization.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _cpu_only_pinning() -> None:
    """llm-compressor 0.14's AWQ pins cached activations in page-locked memory before each
    scale search, to speed up copies to the GPU; without an accelerator torch refuses
    ("Cannot access accelerator device when none is available"). There is no copy to speed
    up then, so pinning is skipped."""
    import torch

    if torch.cuda.is_available():
        return
    try:
        from llmcompressor.pipelines.cache import IntermediatesCache
    except ImportError:
        return
    if hasattr(IntermediatesCache, "pin_memory"):
        IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None


def quantize(request: dict[str, Any]) -> None:
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _cpu_only_pinning()
    method, bits = request["method"], int(request["bits"])
    model = AutoModelForCausalLM.from_pretrained(request["source"], dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(request["source"])
    recipe: list[Any]
    if method == "awq":
        from llmcompressor.modifiers.awq import AWQModifier

        recipe = [AWQModifier(targets=["Linear"], scheme=f"W{bits}A16_ASYM",
                              ignore=["lm_head"], n_grid=int(request["n_grid"]))]
    else:
        from llmcompressor.modifiers.quantization import GPTQModifier

        recipe = [GPTQModifier(targets="Linear", scheme=f"W{bits}A16", ignore=["lm_head"])]
    length = int(request["max_seq_length"])
    texts = list(request["texts"])
    data = Dataset.from_dict({"text": texts}).map(
        lambda row: tokenizer(row["text"], truncation=True, max_length=length,
                              add_special_tokens=False),
        remove_columns=["text"],
    )
    oneshot(model=model, dataset=data, recipe=recipe, max_seq_length=length,
            num_calibration_samples=len(texts))
    model.save_pretrained(request["out"], save_compressed=True)
    tokenizer.save_pretrained(request["out"])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: llmc_worker.py REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[1]) as fh:
        quantize(json.load(fh))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
