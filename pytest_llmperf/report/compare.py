"""What ``llmperf compare`` shows: the terminal table (one row per test and metric with the
change, its interval, the p-value and the verdict), the Markdown summary (the session
report's style), the JUnit file (one test case per test, a failure for each regressed one)
and the HTML page (self-contained, in the session report's style)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..commits.compare import CompareOutcome
from ..formatting import num, pct
from ..verdict import stats
from .md import md_cell, md_code, md_text

PASS, FAIL, WARN = "✅", "❌", "⚠️"


def _interval(v: stats.MetricVerdict) -> str:
    if v.ci_low_pct is None or v.ci_high_pct is None:
        return "-"
    return f"{pct(v.ci_low_pct)} .. {pct(v.ci_high_pct)}"


def _p(v: stats.MetricVerdict) -> str:
    return "-" if v.p_value is None else f"{v.p_value:.3g}"


def _verdict(v: stats.MetricVerdict) -> str:
    return v.verdict + ("" if v.gated else " (not gated)")


def rows(outcome: CompareOutcome, every: bool = False) -> list[tuple[str, stats.MetricVerdict]]:
    """(node id, verdict) per test and metric, gated metrics first: the gated ones and the
    watched ones that warn, or with ``every`` all of them (HTML, JSON, JUnit)."""
    return [(n, v) for n, vs in sorted(outcome.tests.items())
            for v in sorted(vs, key=lambda v: not v.gated)
            if every or v.gated or v.verdict not in ("ok", "inconclusive")]


def render_table(outcome: CompareOutcome) -> str:
    """One row per test and metric: base, head, change, interval, p-value, verdict."""
    table = [("test", "metric", "base", "head", "change", "interval", "p", "verdict")]
    table += [(n, v.metric, num(v.baseline), num(v.current), pct(v.change_pct), _interval(v),
               _p(v), _verdict(v)) for n, v in rows(outcome)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {2, 3, 4, 5, 6}
    lines = []
    for r in table:
        cells = [f"{c:>{widths[i]}}" if i in right else f"{c:{widths[i]}}"
                 for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    tol = {v.tolerance_pct for _, v in rows(outcome) if v.gated}
    for nodeid in sorted(outcome.tests):  # issue 25: did HEAD's answers change
        outputs = outcome.outputs(nodeid)
        if outputs and outputs.get("compared"):
            lines.append(f"{nodeid}: {outputs.get('summary')}")
    lines.append("")
    lines.append(f"BASE {outcome.base.short} {outcome.base.subject}")
    lines.append(f"HEAD {outcome.head.short} {outcome.head.subject}")
    how = (f"up to {outcome.comparison.pairs} run pairs interleaved by request (one "
           f"session, both servers), alpha {outcome.opts.alpha:g} per test"
           if outcome.opts.served else
           f"{outcome.comparison.pairs} interleaved pairs (B H, H B, ...), alpha "
           f"{outcome.opts.alpha:g} split over {len(outcome.tests)} test(s)")
    lines.append(f"{how}, tolerance "
                 + ", ".join(f"{t:g}%" for t in sorted(tol)) + "; change is HEAD against "
                 "BASE (geometric mean of the paired ratios), interval at 1 - 2 alpha")
    return "\n".join(lines)


def render_markdown(outcome: CompareOutcome, html_link: str | None = None) -> str:
    """A summary for a pull-request comment or a CI step summary. Commit subjects and node ids
    are escaped (``md``): they render as text, never as HTML, a link or a mention."""
    mark = FAIL if outcome.regressed else PASS
    n_reg = len({n for n, _ in outcome.regressions()})
    title = (f"{n_reg}/{len(outcome.tests)} tests regressed" if outcome.regressed
             else f"no regression in {len(outcome.tests)} tests")
    lines = [f"### pytest-llmperf compare {mark} {title}", ""]
    comp = outcome.comparison
    lines.append(" · ".join([
        f"**BASE** {md_code(outcome.base.short)} {md_text(outcome.base.subject)}",
        f"**HEAD** {md_code(outcome.head.short)} {md_text(outcome.head.subject)}",
        f"**pairs** {comp.pairs} interleaved sessions",
        f"**alpha** {outcome.opts.alpha:g} ({comp.alpha_per_test:.3g} per test)",
    ]))
    lines += ["", "| test | metric | base | head | change | interval | p | verdict |",
              "|:--|:--|--:|--:|--:|--:|--:|:--|"]
    for n, v in rows(outcome):
        icon = {"regression": FAIL, "improvement": "🟢", "inconclusive": "❔",
                "warn": WARN}.get(v.verdict, PASS)
        cells = [md_code(n), md_text(v.metric), num(v.baseline), num(v.current),
                 pct(v.change_pct), _interval(v), _p(v), f"{icon} {_verdict(v)}"]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    if comp.left_out:
        lines.append("")
        lines += [f"> {WARN} left out (no results in every session): {md_code(n)}"
                  for n in comp.left_out]
    lines += ["", md_text(outcome.headline())]
    if html_link:
        lines += ["", f"Full report: {md_code(html_link)}"]
    return "\n".join(lines) + "\n"


def _classname(nodeid: str) -> tuple[str, str]:
    """pytest's JUnit names for a node id: ``a/t.py::C::test`` -> (``a.t.C``, ``test``)."""
    path, _, rest = nodeid.partition("::")
    parts = rest.split("::") if rest else [path]
    module = path[:-3] if path.endswith(".py") else path
    cls = ".".join([module.replace("/", "."), *parts[:-1]])
    return cls, parts[-1]


