"""Where llama.cpp's own ``llama-server`` binary is: the one ``scripts/build_llama_server.sh``
builds from the llama.cpp source inside llama-cpp-python's sdist and caches under
``<cache>/llama-server/<llama-cpp-python version>-<hash of its cmake flags>/llama-server``
(``<cache>`` as for the packaged model: ``LLMPERF_CACHE_DIR``, else
``$XDG_CACHE_HOME/pytest-llmperf``, else ``~/.cache/pytest-llmperf``).

The ``llama_server`` recipe runs ``llama-server`` from ``PATH``; ``with_llama_server_on_path``
gives the environment that puts the found binary first on it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..models.packaged import cache_dir

BUILD_COMMAND = "bash scripts/build_llama_server.sh"
ENV_VAR = "LLMPERF_LLAMA_SERVER"  # an explicit path to a llama-server binary


def llama_cpp_python_version() -> str | None:
    """The installed llama-cpp-python's version (None: not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def built_binaries(cache: Path | None = None, version: str | None = None) -> list[Path]:
    """The cached builds for ``version`` (default: the installed llama-cpp-python's; every
    version when none is installed), newest first."""
    root = (cache or cache_dir()) / "llama-server"
    version = version or llama_cpp_python_version()
    pattern = f"{version}-*/llama-server" if version else "*-*/llama-server"
    found = [p for p in root.glob(pattern) if p.is_file() and os.access(p, os.X_OK)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def find_llama_server(env: Mapping[str, str] | None = None,
                      cache: Path | None = None) -> Path | None:
    """``$LLMPERF_LLAMA_SERVER`` when set, else the newest cached build for the installed
    llama-cpp-python, else ``llama-server`` on PATH; None when there is none."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    builds = built_binaries(cache)
    if builds:
        return builds[0]
    on_path = shutil.which("llama-server", path=env.get("PATH"))
    return Path(on_path) if on_path else None


def with_llama_server_on_path(binary: Path, env: Mapping[str, str] | None = None
                              ) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) with ``binary``'s folder first on PATH."""
    out = dict(os.environ if env is None else env)
    out["PATH"] = os.pathsep.join([str(binary.parent), *filter(None, [out.get("PATH")])])
    return out
