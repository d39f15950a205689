"""Speed versus quality of GGUF formats made from the packaged Gemma 3 270M, on llama.cpp.

The packaged model is itself Q4_K_M, so it is the honest reference ("source"): Q8_0 and F16
made from it cannot be better than it, only show what requantizing costs. With your own F16
GGUF (``--llmperf-model=model-f16.gguf``) the reference is that F16 file.

Run: ``pytest --llmperf example_suites/quantization -s`` (several minutes on 2 CPU cores).
LLMPERF_QUANT_LIMIT scales the number of accuracy items per task (default 40 and 80).
"""

from __future__ import annotations

import os

import pytest

from pytest_llmperf import Workload, llmperf
from pytest_llmperf.report.quant_table import table_row

FORMATS = [
    "source",
    "Q8_0",
    # Measured on this model: Q4_0 made from the Q4_K_M source keeps the word facts but loses
    # most of the arithmetic (0.325 -> 0.05 on 40 items, exact McNemar p = 0.001), so the
    # max_accuracy_drop gate below catches it. Kept as an expected failure to show the gate.
    pytest.param("Q4_0", marks=pytest.mark.xfail(
        reason="Q4_0 requantized from Q4_K_M loses arithmetic beyond max_accuracy_drop",
        strict=False)),
    "F16",
]
SCALE = float(os.environ.get("LLMPERF_QUANT_LIMIT", "1"))
TASKS = [("llmperf_arith", max(1, int(40 * SCALE))), ("llmperf_words", max(1, int(80 * SCALE)))]


@llmperf(max_errors=0, min_accuracy=0.4, max_accuracy_drop=0.15)
@pytest.mark.parametrize("quantized_model", FORMATS, indirect=True)
def test_speed_vs_quality(quantized_model, quantized_engine, llmperf_bench, llmperf_accuracy,
                          llmperf_engine_factory, quant_table):
    result = llmperf_bench(quantized_engine,
                           Workload(input_tokens=64, output_tokens=32, requests=6))
    records = [llmperf_accuracy(quantized_engine, task, limit=limit) for task, limit in TASKS]
    row = table_row(quantized_model, quantized_engine, result, records)
    quant_table.append(row)
    print("\n" + "  ".join(f"{k}: {v}" for k, v in row.items()))
    # Free this model so the next format's peak memory is its own.
    llmperf_engine_factory.release(quantized_engine)
    assert result.errors == 0
