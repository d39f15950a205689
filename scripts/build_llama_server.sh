#!/usr/bin/env bash
# Builds llama.cpp's own C++ server (llama-server) from the llama.cpp source that ships inside
# the sdist of the installed llama-cpp-python (vendor/llama.cpp), once, and caches the binary:
#
#   $LLMPERF_CACHE_DIR (default ~/.cache/pytest-llmperf)/llama-server/<version>-<flags hash>/llama-server
#
# A second run with the same version and flags finds the cached binary and returns at once.
# The binary is what the `llama_server` recipe (--llmperf-server llama_server) runs;
# pytest_llmperf.engines.llama_server_bin.find_llama_server() locates it. Nothing is fetched
# but the sdist (through pip, from the package index or pip's cache): the embedded Web UI is
# neither built (npm) nor downloaded, and HTTPS support is off.
#
# Same CPU flags as scripts/setup.sh on x86-64 (native detection off, AMX off); set CMAKE_ARGS
# to override. Prints the binary's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

VERSION=${LLAMA_CPP_PYTHON_VERSION:-$("$PYTHON" -c \
  "import importlib.metadata as m; print(m.version('llama_cpp_python'))" 2>/dev/null || true)}
if [ -z "$VERSION" ]; then
  echo "build_llama_server: llama-cpp-python is not installed in $PYTHON (run scripts/setup.sh," \
       "or set LLAMA_CPP_PYTHON_VERSION)" >&2
  exit 2
fi

if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = "x86_64" ]; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  CMAKE_ARGS="$CMAKE_ARGS -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512=ON"
  fi
fi
CMAKE_ARGS=${CMAKE_ARGS:-}
# What this script always adds: a static, server-only Release build with nothing fetched.
FIXED_ARGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF"
FIXED_ARGS="$FIXED_ARGS -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
FIXED_ARGS="$FIXED_ARGS -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
FIXED_ARGS="$FIXED_ARGS -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON"
ALL_ARGS="$FIXED_ARGS $CMAKE_ARGS"
HASH=$(printf '%s' "$ALL_ARGS" | sha256sum | cut -c1-12)

CACHE=${LLMPERF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-llmperf}
ROOT="$CACHE/llama-server"
DEST="$ROOT/$VERSION-$HASH"
if [ -x "$DEST/llama-server" ]; then
  echo "build_llama_server: cached ($DEST)"
  echo "$DEST/llama-server"
  exit 0
fi

start=$(date +%s)
SDIST_DIR="$ROOT/sdist"
mkdir -p "$SDIST_DIR"
SDIST=$(ls "$SDIST_DIR"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
  echo "build_llama_server: downloading the llama-cpp-python $VERSION sdist"
  "$PYTHON" -m pip download --quiet --no-binary :all: --no-deps \
    "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
  SDIST="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llmperf-llama-server.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
tar -xzf "$SDIST" -C "$WORK" "llama_cpp_python-$VERSION/vendor/llama.cpp"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

echo "build_llama_server: building llama-server $VERSION ($ALL_ARGS)"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
# shellcheck disable=SC2086  # the argument lists are meant to split on spaces
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" $ALL_ARGS >"$WORK/configure.log" 2>&1 || {
  tail -40 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" --target llama-server -j"$(nproc 2>/dev/null || echo 2)" \
  >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }

mkdir -p "$DEST"
cp "$WORK/build/bin/llama-server" "$DEST/llama-server.tmp"
mv "$DEST/llama-server.tmp" "$DEST/llama-server"
printf '%s\n' "$ALL_ARGS" >"$DEST/cmake-args.txt"
echo "build_llama_server: built in $(( $(date +%s) - start )) s"
echo "$DEST/llama-server"