def render_junit(outcome: CompareOutcome) -> str:
    """JUnit XML: one test case per test compared, a failure for each regressed test, the
    metrics as properties; tests left out are skipped."""
    comp = outcome.comparison
    failed = {n for n, _ in outcome.regressions()}
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", {
        "name": "llmperf compare", "tests": str(len(outcome.tests) + len(comp.left_out)),
        "failures": str(len(failed)), "errors": "0", "skipped": str(len(comp.left_out)),
        "time": f"{outcome.elapsed_s:.3f}"})
    props = ET.SubElement(suite, "properties")
    for name, value in (("base", outcome.base.sha), ("head", outcome.head.sha),
                        ("pairs", str(comp.pairs)), ("alpha", f"{outcome.opts.alpha:g}"),
                        ("verdict", outcome.verdict)):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for nodeid, verdicts in sorted(outcome.tests.items()):
        cls, name = _classname(nodeid)
        case = ET.SubElement(suite, "testcase", {"classname": cls, "name": name, "time": "0"})
        cprops = ET.SubElement(case, "properties")
        for v in verdicts:
            for key, value in (("base", num(v.baseline)), ("head", num(v.current)),
                               ("change_pct", pct(v.change_pct)), ("p_value", _p(v)),
                               ("verdict", _verdict(v))):
                ET.SubElement(cprops, "property", {"name": f"{v.metric}.{key}", "value": value})
        if nodeid in failed:
            regressed = [v for v in verdicts if v.gated and v.verdict == "regression"]
            message = ("llmperf compare: regression against BASE "
                       f"{outcome.base.short}: " + "; ".join(
                           f"{v.metric} {num(v.baseline)} -> {num(v.current)} "
                           f"({pct(v.change_pct)}, interval {_interval(v)})" for v in regressed))
            failure = ET.SubElement(case, "failure", {"message": message,
                                                      "type": "llmperf.regression"})
            failure.text = "\n".join([message, *(f"  {v.describe()} -> {v.verdict}"
                                                 for v in verdicts if v.gated)])
    for nodeid in comp.left_out:
        cls, name = _classname(nodeid)
        case = ET.SubElement(suite, "testcase", {"classname": cls, "name": name, "time": "0"})
        ET.SubElement(case, "skipped", {"message": "no results in every session of BASE and "
                                                   "HEAD: not compared"})
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pytest-llmperf">
<title>pytest-llmperf compare {{ head.short }} vs {{ base.short }}</title>
<style>
{% include "report.css.j2" %}
</style>
</head>
<body>
{% set pill = PILL %}
<header>
  <h1>pytest-llmperf compare</h1>
  <p class="sub">BASE <span class="mono">{{ base.short }}</span> {{ base.subject }} ·
    HEAD <span class="mono">{{ head.short }}</span> {{ head.subject }}</p>
