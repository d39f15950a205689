"""``llmperf nightly``: change points over the stored history, each with its commit range and
the bisect that pins it; exit 1 only for a regression not reported on an earlier night.

``cli/main.py`` calls ``add_parser(subparsers)``; the parser's ``func`` default is the
handler, which returns the exit status: 0 (no new regression), 1 (a new regression), 2 (bad
usage, an unreadable store, state file or output path: one line, no traceback).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from ..commits import bisect, nightly
from ..decision import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT
from ..files import ReportPathError, atomic_write_text, check_path, dumps, os_reason
from ..formatting import pct
from ..report import nightly as render
from ..report.nightly import issue_body, issue_title
from ..store import gitinfo


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``nightly`` on an argparse subparsers object; returns the new parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "nightly",
        help="change points over the stored history: regressions, their commits and bisect",
        description="For every profile, test and gated metric of the baseline store: the "
                    "series over the first-parent history of HEAD (every run of every commit "
                    "with a clean baseline), its change points with size, interval and "
                    "p-value, the last good and first bad commit, and the llmperf bisect "
                    "command that pins each regression. Exit 1 only when a regression was "
                    "not reported before (the state file remembers), 0 otherwise, 2 on bad "
                    "usage.")
    p.add_argument("--dir", help="baseline directory (default: baselines/ at the repository "
                   "root)")
    p.add_argument("--repo", metavar="DIR", help="the git repository whose history orders the "
                   "commits (default: the one that holds the store)")
    p.add_argument("--html", metavar="OUT", help="write the HTML page here")
    p.add_argument("--markdown", metavar="OUT", help="write the Markdown summary here")
    p.add_argument("--json", metavar="OUT", help="write the findings here as JSON")
    p.add_argument("--issues", metavar="DIR", help="write one issue per new regression here: "
                   "NN.title (its title) and NN.md (its body), for gh issue create/comment")
    p.add_argument("--state", metavar="FILE", help=f"the regressions already reported "
                   f"(default: {nightly.STATE_NAME} in the baseline directory)")
    p.add_argument("--bisect", action="store_true",
                   help="run llmperf bisect for each new regression and report its commit")
    p.add_argument("--bisect-pairs", type=int, default=None, metavar="N",
                   help="with --bisect: interleaved session pairs per comparison")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, metavar="A",
                   help=f"false-alarm rate per series (default {DEFAULT_ALPHA:g})")
    p.add_argument("--min-change-pct", type=float, default=DEFAULT_TOLERANCE_PCT, metavar="P",
                   help=f"smallest change reported, in percent (default "
                        f"{DEFAULT_TOLERANCE_PCT:g})")
    p.add_argument("--profile", help="only this profile id (or a prefix of it)")
    p.set_defaults(func=run)
    return p


def _error(err: TextIO, message: str) -> int:
    print(f"llmperf nightly: error: {message}", file=err)
    return 2


def run_bisects(report: nightly.NightlyReport, pairs: int | None, err: TextIO) -> None:
    """``llmperf bisect`` once per distinct (last good, first bad, arguments) of the new
    regressions; each finding gets ``bisect``: the commit it names, or why not."""
    done: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    for f in report.new_regressions:
        key = (f.last_good, f.first_bad, f.pytest_args)
        if key not in done:
            print(f"[nightly] bisecting {f.nodeid} {f.metric}: {f.bisect_command}", file=err,
                  flush=True)
            done[key] = _bisect_one(bisect, report, f, pairs, err)
        f.bisect = done[key]


def _bisect_one(bisect: Any, report: nightly.NightlyReport, f: nightly.Finding,
                pairs: int | None, err: TextIO) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmperf-nightly-") as tmp:
        out_json = Path(tmp) / "bisect.json"
        opts = bisect.Options(good=f.last_good, bad=f.first_bad, repo=Path(report.repo),
                              pytest_args=list(f.pytest_args), json_path=out_json)
        if pairs is not None:
            opts.pairs = pairs
        try:
            status = bisect.run(opts, out=io.StringIO(), err=err)
        except bisect.BisectError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "failed"
            return {"status": "error", "first_bad": None, "message": f"did not finish: {first}"}
        try:
            doc = json.loads(out_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
    found = (doc.get("first_bad") or {}) if isinstance(doc, dict) else {}
    if status == 0 and found.get("commit"):
        return {"status": "found", "first_bad": found["commit"],
                "subject": found.get("subject", ""),
                "message": f"first bad commit {found['commit'][:12]} {found.get('subject', '')}"
                           .rstrip()}
    return {"status": "not confirmed", "first_bad": None,
            "message": f"{f.first_bad[:12]} was not confirmed slower than {f.last_good[:12]} "
                       "by the paired sessions"}


def _summary(report: nightly.NightlyReport, out: TextIO) -> None:
    for f in report.findings:
        tag = f.kind + (" (new)" if f.kind == "regression" and f.new else
                        " (reported before)" if f.kind == "regression" else "")
        print(f"{tag}: {f.profile_id} {f.nodeid} {f.metric} {pct(f.change_pct)} "
              f"(p {f.p_value:.3g}) last good {f.last_good[:12]}, first bad "
              f"{f.first_bad[:12]}", file=out)
        if f.kind == "regression":
            print(f"  {f.bisect_command}", file=out)
            if f.args_note:
                print(f"  ({f.args_note})", file=out)
            if f.bisect:
                print(f"  bisect: {f.bisect['message']}", file=out)
    for s in report.too_short:
        print(f"too short: {s.profile_id} {s.nodeid} {s.metric}: {s.note}", file=out)
    print(f"{len(report.series)} series: {len(report.new_regressions)} new regression(s), "
          f"{len(report.regressions) - len(report.new_regressions)} reported before, "
          f"{len(report.improvements)} improvement(s), {len(report.too_short)} too short",
          file=out)


def write_issues(report: nightly.NightlyReport, directory: Path,
                 html_link: str | None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for old in [*directory.glob("[0-9][0-9].title"), *directory.glob("[0-9][0-9].md")]:
        old.unlink()  # an earlier night's issues, not this one's
    written = []
    for i, f in enumerate(report.new_regressions, 1):
        atomic_write_text(directory / f"{i:02d}.title", issue_title(f) + "\n")
        atomic_write_text(directory / f"{i:02d}.md", issue_body(f, html_link))
        written.append(directory / f"{i:02d}.md")
    return written


def run(args: argparse.Namespace, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    store_dir = Path(args.dir) if args.dir else gitinfo.default_baselines_dir()
    state_path = Path(args.state) if args.state else nightly.default_state_path(store_dir)
    if args.bisect_pairs is not None and args.bisect_pairs < 1:
        return _error(err, f"--bisect-pairs {args.bisect_pairs}: give 1 or more")
    try:
        for option, path in (("--html", args.html), ("--markdown", args.markdown),
                             ("--json", args.json), ("--state", str(state_path))):
            if path:
                check_path(option, path)
        if args.issues and Path(args.issues).exists() and not Path(args.issues).is_dir():
            raise ReportPathError(f"--issues {args.issues}: not a directory")
        reported = nightly.load_state(state_path)
        report = nightly.analyse(store_dir, repo=args.repo, alpha=args.alpha,
                                 min_change_pct=args.min_change_pct, profile=args.profile,
                                 reported=reported)
    except (ReportPathError, nightly.NightlyError) as exc:
        return _error(err, str(exc))
    for note in report.notes:
        print(f"llmperf nightly: warning: {note}", file=err)
    if args.profile and not report.series:
        return _error(err, f"no baselines of profile {args.profile} in {store_dir}")
    if args.bisect and report.new_regressions:
        run_bisects(report, args.bisect_pairs, err)
    _summary(report, out)
    try:
        if args.html:
            atomic_write_text(args.html, render.render_html(report))
            print(f"HTML report: {args.html}", file=out)
        if args.markdown:
            atomic_write_text(args.markdown, render.render_markdown(report, args.html))
            print(f"Markdown summary: {args.markdown}", file=out)
        if args.json:
            atomic_write_text(args.json, dumps(report.to_dict()))
            print(f"JSON: {args.json}", file=out)
        if args.issues:
            written = write_issues(report, Path(args.issues), args.html)
            print(f"issues: {len(written)} in {args.issues}", file=out)
        nightly.save_state(state_path, nightly.state_entries(report, reported))
    except OSError as exc:
        return _error(err, f"cannot write: {os_reason(exc)}")
    return 1 if report.new_regressions else 0
