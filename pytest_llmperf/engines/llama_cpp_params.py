"""``Workload.params`` on the embedded llama.cpp engine: the fields llama-cpp-python's
``Llama.create_completion`` takes, mapped onto the same llama.cpp samplers it builds
(``Llama._init_sampler``: penalties, grammar, then greedy, or top-k, typical, top-p, min-p,
temperature and a seeded draw), plus ``stop`` strings and ``response_format`` (a JSON schema
becomes a grammar, as llama-cpp-python's server does). Pure logic: ``SamplerPlan`` says what
to build; the engine builds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .request_fields import response_schema, unsupported_params_problem

# create_completion's sampling fields this engine maps (its defaults where not given).
SUPPORTED = ("top_k", "top_p", "min_p", "typical_p", "seed", "repeat_penalty",
             "frequency_penalty", "presence_penalty", "stop", "response_format", "logit_bias")
PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size default


@dataclass(frozen=True)
class SamplerPlan:
    """What the sampler chain and the decoding loop apply for one request's params."""

    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    seed: int | None = None  # None: the workload's seed
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None  # {} : any JSON object
    logit_bias: dict[int, float] = field(default_factory=dict)

    @property
    def penalties(self) -> bool:
        return (self.repeat_penalty != 1.0 or self.frequency_penalty != 0.0
                or self.presence_penalty != 0.0)


def problem(params: Mapping[str, Any]) -> str | None:
    """Why these params cannot be applied here (None when they can)."""
    return unsupported_params_problem("llama_cpp", params, SUPPORTED)


def plan(params: Mapping[str, Any]) -> SamplerPlan:
    """The plan of (already checked) params; ValueError for a field of the wrong shape."""
    stop = params.get("stop", ())
    bias = params.get("logit_bias") or {}
    try:
        logit_bias = {int(k): float(v) for k, v in bias.items()}
    except (TypeError, ValueError, AttributeError):
        raise ValueError("logit_bias must map token ids to numbers") from None
    fmt = params.get("response_format")
    return SamplerPlan(
        top_k=int(params.get("top_k", 40)),
        top_p=float(params.get("top_p", 0.95)),
        min_p=float(params.get("min_p", 0.05)),
        typical_p=float(params.get("typical_p", 1.0)),
        seed=params.get("seed"),
        repeat_penalty=float(params.get("repeat_penalty", 1.0)),
        frequency_penalty=float(params.get("frequency_penalty", 0.0)),
        presence_penalty=float(params.get("presence_penalty", 0.0)),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        json_schema=response_schema(fmt) if fmt is not None else None,
        logit_bias=logit_bias,
    )


def stopped_at(text: str, stop: Sequence[str]) -> int | None:
    """Where the first stop string begins in ``text`` (None: none there)."""
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(found) if found else None