</header>
<section id="glance">
  <div class="cards">
    <div class="card {{ 'bad' if outcome.regressed else 'good' }}" id="glance-verdict">
      <div class="label">verdict</div>
      <div class="big">{{ "regression" if outcome.regressed else "no regression" }}</div>
      <div class="small">{{ regressed | length }} of {{ outcome.tests | length }} test(s)
        regressed</div>
    </div>
    <div class="card">
      <div class="label">pairs</div>
      <div class="big">{{ comp.pairs }}</div>
      <div class="small">interleaved sessions B H, H B, ... ·
        {{ "%.0f" % outcome.elapsed_s }} s</div>
    </div>
    <div class="card">
      <div class="label">alpha</div>
      <div class="big">{{ outcome.opts.alpha }}</div>
      <div class="small">{{ "%.3g" % comp.alpha_per_test }} per test (sign-flip test)</div>
    </div>
  </div>
  <p id="headline">{{ outcome.headline() }}</p>
  {% for n in comp.left_out %}
  <div class="alert warn">left out (no results in every session):
    <span class="mono">{{ n }}</span></div>
  {% endfor %}
</section>
<section id="comparison">
<table class="grid" id="compare-table">
  <thead><tr><th>test</th><th>metric</th><th class="num">base</th><th class="num">head</th>
    <th class="num">change</th><th class="num">interval</th><th class="num">p</th>
    <th>verdict</th></tr></thead>
  <tbody>
  {% for n, v in rows %}
  <tr class="{{ pill.get(v.verdict, '') }}" data-test="{{ n }}" data-metric="{{ v.metric }}" \
data-verdict="{{ v.verdict }}">
    <td class="mono">{{ n }}</td><td class="mono">{{ v.metric }}</td>
    <td class="num">{{ num(v.baseline) }}</td><td class="num">{{ num(v.current) }}</td>
    <td class="num">{{ pct(v.change_pct) }}</td><td class="num">{{ interval(v) }}</td>
    <td class="num">{{ p(v) }}</td>
    <td><span class="pill {{ pill.get(v.verdict, 'ok') }}">{{ verdict(v) }}</span></td>
  </tr>
  {% endfor %}
  </tbody>
</table>
<p class="legend">change: HEAD against BASE, the geometric mean of the paired ratios;
  interval at 1 - 2 alpha; p: the one-sided sign-flip p-value, joint over the gated
  metrics.</p>
</section>
<footer>pytest-llmperf compare · one self-contained file: no scripts, nothing loaded from the
  network</footer>
</body>
</html>
"""


def render_html(outcome: CompareOutcome) -> str:
    """One self-contained page in the session report's style."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([
            jinja2.DictLoader({"compare.html.j2": _HTML}),
            jinja2.PackageLoader("pytest_llmperf.report", "templates")]),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    return env.get_template("compare.html.j2").render(
        outcome=outcome, comp=outcome.comparison, base=outcome.base, head=outcome.head,
        rows=rows(outcome, every=True), regressed=sorted({n for n, _ in outcome.regressions()}),
        num=num, pct=pct, interval=_interval, p=_p, verdict=_verdict,
        PILL={'regression': 'bad', 'improvement': 'good', 'inconclusive': 'warn'})

