"""Per-model limits of a run with a model mix: ``@llmperf(per_model={"adapter-a":
{"ttft_p95_ms": 300}})`` checks each named model's own summary (``RunResult.by_model``) with
the same threshold keywords as the run's. Pure logic.

A check is named ``per_model[adapter-a].ttft_p95_ms``; a model the run did not send to is
"not measured" (a failed check), so a typo in a model name cannot pass silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .thresholds import ThresholdCheck, evaluate


def check_name(model: str, keyword: str) -> str:
    return f"per_model[{model}].{keyword}"


def per_model_checks(thresholds: Mapping[str, Any],
                     by_model: Mapping[str, Mapping[str, Any]]) -> list[ThresholdCheck]:
    """Every per-model limit of the marker checked against its model's summary."""
    limits = thresholds.get("per_model")
    if not isinstance(limits, Mapping):
        return []
    out: list[ThresholdCheck] = []
    for model in sorted(limits):
        mine = limits[model]
        if not isinstance(mine, Mapping):
            continue
        for check in evaluate(mine, by_model.get(model) or {}):
            out.append(ThresholdCheck(check_name(model, check.name), check.metric, check.limit,
                                      check.direction, check.measured, check.passed,
                                      check.baseline))
    return out
