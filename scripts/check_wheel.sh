#!/usr/bin/env bash
# The package as a user gets it from a package index: build an sdist and a wheel
# (`python -m build`), `twine check --strict` them, install the wheel (not editable, no
# scripts/setup.sh) with the `llama` extra into a fresh virtual environment, then run
# `llmperf --help` and `pytest --llmperf` on a one-test file there, on the packaged model.
# llama-cpp-python comes from pip's wheel cache when setup.sh built it before (same sdist),
# else it is built from source here with the same CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

.venv/bin/python -m pip install --quiet "build>=1.2" "twine>=5.1"
.venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; exit 1; }
.venv/bin/python -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)
echo "check-wheel: built $(basename "$wheel") and $(basename "$(ls "$work"/dist/*.tar.gz)")"

# shellcheck source=scripts/cmake_args.sh
. scripts/cmake_args.sh
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "${wheel}[llama]"
"$work/venv/bin/llmperf" --help >/dev/null
mkdir "$work/init" && "$work/venv/bin/llmperf" init --dir "$work/init" --k8s --dry-run >/dev/null  # the templates ship
(cd "$work" && "$work/venv/bin/python" - <<'PY'
import importlib.resources as resources
import pytest_llmperf

root = resources.files("pytest_llmperf")
for name in ("py.typed", "report/templates/report.html.j2", "quality/tasks/llmperf_arith.jsonl",
             "scaffold/templates/test_llmperf.py.j2"):
    assert (root / name).is_file(), f"the wheel does not ship {name}"
assert "site-packages" in pytest_llmperf.__file__, pytest_llmperf.__file__  # not this checkout
PY
)
mkdir "$work/suite"
cat >"$work/suite/test_one.py" <<'PY'
from pytest_llmperf import Workload, llmperf


@llmperf(ttft_p50_ms=120000)
def test_one(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=4, requests=2,
                                                warmup=0))
    assert result.errors == 0
PY
(cd "$work/suite" && "$work/venv/bin/pytest" --llmperf -p no:cacheprovider -q test_one.py)
echo "check-wheel: the wheel installs and runs (fresh virtual environment, llama extra)"
