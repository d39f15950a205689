"""The nightly report (``llmperf nightly``): an HTML page, a Markdown summary and JSON of the
change points found over the stored history (``commits/nightly.py``).

The page has the session report's style (``report.css.j2``) and its trend plot
(``plots.trend_svg``): per test and metric, the commits oldest to newest with each commit's
runs as a range, the first commit of every change marked (red for a regression, orange for
an improvement) and every point naming its commit and subject in its tooltip. Regressed tests
come first, newest change first. Self-contained: inline CSS and SVG, no scripts, no fetches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from ..commits.nightly import Finding, NightlyReport, Series, ordered_series
from ..formatting import num, pct
from ..metric_table import BY_KEY
from . import plots
from .html import _environment
from .md import md_block, md_cell, md_code, md_text, no_mention, one_line


def _interval(f: Finding) -> str:
    if not (math.isfinite(f.ci_low_pct) and math.isfinite(f.ci_high_pct)):
        return "-"
    return f"{pct(f.ci_low_pct)}..{pct(f.ci_high_pct)}"


def _p(value: float) -> str:
    return f"{value:.3g}"


def _unit(metric: str) -> str:
    m = BY_KEY.get(metric)
    return f" {m.unit}" if m is not None and m.unit else ""


def trend(series: Series) -> str:
    """The series as the session report draws a trend: the median of each commit's runs, the
    range of its runs, the first commit of each change marked, commits named in tooltips."""
    marks = {f.index: f for f in series.findings}
    last_good = {f.index - 1: f for f in series.findings}
    points = []
    for i, p in enumerate(series.points):
        note = [p.subject] if p.subject else []
        note.append(f"{len(p.values)} run(s)")
        mark = ""
        if i in marks:
            f = marks[i]
            mark = "regression" if f.kind == "regression" else "jump"
            note.append(f"first {'bad' if f.kind == 'regression' else 'changed'} commit: "
                        f"{pct(f.change_pct)} ({_interval(f)}), p {_p(f.p_value)}")
        if i in last_good:
            note.append("last good commit" if last_good[i].kind == "regression"
                        else "last commit before the change")
        points.append(plots.TrendPoint(
            label=p.commit[:7], value=p.median, low=min(p.values), high=max(p.values),
            mark=mark, note="; ".join(note)))
    return plots.trend_svg(series.metric, points)


def _groups(report: NightlyReport) -> list[dict[str, Any]]:
    """Per (profile, test): its series (regressed metrics first) and whether it regressed."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for s in ordered_series(report):
        key = (s.profile_id, s.nodeid)
        group = out.setdefault(key, {"profile_id": s.profile_id, "nodeid": s.nodeid,
                                     "series": [], "regressed": False, "new": False,
                                     "anchor": f"t{len(out)}"})
        group["series"].append(s)
        group["regressed"] = group["regressed"] or s.regressed
        group["new"] = group["new"] or any(f.new for f in s.findings)
    return list(out.values())


def render_html(report: NightlyReport, title: str = "pytest-llmperf nightly") -> str:
    template = _environment().get_template("nightly.html.j2")
    return template.render(report=report, title=title, groups=_groups(report), trend=trend,
                           num=num, pct=pct, interval=_interval, p=_p, unit=_unit)


def _commit(sha: str, subject: str) -> str:
    """A commit for Markdown: its short hash in code, its subject as escaped text."""
    return f"{md_code(sha[:12])} {md_text(subject)}".rstrip()


def _finding_rows(findings: Sequence[Finding]) -> list[str]:
    rows = ["| test | metric | change (interval) | p | last good | first bad |",
            "|---|---|---|---|---|---|"]
    for f in findings:
        cells = [md_code(f.nodeid), f.metric,
                 f"{num(f.before)} → {num(f.after)}{_unit(f.metric)}, {pct(f.change_pct)} "
                 f"({_interval(f)})", _p(f.p_value), md_code(f.last_good[:12]),
                 _commit(f.first_bad, f.first_bad_subject)]
        rows.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return rows


def finding_markdown(f: Finding) -> str:
    """One regression, for an issue: what changed, between which commits, and the bisect.
    Every text from the store or the history (node id, profile, subjects, arguments) is
    escaped (``md``): it renders as text, never as HTML, a link or a mention."""
    lines = [
        f"**{f.metric}** of {md_code(f.nodeid)} (profile {md_code(f.profile_id)}) "
        f"changed by **{pct(f.change_pct)}** (interval {_interval(f)}, p {_p(f.p_value)}): "
        f"{num(f.before)} → {num(f.after)}{_unit(f.metric)}.",
        "",
        f"- last good: {_commit(f.last_good, f.last_good_subject)}",
        f"- first bad: {_commit(f.first_bad, f.first_bad_subject)}"
        + (f" ({f.between} commit(s) without a baseline in between)" if f.between > 0 else ""),
        "",
        "Pin it with:",
        "",
        md_block(f.bisect_command),
    ]
    for note in (f.args_note, f.replay_note):
        if note:
            lines += ["", f"_{md_text(note)}._"]
    if f.bisect is not None:
        lines += ["", f"Bisect: {md_text(f.bisect.get('message', ''))}"]
    return "\n".join(lines)


def render_markdown(report: NightlyReport, html_link: str | None = None) -> str:
    """A summary fit for an issue or a chat message."""
    new = report.new_regressions
    old = [f for f in report.regressions if not f.new]
    lines = ["## pytest-llmperf nightly", ""]
    head = report.head[:12] or "-"
    lines.append(f"{len(report.series)} series up to {md_code(head)}: **{len(new)} new "
                 f"regression(s)**, {len(old)} already reported, "
                 f"{len(report.improvements)} improvement(s), "
                 f"{len(report.too_short)} too short to decide "
                 f"(alpha {report.alpha:g}, minimum change {report.min_change_pct:g}%).")
    if new:
        lines += ["", "### New regressions", ""]
        for f in new:
            lines += [finding_markdown(f), ""]
    if old:
        lines += ["", "### Already reported", "", *_finding_rows(old)]
    if report.improvements:
        lines += ["", "### Improvements", "", *_finding_rows(report.improvements)]
    if report.too_short:
        lines += ["", "### Too short to decide", ""]
        lines += [f"- {md_code(s.nodeid)} {s.metric} ({md_code(s.profile_id)}): "
                  f"{md_text(s.note)}" for s in report.too_short]
    if report.notes:
        lines += ["", "### Notes", ""] + [f"- {md_text(n)}" for n in report.notes]
    if html_link:
        lines += ["", f"Full report with the trends: {md_code(html_link)}"]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


TITLE_LIMIT = 200  # GitHub takes 256 characters


def issue_title(f: Finding) -> str:
    """The title of the issue one regression opens (or updates): stable per test and metric,
    so a later regression of the same metric comments on the open issue. One line (a title
    file is read whole), no mention that notifies, at most ``TITLE_LIMIT`` characters."""
    title = no_mention(one_line(f"llmperf regression: {f.metric} of {f.nodeid}"))
    return title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"


def issue_body(f: Finding, html_link: str | None = None) -> str:
    text = (f"### {f.metric} {pct(f.change_pct)} at {md_code(f.first_bad[:12])}\n\n"
            + finding_markdown(f))
    if html_link:
        text += f"\n\nThe nightly page: {md_code(html_link)}"
    return text + "\n"
