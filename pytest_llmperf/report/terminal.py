"""The end-of-session table: one row per run, the key metrics and the verdict."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from ..formatting import compact
from ..metric_table import TABLE_METRICS, with_optional
from ..run.metrics import turn_ttfts

if TYPE_CHECKING:
    from ..session import TestRecord

# The same key metrics as the HTML overview table.
COLUMNS = TABLE_METRICS


def build_table(tests: Sequence[TestRecord]) -> Table:
    table = Table(title="pytest-llmperf", title_justify="left", show_lines=False)
    table.add_column("test", overflow="fold", min_width=28)
    table.add_column("result")
    table.add_column("req", justify="right")
    table.add_column("err", justify="right")
    # Energy and cost columns only when some run has them.
    columns = with_optional(COLUMNS, (r.summary for t in tests for r in t.runs))
    for _, title in columns:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("thresholds", justify="right")
    for test in tests:
        for i, run in enumerate(test.runs):
            s = run.summary
            checks = run.client.get("checks", [])
            passed = sum(1 for c in checks if c["passed"])
            style = "green" if test.outcome == "passed" else "red"
            name = test.nodeid.split("::", 1)[-1]
            if len(test.runs) > 1:
                name += f" [run {i + 1}]"
            errors = s.get("errors") or 0
            table.add_row(
                name,
                f"[{style}]{test.outcome}[/{style}]",
                compact(s.get("requests")),
                f"[red]{errors}[/red]" if errors else "0",
                *(compact(s.get(key)) for key, _ in columns),
                f"{passed}/{len(checks)}" if checks else "-",
            )
    return table


def render_text(tests: Sequence[TestRecord], width: int = 160, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard"
                      if color else None, highlight=False)
    console.print(build_table(tests))
    for t in tests:  # multi-turn runs: per-turn TTFT and per-session figures
        for r in t.runs:
            turns = turn_ttfts(r.summary)
            if turns:
                s = r.summary
                console.print(
                    f"multi-turn {t.nodeid}: sessions {compact(s.get('sessions'))}, turns "
                    f"per session {compact(s.get('session_turns_mean'))}, session p50 "
                    f"{compact(s.get('session_duration_p50_s'))} s; TTFT p50 by turn (ms): "
                    + " / ".join(compact(x) for x in turns))
    warnings = [(t.nodeid, w) for t in tests for r in t.runs for w in r.warnings]
    warnings += [(t.nodeid, str(w)) for t in tests  # the stored gate's undecided changes
                 for w in ((t.comparison or {}).get("warnings") or [])]
    for nodeid, warning in warnings:
        console.print(f"[yellow]warning[/yellow] {nodeid}: {warning}")
    return buf.getvalue()


def render_summary(terminalreporter: Any, tests: Sequence[TestRecord]) -> None:
    tw = terminalreporter._tw
    terminalreporter.section("llmperf results")
    text = render_text(tests, width=max(200, tw.fullwidth), color=tw.hasmarkup)
    terminalreporter.write(text)
