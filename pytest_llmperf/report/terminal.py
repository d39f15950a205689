"""The end-of-session terminal output, from the results document's tests (``results.py``):
one table row per run with the key metrics and the verdict (``render_text``), the stored
gate's lines per test (``gate_lines``) and the ``--llmperf-ab`` table (``ab_lines``)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..formatting import compact, num, pct
from ..metric_table import TABLE_METRICS, with_optional
from ..run.metrics import turn_ttfts
from ..verdict.attribution import attribution_lines

Test = Mapping[str, Any]  # one entry of the results document's "tests"

# The same key metrics as the HTML overview table.
COLUMNS = TABLE_METRICS


def build_table(tests: Sequence[Test]) -> Table:
    table = Table(title="pytest-llmperf", title_justify="left", show_lines=False)
    table.add_column("test", overflow="fold", min_width=28)
    table.add_column("result")
    table.add_column("req", justify="right")
    table.add_column("err", justify="right")
    # Energy and cost columns only when some run has them.
    columns = with_optional(COLUMNS, (r["summary"] for t in tests for r in t["runs"]))
    for _, title in columns:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("thresholds", justify="right")
    for test in tests:
        runs = test["runs"]
        for i, run in enumerate(runs):
            s = run["summary"]
            checks = (run.get("client") or {}).get("checks") or []
            passed = sum(1 for c in checks if c["passed"])
            outcome = test["outcome"]
            style = "green" if outcome == "passed" else "red"
            name = test["nodeid"].split("::", 1)[-1]
            if len(runs) > 1:
                name += f" [run {i + 1}]"
            errors = s.get("errors") or 0
            table.add_row(
                name,
                f"[{style}]{outcome}[/{style}]",
                compact(s.get("requests")),
                f"[red]{errors}[/red]" if errors else "0",
                *(compact(s.get(key)) for key, _ in columns),
                f"{passed}/{len(checks)}" if checks else "-",
            )
    return table


def _paired(test: Test, ab: bool) -> bool:
    """Whether a paired A/B decides the test (an --llmperf-ab session, or a test with an A/B
    verdict): the stored gate's undecided lines are then left out."""
    return ab or bool(test.get("ab"))


def render_text(tests: Sequence[Test], width: int = 160, color: bool = False,
                ab: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard"
                      if color else None, highlight=False)
    console.print(build_table(tests))
    for t in tests:  # multi-turn runs: per-turn TTFT and per-session figures
        for r in t["runs"]:
            turns = turn_ttfts(r["summary"])
            if turns:
                s = r["summary"]
                console.print(
                    f"multi-turn {t['nodeid']}: sessions {compact(s.get('sessions'))}, turns "
                    f"per session {compact(s.get('session_turns_mean'))}, session p50 "
                    f"{compact(s.get('session_duration_p50_s'))} s; TTFT p50 by turn (ms): "
                    + " / ".join(compact(x) for x in turns))
    for t in tests:  # model mixes (Workload.models): each model's requests and TTFT p50
        for r in t["runs"]:
            mix = r.get("by_model") or {}
            if mix:
                console.print(f"model mix {t['nodeid']}: " + "; ".join(
                    f"{m} {compact(s.get('requests'))} req, TTFT p50 "
                    f"{compact(s.get('ttft_p50_ms'))} ms, errors {compact(s.get('errors'))}"
                    for m, s in sorted(mix.items())))
    warnings = [(t["nodeid"], str(w)) for t in tests for r in t["runs"]
                for w in r.get("warnings") or []]
    warnings += [(t["nodeid"], str(w)) for t in tests  # the stored gate's undecided changes
                 if not _paired(t, ab)
                 for w in ((t.get("comparison") or {}).get("warnings") or [])]
    warnings += [(t["nodeid"], str(w)) for t in tests  # passes that could not see (issue 25)
                 if not _paired(t, ab)
                 for w in ((t.get("comparison") or {}).get("blind") or [])]
    for nodeid, warning in warnings:
        console.print(f"[yellow]warning[/yellow] {nodeid}: {warning}")
    return buf.getvalue()


def render_summary(terminalreporter: Any, tests: Sequence[Test], ab: bool = False) -> None:
    tw = terminalreporter._tw
    terminalreporter.section("llmperf results")
    text = render_text(tests, width=max(200, tw.fullwidth), color=tw.hasmarkup, ab=ab)
    terminalreporter.write(text)


