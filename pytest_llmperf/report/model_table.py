"""The per-model table of a run with a model mix (``Workload.models``): one row per model from
the run's ``by_model`` summaries (run/model_metrics.py), for the HTML page and the Markdown
summary. Pure logic over the results document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The columns: (summary key, title).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("requests", "requests"), ("errors", "errors"), ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p95_ms", "TTFT p95 ms"), ("tpot_p50_ms", "TPOT p50 ms"),
    ("e2e_p95_ms", "E2E p95 ms"), ("output_tps", "output tok/s"), ("rps", "req/s"),
)


@dataclass
class ModelRow:
    model: str
    share: float | None  # its fraction of the run's measured requests
    values: dict[str, Any]  # COLUMNS' keys -> the model's summary values


@dataclass
class ModelMixView:
    label: str  # "run 2" when the test has several runs, else ""
    rows: list[ModelRow]


def model_mix_view(label: str, run: Mapping[str, Any]) -> ModelMixView | None:
    """The run's per-model rows (None when it had no model mix)."""
    by_model = run.get("by_model")
    if not isinstance(by_model, Mapping) or not by_model:
        return None
    counts = {m: s.get("requests") for m, s in by_model.items() if isinstance(s, Mapping)}
    total = sum(v for v in counts.values() if isinstance(v, int))
    rows = []
    for model in sorted(counts):
        summary = by_model[model]
        n = counts[model]
        rows.append(ModelRow(model=str(model),
                             share=n / total if isinstance(n, int) and total else None,
                             values={key: summary.get(key) for key, _ in COLUMNS}))
    return ModelMixView(label=label, rows=rows)
