"""The quantization comparison table: one row per model format (size, load time, speed,
memory, accuracy and its paired drop against the reference), as strings ready to print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..formatting import fixed
from ..quality.accuracy import AccuracyRecord, combine, combined_comparison

if TYPE_CHECKING:
    from ..engines.base import Engine
    from ..models.spec import ModelSpec
    from ..run.metrics import RunResult

TABLE_COLUMNS = ("format", "source format", "size MB", "load s", "TTFT p50 ms", "tokens/s",
                 "peak RSS MB", "accuracy", "drop vs ref [95% CI]", "McNemar p")


def table_row(spec: ModelSpec, engine: Engine, run: RunResult | None,
              records: Sequence[AccuracyRecord] = ()) -> dict[str, str]:
    """One row of the quantization table (strings, ready to print); accuracy over every
    item of every task scored, the drop paired over the same items."""
    s = run.summary if run is not None else {}
    record = (AccuracyRecord(result=combine([r.result for r in records]))
              if records else None)
    comp = combined_comparison(records)
    label = spec.label + (" (reference)" if spec.is_reference else "")
    return {
        "format": label,
        "source format": spec.source_format or "-",
        "size MB": fixed(None if spec.size_bytes is None else spec.size_bytes / 2**20, ".1f"),
        "load s": fixed(engine.load_s, ".2f"),
        "TTFT p50 ms": fixed(s.get("ttft_p50_ms"), ".1f"),
        "tokens/s": fixed(s.get("output_tps"), ".1f"),
        "peak RSS MB": fixed(s.get("peak_rss_mb"), ".0f"),
        "accuracy": "-" if record is None else
        f"{record.result.accuracy:.3f} (n={record.result.n})",
        "drop vs ref [95% CI]": "-" if comp is None else
        f"{comp.drop:+.3f} [{comp.ci_low:+.3f}, {comp.ci_high:+.3f}]",
        "McNemar p": "-" if comp is None else f"{comp.p_value:.3g}",
    }


def markdown_table(rows: Sequence[Mapping[str, str]]) -> str:
    head = "| " + " | ".join(TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    body = ["| " + " | ".join(r.get(c, "-") for c in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])