START_BASELINE_HINT = ("start one with `pytest --llmperf --llmperf-save` on a committed tree "
                       "(`--llmperf-store` shares it between machines)")


def _relative(text: str, root: Path | None) -> str:
    """``text`` with the absolute ``root`` written as ``.`` (paths relative to the rootdir)."""
    if root is None or str(root) in ("", "/", "."):
        return text
    return text.replace(f"{root}{os.sep}", f".{os.sep}").replace(str(root), ".")


def gate_lines(tests: Iterable[Test], ab: bool = False, *, root: Path | None = None,
               saving: bool = False) -> list[str]:
    """Terminal lines: per test, the comparison status and its gated or flagged metrics.

    Where a paired A/B decides (``ab``: an --llmperf-ab session, or a test with A/B
    verdicts) the stored gate's undecided warnings and inconclusive metrics are left out, and
    the comparison's status line too when nothing decided remains. Paths under ``root`` (the
    rootdir) are shown relative to it. When no test has a baseline, for the same reason, that
    is one line for the session, with how to start one (unless this session is ``saving``)."""
    tests = list(tests)
    bare = _no_baseline_message(tests, ab)
    if bare is not None and len(tests) > 1:
        hint = "" if saving else f"; {START_BASELINE_HINT}"
        return [f"no baseline for any of the {len(tests)} tests - {_relative(bare, root)}{hint}"]
    lines: list[str] = []
    for test in tests:
        comp = test.get("comparison")
        paired = _paired(test, ab)
        shown = _shown_metrics(comp, paired)
        if comp and (shown or not paired):
            lines.append(f"{test['nodeid']}: {comp.get('status')}"
                         + (f" - {_relative(comp['message'], root)}"
                            if comp.get("message") else ""))
            for warning in [] if paired else comp.get("warnings", None) or []:
                lines.append(f"  WARNING {warning}")
            for warning in [] if paired else comp.get("blind", None) or []:  # issue 25
                lines.append(f"  WARNING {warning}")
            for m in shown:
                change = m.get("change_pct")
                text = f"  {m['metric']}: {m['verdict']}"
                if change is not None:
                    text += (f", {num(m.get('current'))} vs {num(m.get('baseline'))} "
                             f"({change:+.1f}%")
                    if m.get("ci_low_pct") is not None:
                        text += f", interval {m['ci_low_pct']:+.1f}%..{m['ci_high_pct']:+.1f}%"
                    if isinstance(m.get("mde_pct"), int | float):  # issue 25: power
                        text += f", MDE {m['mde_pct']:.1f}%"
                    text += ")"
                lines.append(text)
            lines += attribution_lines(comp.get("attribution"))
        for entry in test.get("ab") or []:
            lines.append(f"{test['nodeid']}: A/B {entry.get('message', '')}")
            block = entry.get("attribution")
            lines += attribution_lines(block if isinstance(block, Mapping) else None)
    return lines


def _shown_metrics(comp: Mapping[str, Any] | None, paired: bool) -> list[Mapping[str, Any]]:
    return [m for m in (comp or {}).get("metrics", None) or []
            if not (paired and m.get("verdict") == "inconclusive")
            and not (not m.get("gated") and m.get("verdict") in ("ok", "inconclusive"))]


def _no_baseline_message(tests: Sequence[Test], ab: bool) -> str | None:
    """The message every test's comparison has when none has a baseline, for one reason, and
    nothing else to show (no metric, warning or A/B); else None."""
    messages = set()
    for test in tests:
        comp = test.get("comparison")
        if (not comp or comp.get("status") != "no baseline" or test.get("ab")
                or comp.get("warnings") or _shown_metrics(comp, _paired(test, ab))):
            return None
        messages.add(str(comp.get("message") or ""))
    return messages.pop() if len(messages) == 1 else None


