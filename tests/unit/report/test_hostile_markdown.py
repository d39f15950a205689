"""Commit subjects, node ids and other text from outside in Markdown (issue 23, class 9): the
nightly issue titles and bodies, its summary, ``llmperf compare``'s Markdown and the session's
summary escape what they did not write themselves (``report/md.py``), so a hostile subject or
node id renders as that text: no HTML, no link, no mention that notifies, no way out of a code
span, no line break in a title.
"""

from __future__ import annotations

import re

import pytest
from helpers import code_spans, results_doc, table_rows

from pytest_llmperf.commits.bisect import Commit, Comparison
from pytest_llmperf.commits.compare import CompareOptions, CompareOutcome
from pytest_llmperf.commits.nightly import Finding, NightlyReport, Series
from pytest_llmperf.report import compare as compare_report
from pytest_llmperf.report import markdown as session_markdown
from pytest_llmperf.report import nightly as nightly_report
from pytest_llmperf.report.md import ZWJ, md_block, md_cell, md_code, md_text, no_mention, one_line
from pytest_llmperf.report.view import build_report
from pytest_llmperf.verdict.stats import MetricVerdict

IMG = "<img src=x onerror=alert(1)>"
LINK = "[x](javascript:alert(1))"
MENTION = "@user"
BREAKOUT = "`` ` <b>out</b> `"
HOSTILE = [IMG, LINK, f"cc {MENTION} please", BREAKOUT, "line\n# heading\r\n- item",
           "a | b", "\x1b]0;title\x07 bell", "**bold** _it_ ~~s~~ ![i](y) <https://e.x>",
           "back\\slash\\` \\@user"]
SUBJECT = f"fix {IMG} see {LINK} cc {MENTION} ``` fence\n# not a heading"
NODE = f"tests/test_x.py::test_a[`` {IMG} {MENTION} {LINK} |\n# h]"


def rendered_safely(markdown: str) -> str:
    """The text outside code, after checking that nothing hostile is live there."""
    outside, _ = code_spans(markdown)
    assert "<img" not in outside and "<b>" not in outside and "<https" not in outside
    assert "](javascript:" not in outside and "](y)" not in outside
    assert not re.search(r"(?<!\\)@user", outside)  # every @ outside code has a ZWJ after it
    return outside


