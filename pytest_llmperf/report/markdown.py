"""A compact Markdown table for pull-request comments and CI step summaries.

``--llmperf-markdown PATH`` writes it; when ``GITHUB_STEP_SUMMARY`` is set (GitHub Actions),
the same text is appended to that file so it shows on the job's summary page. Text that comes
from the results (node ids, labels, engines, warnings, profile ids) is escaped by ``md``: it
renders as text, never as HTML, a link or a mention.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping
from pathlib import Path

from ..formatting import display, num, pct
from ..metric_table import MARKDOWN_METRICS, SECTIONS, with_optional
from .md import md_cell, md_code, md_text
from .model_table import COLUMNS as MODEL_COLUMNS
from .view import ComparisonRow, Report, TestView, power_cells

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
COLUMNS = MARKDOWN_METRICS
PASS, FAIL, WARN = "✅", "❌", "⚠️"


def cell(text: object) -> str:
    """Safe Markdown as a table cell: one line, no ``|`` that ends the cell (``md.md_cell``)."""
    return md_cell(str(text))


def _median(test: TestView, key: str) -> str:
    values = [s[key] for s in test.summaries if isinstance(s.get(key), int | float)]
    return display(float(statistics.median(values))) if values else "-"


def _thresholds(test: TestView) -> str:
    if not test.checks:
        return "-"
    failed = test.checks_failed
    total = len(test.checks)
    if not failed:
        return f"{PASS} {total}/{total}"
    names: list[str] = []
    for c in failed:
        op = ">" if c.op == "≤" else "<"
        name = md_text(c.name)
        text = (f"{name} not measured" if c.measured == "-"
                else f"{name} {md_text(c.measured)} {op} {md_text(c.limit)}")
        if text not in names:
            names.append(text)
    return f"{FAIL} {total - len(failed)}/{total}: " + "; ".join(names)


def _change(row: ComparisonRow) -> str:
    """A comparison row's metric and change ("ttft_p50_ms +21.2%"), escaped."""
    return f"{md_text(row.metric)} {md_text(row.change)}"


def _baseline(test: TestView) -> str:
    if not test.comparison and test.hidden_inconclusive:  # a paired A/B decides instead
        return test.baseline_verdict[1]  # our own words
    if test.regressions:
        return f"{FAIL} " + "; ".join(_change(r) for r in test.regressions)
    if test.gate == "regression":  # against the last clean baseline: the message says so
        return f"{FAIL} regression vs the last clean baseline"
    if test.gate_warnings:  # an undecided change beyond the tolerance
        return f"{WARN} warning: " + "; ".join(md_text(w) for w in test.gate_warnings)
    if test.comparison:
        warned = [r for r in test.comparison if r.verdict == "warn"]
        if warned:
            return f"{WARN} " + "; ".join(_change(r) for r in warned)
        gated = [r for r in test.comparison if r.gated and r.change != "-"]
        # Issue 25: each gated change with the smallest change it could have detected.
        shown = ", ".join(_change(r) + (f" (MDE {md_text(r.mde)})" if r.mde != "-" else "")
                          for r in gated[:3])
        verdicts = {r.verdict for r in gated}
        if "inconclusive" in verdicts:
            mark, word = "❔", "inconclusive"
        elif "improvement" in verdicts:
            mark, word = "🟢", "improvement"
        elif any(r.blind for r in gated):
            mark, word = WARN, "no regression, blind"
        else:
            mark, word = PASS, "no regression"
        return f"{mark} {word}: {shown}" if shown else f"{mark} {word}"
    return md_text(test.comparison_status) or "-"


AB_MARK = {"bad": FAIL, "good": "🟢", "ok": PASS, "warn": "❔"}


def _ab(test: TestView) -> str:
    """The test's paired A/B verdicts and their headline changes ("❌ regression:
    output_tps -70.0%")."""
    return "; ".join(f"{AB_MARK.get(css, '')} " + (f"{md_text(label)}: " if label else "")
                     + md_text(verdict) + (f": {md_text(changes)}" if changes else "")
                     for css, verdict, changes, label in test.ab_verdicts) or "-"