def ab_lines(tests: Iterable[Test]) -> list[str]:
    """Per test and metric: A, B, the change of B against A, its interval and the verdict."""
    rows: list[tuple[str, ...]] = []
    heads: list[str] = []
    for test in tests:
        for entry in test.get("ab") or []:
            heads.append(f"{test['nodeid']}: {entry.get('message', '')}")
            outputs = entry.get("outputs")  # issue 25: B's answers against A's
            if isinstance(outputs, Mapping) and outputs.get("compared"):
                heads.append(f"  {outputs.get('summary')}")
            for m in entry.get("metrics") or []:
                if not m.get("gated") and m.get("verdict") in ("ok", "inconclusive"):
                    continue
                lo, hi = m.get("ci_low_pct"), m.get("ci_high_pct")
                interval = "-" if lo is None or hi is None else f"{pct(lo)} .. {pct(hi)}"
                mde = m.get("mde_pct")  # issue 25: what the comparison could see
                rows.append((test["nodeid"], str(m.get("metric")), num(m.get("baseline")),
                             num(m.get("current")), pct(m.get("change_pct")), interval,
                             f"{mde:.1f}%" if isinstance(mde, int | float) else "-",
                             str(m.get("verdict")) + ("" if m.get("gated") else
                                                      " (not gated)")
                             + (" (blind)" if m.get("blind") else "")))
    if not heads:
        return []
    table = [("test", "metric", "A", "B", "change", "interval", "MDE", "verdict"), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(f"{c:>{widths[i]}}" if 2 <= i <= 6 else f"{c:{widths[i]}}"
                       for i, c in enumerate(r)).rstrip() for r in table]
    return [*lines, "", *heads]


# Where an engine record (``Engine.info()``) keeps its dtype and its context length: what the
# engine ended up with first, then what it was asked for.
_DTYPE_KEYS = ("effective_dtype", "dtype")
_CONTEXT_KEYS = ("effective_max_model_len", "n_ctx", "max_model_len", "max_seq_len")
_SHOWN = frozenset({*_DTYPE_KEYS, *_CONTEXT_KEYS, "engine_args", "vllm_quantization"})


def _setting_text(value: Any) -> str:
    import json

    return (json.dumps(value, sort_keys=True, separators=(", ", ": "))
            if isinstance(value, (dict, list)) else str(value))


def engine_line(engine: Mapping[str, Any]) -> str:
    """One engine record as the settings it ran with: kind and version (and device), model,
    dtype, context length, engine arguments, then its other settings; a started server's
    command line (which carries them) for a served engine."""
    settings = dict(engine.get("settings") or {})
    head = str(engine.get("kind") or "engine")
    version = engine.get("version")
    if version and version != "unknown":
        head += f" {version}"
    device = engine.get("device") or engine.get("gpu")
    if device:
        head += f" on {device}"
    model = f"model {engine.get('model') or '-'}"
    if engine.get("model_desc"):
        model += f" ({engine['model_desc']})"
    if engine.get("url"):
        model += f" at {engine['url']}"
    parts = [model]
    dtype = next((settings[k] for k in _DTYPE_KEYS if settings.get(k)), None)
    if dtype:
        parts.append(f"dtype {dtype}")
    context = next((settings[k] for k in _CONTEXT_KEYS if settings.get(k)),
                   engine.get("max_model_len"))
    if context or settings:  # a served engine's context is on its server's command line
        parts.append(f"context {context}" if context else "context: the model's own")
    if "engine_args" in settings:
        args = settings.get("engine_args")
        parts.append(f"engine args {_setting_text(args) if args else 'none'}")
    rest = [f"{k} {_setting_text(v)}" for k, v in sorted(settings.items())
            if k not in _SHOWN and v is not None]
    rest += [f"{k} {engine[k]}" for k in ("endpoint", "tokenizer") if engine.get(k)]
    if rest:
        parts.append(", ".join(rest))
    server = engine.get("server")
    if isinstance(server, Mapping) and server.get("command"):
        parts.append(f"started server ({server.get('recipe') or 'custom'}): "
                     f"{server['command']}")
    return f"{head}: " + "; ".join(parts)


def engine_lines(tests: Iterable[Test]) -> list[str]:
    """The "llmperf engines" section: one line per distinct engine the session's runs used
    (identical settings once), in the order first used."""
    lines: list[str] = []
    for test in tests:
        for run in test.get("runs") or []:
            engine = run.get("engine") if isinstance(run, Mapping) else None
            if engine:
                line = engine_line(engine)
                if line not in lines:
                    lines.append(line)
    return lines
