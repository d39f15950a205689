"""Per-model figures of a run with a model mix (``Workload.models``): each model's requests
summarised on their own, with the same keys and formulas as the run's summary
(``metrics.summarize``). Pure logic.

Rates (``output_tps``, ``rps``) are over the model's own measured window (its first send to
its last token), which in a mixed run spans about the whole run: they are that model's share
of the run's throughput. The server's own figures, memory and energy are the run's, not a
model's: they stay None here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .metrics import RequestRecord, summarize


def model_names(records: Sequence[RequestRecord]) -> list[str]:
    """The models the measured records were sent to, in order of first use."""
    return list(dict.fromkeys(r.model for r in records if r.model is not None and not r.warmup))


def by_model(records: Sequence[RequestRecord], slo: Mapping[str, float] | None = None
             ) -> dict[str, dict[str, Any]]:
    """{model: summary of its requests} ({} when no record names a model)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(model_names(records)):
        mine = [r for r in records if r.model == name]
        out[name] = summarize(mine, slo=slo)
    return out
