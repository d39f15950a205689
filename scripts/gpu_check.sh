#!/usr/bin/env bash
# The checks a lent GPU machine runs in a few minutes (NVML device, gpu_mem_mb, energy per
# token, one GPU per xdist worker, the engines it can import), written into
# docs/engines-verified.md between its gpu-check markers (scripts/gpu_check.py says what each
# check does). On a machine without an NVIDIA GPU it says so and exits 3, writing nothing.
#
# The lent machines of this workplace have PyTorch, transformers, nvidia-ml-py, pytest and
# pytest-xdist, and reach no package index: the plugin's other pure-Python needs travel as
# wheels. Prepare them here once (`bash scripts/gpu_check.sh --wheels`, into .whl/, which
# .git/info/exclude should list), then run on the machine with `.whl` carried:
#   bash scripts/gpu_check.sh            # findings into docs/, and into $OUT when it is set
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The plugin's dependencies that the GPU image lacks (pure Python or manylinux wheels).
WHEELS="gitpython gitdb smmap orjson"

if [ "${1:-}" = "--wheels" ]; then
  version=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  target=${GPU_PYTHON_VERSION:-3.12}
  mkdir -p .whl
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$target" \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl $WHEELS
  echo "gpu_check: wheels for Python $target in .whl/ (this machine's Python is $version):"
  ls .whl
  exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/llmperf-site .whl/*.whl
  export PYTHONPATH="/tmp/llmperf-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PY" - <<'PY'
import importlib.util
need = ["pytest", "numpy", "scipy", "psutil", "rich", "git", "jinja2", "filelock", "fsspec",
        "prometheus_client", "orjson", "pynvml"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python modules: $missing (prepare wheels: bash scripts/gpu_check.sh --wheels, and carry .whl)" >&2
  exit 2
fi
exec "$PY" scripts/gpu_check.py ${OUT:+--out "$OUT"} "$@"
