"""Speed versus quality of model formats: GGUF types on llama.cpp, or Hugging Face formats
(fp16, bf16, AWQ, GPTQ) on vLLM, each scored on its own accuracy against the source.

The formats come from ``--llmperf-quant-formats``; without it, from the model (``conftest.py``):

- a GGUF model (default: the packaged Gemma 3 270M, itself Q4_K_M, so it is the honest
  reference, "source"): Q8_0, Q4_0 and F16 made from it with llama.cpp's quantizer. They
  cannot be better than the source, only show what requantizing costs. With your own F16 GGUF
  (``--llmperf-model=model-f16.gguf``) the reference is that F16 file.
- a Hugging Face checkpoint directory (``--llmperf-model=path/to/checkpoint``): fp16 (vLLM
  casts the weights), and AWQ and GPTQ checkpoints made from it with llm-compressor (on the
  CPU too: ``LLMPERF_QUANT_PYTHON`` names a Python that has it), run by vLLM.

One format's engine is loaded at a time (the previous one is closed first), so each row's
memory is its own and two variants never share a GPU.

Run: ``pytest --llmperf example_suites/quantization -s`` (several minutes on 2 CPU cores).
LLMPERF_QUANT_LIMIT scales the number of accuracy items per task (default 40 and 80);
LLMPERF_QUANT_MIN_ACCURACY is the accuracy floor (default 0.4; 0 for a random-weight model).
"""

from __future__ import annotations

import os

from pytest_llmperf import Workload, llmperf
from pytest_llmperf.report.quant_table import table_row

SCALE = float(os.environ.get("LLMPERF_QUANT_LIMIT", "1"))
MIN_ACCURACY = float(os.environ.get("LLMPERF_QUANT_MIN_ACCURACY", "0.4"))
# (task, items): arithmetic is generated text (every engine); the word facts are multiple
# choice, scored from logits, which only the llama.cpp engine exposes.
TASKS = [("llmperf_arith", max(1, int(40 * SCALE))), ("llmperf_words", max(1, int(80 * SCALE)))]


@llmperf(max_errors=0, min_accuracy=MIN_ACCURACY, max_accuracy_drop=0.15)
def test_speed_vs_quality(quantized_model, quantized_engine, llmperf_bench, llmperf_accuracy,
                          quant_table):
    result = llmperf_bench(quantized_engine,
                           Workload(input_tokens=64, output_tokens=32, requests=6))
    tasks = [(t, n) for t, n in TASKS if quantized_engine.has_logits or t == "llmperf_arith"]
    records = [llmperf_accuracy(quantized_engine, task, limit=limit) for task, limit in tasks]
    row = table_row(quantized_model, quantized_engine, result, records)
    quant_table.append(row)
    print("\n" + "  ".join(f"{k}: {v}" for k, v in row.items()))
    assert result.errors == 0