@pytest.mark.parametrize("text", HOSTILE)
def test_md_text_renders_as_the_text_and_nothing_else(text: str) -> None:
    out = md_text(text)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\x07" not in out
    assert "<" not in out and ">" not in out  # entities: never a tag or an autolink
    assert not re.search(r"(?<!\\)[`*\[\]()#|!~]", out)  # every markup mark escaped
    for m in re.finditer("_", out):  # "_" escaped, but inside a word (where it is inert)
        before, after = out[m.start() - 1: m.start()], out[m.end(): m.end() + 1]
        assert before == "\\" or (before.isalnum() and after.isalnum())
    assert "@" not in out.replace("@" + ZWJ, "")
    # Undoing the escapes gives the text back, on one line.
    plain = re.sub(r"\\(.)", r"\1", out.replace(ZWJ, "")).replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&amp;", "&")
    assert plain == one_line(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_md_code_is_one_span_the_text_cannot_close(text: str) -> None:
    out = md_code(text)
    outside, spans = code_spans(out)
    assert outside.strip() == "" and len(spans) == 1
    assert spans[0].strip() == one_line(text)


def test_md_block_keeps_the_lines_and_no_line_closes_it() -> None:
    text = "llmperf bisect a b -- '```'\n````\nx"
    out = md_block(text)
    outside, _ = code_spans(out)
    assert outside == ""
    assert out.splitlines()[1:-1] == text.splitlines()
    assert out.startswith("`````\n") and out.endswith("\n`````")


def test_md_cell_and_one_line() -> None:
    assert md_cell(md_code("a|b") + " " + md_text("c|d")) == "`a\\|b` c\\|d"
    assert one_line(" a\n\tb\x00c\u2028d  ") == "a b c d"
    assert no_mention("@a and b@c") == f"@{ZWJ}a and b@{ZWJ}c"
    assert md_code("") == "" and md_code("`x`") == "`` `x` ``"


def finding(subject: str = SUBJECT, nodeid: str = NODE) -> Finding:
    return Finding(profile_id="llama_cpp-@admin-<i>", nodeid=nodeid, metric="tpot_p50_ms",
                   kind="regression", last_good="a" * 40, last_good_subject=subject,
                   first_bad="b" * 40, first_bad_subject=subject, between=2, before=10.0,
                   after=12.0, change_pct=20.0, ci_low_pct=15.0, ci_high_pct=25.0,
                   p_value=0.001, index=5, order=9,
                   pytest_args=("--llmperf", "tests/test_x.py", "-k", "a ```\nb"),
                   args_recorded=True,
                   bisect={"status": "found", "first_bad": "b" * 40,
                           "message": f"first bad commit {'b' * 12} {subject}"})


def test_a_nightly_issue_with_a_hostile_subject_and_node_id() -> None:
    f = finding()
    title = nightly_report.issue_title(f)
    assert "\n" not in title and "\r" not in title
    assert MENTION not in title and f"@{ZWJ}user" in title
    assert title.startswith("llmperf regression: tpot_p50_ms of tests/test_x.py::test_a[")
    body = nightly_report.issue_body(f, "nightly <page>.html")
    outside = rendered_safely(body)
    assert "\n# " not in "\n" + outside and "# not a heading" not in outside.splitlines()
    assert not any(line.lstrip().startswith("#") and "h]" in line
                   for line in outside.splitlines())
    # The node id is one code span, whole: nothing of it leaked out of the span.
    _, spans = code_spans(body)
    assert one_line(NODE) in [s.strip() for s in spans]
    # The bisect command is in a code block no argument can close.
    assert "-k 'a ```\nb'" in body


def test_the_nightly_summary_with_a_hostile_subject_and_node_id() -> None:
    old, new = finding(), finding()
    old.new = False
    series = Series("p", NODE, "tpot_p50_ms", [], findings=[new, old])
    short = Series(f"p {MENTION}", NODE, "ttft_p50_ms", [], status="too short",
                   note=f"only 3 commits {IMG}")
    report = NightlyReport(store="s", repo="r", head="c" * 40, alpha=0.05, min_change_pct=2.0,
                           series=[series, short],
                           notes=[f"skipped baselines/{LINK}.json: {IMG} {MENTION}"])
    md = nightly_report.render_markdown(report, html_link="x.html")
    rendered_safely(md)
    rows = [r for r in table_rows(md.split("### Already reported", 1)[1])
            if not r[0].startswith("---")]
    assert [len(r) for r in rows] == [6, 6]
    assert rows[1][1] == "tpot_p50_ms" and rows[1][3] == "0.001"


def outcome() -> CompareOutcome:
    v = MetricVerdict(metric="tpot_p50_ms", baseline=10.0, current=12.0, change_pct=20.0,
                      ci_low_pct=15.0, ci_high_pct=25.0, verdict="regression", gated=True,
                      p_value=0.001)
    comp = Comparison(commit="h" * 40, subject=SUBJECT, reference="b" * 40, pairs=10,
                      alpha=0.05, alpha_per_test=0.05, tests={NODE: [v]},
                      left_out=[f"tests/t.py::left[{IMG} {MENTION}]"])
    return CompareOutcome(base=Commit("b" * 40, SUBJECT), head=Commit("h" * 40, SUBJECT),
                          comparison=comp, opts=CompareOptions(base="main"), elapsed_s=1.0)


def test_the_compare_markdown_with_a_hostile_subject_and_node_id() -> None:
    md = compare_report.render_markdown(outcome(), html_link="page.html")
    rendered_safely(md)
    header, row = table_rows(md)[:2]
    assert len(header) == len(row) == 9  # with the MDE column (issue 25)
    assert row[1] == "tpot_p50_ms" and row[-1] == "❌ regression"
    assert all(not line.startswith("#") or line.startswith("### pytest-llmperf compare")
               for line in md.splitlines())


def test_the_session_summary_with_a_hostile_node_id_and_warning() -> None:
    doc = results_doc()
    doc["tests"][0]["nodeid"] = NODE
    doc["tests"][0]["runs"][0].setdefault("warnings", []).append(f"server said {IMG} {LINK}")
    md = session_markdown.render_markdown(build_report(doc, with_plots=False))
    rendered_safely(md)
    rows = table_rows(md)
    assert all(len(r) == len(rows[0]) for r in rows)
