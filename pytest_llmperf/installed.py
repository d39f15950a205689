"""Whether an optional package is installed, found without importing it (importing vLLM or
torch takes seconds)."""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """True when ``module`` is an installed package or module, found without importing it. A
    bare directory of that name on sys.path (a namespace package, such as a test folder named
    ``vllm``) is not the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")
