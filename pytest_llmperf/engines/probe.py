"""A crash check for the native llama.cpp build, run once in a child process.

A llama.cpp built with ggml's AMX kernels on a CPU whose AMX tile instructions fault dies
with SIGSEGV on the first quantized matrix multiply. Inside pytest that would kill the whole
session with no explanation, so the first load of each (build, model) pair runs a tiny
generation in a child process and turns a crash into an error that says how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..models.packaged import cache_dir
from .base import EngineError

REBUILD_HINT = (
    "rebuild llama-cpp-python without native CPU detection and with AMX off:\n"
    '  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    '-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \\\n'
    "  pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python\n"
    "(add -DGGML_AVX512=ON on CPUs with AVX-512; scripts/setup.sh does all of this)"
)

_CHILD = r"""
import sys
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_batch=32, n_threads=1, verbose=False)
ids = llm.tokenize(b"The quick brown fox jumps over the lazy dog", add_bos=True)
llm.eval(ids)
llm.eval([ids[-1]])
print("ok")
"""


def _key(model_path: Path) -> str:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent
    parts = [getattr(llama_cpp, "__version__", "?"), str(model_path.resolve())]
    st = model_path.stat()
    parts += [str(st.st_size), str(st.st_mtime_ns)]
    for so in sorted(lib.glob("lib/*")):
        s = so.stat()
        parts.append(f"{so.name}:{s.st_size}:{s.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def check_native_build(model_path: Path, timeout_s: float = 300) -> None:
    """Raise EngineError if loading and running the model crashes the process."""
    if os.environ.get("LLMPERF_SKIP_PROBE") == "1":
        return
    record = cache_dir() / "probe.json"
    key = _key(model_path)
    try:
        if key in json.loads(record.read_text()).get("ok", []):
            return
    except (OSError, ValueError, AttributeError):
        pass
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(model_path)],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"llama.cpp did not finish a 2-token check on {model_path} in {timeout_s:.0f} s"
        ) from None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise EngineError(
            f"llama.cpp crashed with {sig} running {model_path.name} in a check process; "
            f"the native build is unusable on this CPU. To fix it, {REBUILD_HINT}"
        )
    if proc.returncode != 0 or "ok" not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise EngineError(
            f"llama.cpp could not run {model_path.name}: " + " | ".join(tail)
        )
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            data = {}
        ok = [*[k for k in data.get("ok", []) if k != key][-49:], key]  # the newest 50
        tmp = record.with_name(f".probe-{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ok": ok, "schema_version": 1}, sort_keys=True, indent=1))
        os.replace(tmp, record)
    except OSError:
        pass