def render_markdown(report: Report, html_link: str | None = None) -> str:
    g = report.glance
    status = FAIL if (g.failed or g.regression_count) else PASS
    lines = [
        f"### pytest-llmperf {status} {g.passed}/{g.tests} tests passed",
        "",
    ]
    facts = [
        f"**thresholds** {g.thresholds_passed}/{g.thresholds_passed + g.thresholds_failed} "
        "passed",
        f"**regressions** {g.regression_count}"
        + (f" ({len(g.ab_regressions)} in paired A/B)" if g.ab_tests else ""),
        "**baseline** " + (", ".join(md_code(c) for c in g.baseline_commits)
                           if g.baseline_commits else "none"),
    ]
    if g.profiles:
        facts.append("**profile** " + ", ".join(md_code(p) for p in g.profiles))
    if g.engines or g.models:
        facts.append(", ".join(md_text(e) for e in g.engines + g.models))
    if g.hardware:
        facts.append("; ".join(md_text(h) for h in g.hardware))
    lines.append(" · ".join(facts))
    lines.append("")
    if not report.tests:
        lines.append("_No llmperf results in this session (marked tests run with --llmperf)._")
        return "\n".join(lines) + "\n"
    # Energy and cost columns only when some run has them.
    columns = with_optional(COLUMNS, (s for t in report.tests for s in t.summaries))
    with_ab = report.has_ab  # an A/B column only when some test has a paired A/B
    header = ["test", "result", *(title for _, title in columns), "thresholds", "vs baseline",
              *(["A/B"] if with_ab else [])]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":--", ":--", *("--:" for _ in columns), ":--", ":--",
                                 *([":--"] if with_ab else [])]) + "|")
    for t in report.tests:
        result = f"{FAIL if t.failed else PASS} {t.outcome}"
        runs = f" ({len(t.summaries)} runs, median)" if len(t.summaries) > 1 else ""
        row = [f"{md_code(t.name)}{runs}", result, *(_median(t, key) for key, _ in columns),
               _thresholds(t), _baseline(t), *([_ab(t)] if with_ab else [])]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    warnings = [(t.name, label, text) for t in report.tests for label, text in t.warnings]
    if warnings:
        lines.append("")
        for name, label, text in warnings:
            where = md_code(name) + (f" ({md_text(label)})" if label else "")
            lines.append(f"> {WARN} **client warning** {where}: {md_text(text)}")
    lines += _section_lines(report)
    lines += _multi_turn_lines(report)
    lines += _model_mix_lines(report)
    lines += _ab_lines(report)
    if html_link:
        lines.append("")
        lines.append(f"Full report: {md_code(html_link)}")
    return "\n".join(lines) + "\n"


def _section_lines(report: Report) -> list[str]:
    """The optional tables (metric_table.SECTIONS) some test has: one row per such test,
    the median over its runs of each figure present."""
    lines: list[str] = []
    for section in SECTIONS:
        columns = section.present(s for t in report.tests for s in t.summaries)
        tests = [t for t in report.tests if section.present(t.summaries)]
        if not columns or not tests:
            continue
        lines += ["", f"**{md_text(section.title)}**", "",
                  "| test | " + " | ".join(title for _, title in columns) + " |",
                  "|:--|" + "|".join("--:" for _ in columns) + "|"]
        lines += ["| " + " | ".join(cell(c) for c in [md_code(t.name),
                                                      *(_median(t, k) for k, _ in columns)])
                  + " |" for t in tests]
    return lines


def _multi_turn_lines(report: Report) -> list[str]:
    """Multi-turn runs: one row each, the per-session figures and TTFT p50 by turn."""
    rows = []
    for t in report.tests:
        for m in t.multi_turn:
            name = md_code(t.name) + (f" ({md_text(m.label)})" if m.label else "")
            rows.append([name, display(m.sessions), display(m.turns_mean),
                         display(m.duration_p50_s), display(m.duration_max_s),
                         " / ".join(display(r.ttft_p50_ms) for r in m.turns)])
    if not rows:
        return []
    return ["", "| multi-turn test | sessions | turns per session | session p50 s "
            "| session max s | TTFT p50 ms by turn (1 / 2 / ...) |",
            "|:--|--:|--:|--:|--:|:--|",
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def _model_mix_lines(report: Report) -> list[str]:
    """Model mixes (Workload.models): one row per test run and model, its share of the
    requests and its own figures (report/model_table.py)."""
    rows = []
    for t in report.tests:
        for m in t.model_mix:
            name = md_code(t.name) + (f" ({md_text(m.label)})" if m.label else "")
            for r in m.rows:
                share = display(round(100 * r.share, 1)) + "%" if r.share is not None else "-"
                rows.append([name, md_code(r.model), share,
                             *(display(r.values.get(key)) for key, _ in MODEL_COLUMNS)])
    if not rows:
        return []
    titles = " | ".join(title for _, title in MODEL_COLUMNS)
    return ["", f"| model mix test | model | share | {titles} |",
            "|:--|:--|--:|" + "--:|" * len(MODEL_COLUMNS),
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def _ab_lines(report: Report) -> list[str]:
    """Paired A/B verdicts (llmperf_bench.compare, --llmperf-ab): per test and metric, the
    change of B against A, its interval and the verdict."""
    rows = []
    for t in report.tests:
        for entry in t.ab:
            for m in entry.get("metrics") or []:
                if not m.get("gated") and m.get("verdict") in ("ok", "inconclusive"):
                    continue
                lo, hi = m.get("ci_low_pct"), m.get("ci_high_pct")
                interval = "-" if lo is None or hi is None else f"{pct(lo)} .. {pct(hi)}"
                mark = FAIL if m.get("verdict") == "regression" else (
                    WARN if m.get("verdict") == "warn" else PASS)
                rows.append([md_code(t.name), f"{md_text(entry.get('label_b', 'B'))} vs "
                             f"{md_text(entry.get('label_a', 'A'))}", md_text(m.get("metric")),
                             num(m.get("baseline")), num(m.get("current")),
                             pct(m.get("change_pct")), interval, power_cells(m)["mde"],
                             f"{mark} {md_text(m.get('verdict'))}"
                             + ("" if m.get("gated") else " (not gated)")
                             + (" (blind)" if m.get("blind") else "")])
    if not rows:
        return []
    return ["", "| test | A/B | metric | A | B | change | interval | MDE | verdict |",
            "|:--|:--|:--|--:|--:|--:|--:|--:|:--|",
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def append_step_summary(text: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Append to $GITHUB_STEP_SUMMARY when it is set; returns the path written, if any."""
    env = os.environ if environ is None else environ
    target = env.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
        fh.write("\n")
    return str(path)
