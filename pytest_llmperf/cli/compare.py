"""``llmperf compare BASE [HEAD] -- [pytest args]``: the paired PR gate.

``cli/main.py`` calls ``add_parser(subparsers)``; the parser's ``func`` default is the handler,
which returns the exit status: 0 (no regression), 1 (HEAD regressed against BASE), 2 (bad
usage or a broken set-up: a bad ref, impossible ``--pairs``/``--alpha``, an unwritable
output, a ``--served`` command that cannot be split or a server that does not speak HTTP, a
session that produced no numbers; one line, then a session's output tail when there is one).
An unexpected exception is exit 2 too (its traceback, then one line): never 1, "regressed".

Outputs: the terminal table (stdout: one row per test and metric with the change, its
interval, the p-value and the verdict), progress lines on stderr while the sessions run, and
on request ``--json`` (``commits.compare.result_document``), ``--markdown`` (the session
report's style, also appended to ``$GITHUB_STEP_SUMMARY`` when set), ``--junit`` (one test
case per test, a failure for each regressed one) and ``--html`` (one self-contained page in
the session report's style).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from ..commits.compare import (
    DEFAULT_PAIRS,
    CompareError,
    CompareOptions,
    CompareOutcome,
    result_document,
    run,
    run_served,
)
from ..decision import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT
from ..files import atomic_write_text, dumps, os_reason
from ..report.compare import render_html, render_junit, render_markdown, render_table
from ..report.markdown import append_step_summary
from ..verdict.attribution import attribution_lines


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``compare`` on an argparse subparsers object; returns the new parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "compare", help="the paired PR gate: BASE and HEAD as interleaved pytest sessions",
        usage="%(prog)s BASE [HEAD] [options] [-- PYTEST_ARG ...]",
        description="Check out BASE and HEAD (default: the current HEAD commit) in temporary "
                    "git worktrees, run them as interleaved pytest --llmperf sessions (B H, "
                    "H B, ...) and decide each test with the paired sign-flip gate. Exit 0: "
                    "no regression; 1: HEAD regressed; 2: bad usage or a session that "
                    "produced no numbers.")
    p.add_argument("base", metavar="BASE", help="the reference commit, branch or tag (e.g. "
                   "the merge base with the target branch)")
    p.add_argument("head", metavar="HEAD", nargs="?", default="HEAD",
                   help="the commit to judge (default: HEAD; uncommitted changes are not "
                        "measured)")
    p.add_argument("pytest_args", metavar="PYTEST_ARG", nargs="*", default=[],
                   help="arguments for pytest in each session, after -- (test paths, -k ...)")
    p.add_argument("--repo", metavar="DIR",
                   help="the git repository (default: the one around the current directory)")
    p.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, metavar="N",
                   help=f"interleaved session pairs (default {DEFAULT_PAIRS})")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, metavar="A",
                   help=f"false-alarm rate of the comparison, split over the tests (default "
                        f"{DEFAULT_ALPHA:g})")
    p.add_argument("--max-regression-pct", type=float, default=None, metavar="P",
                   help="tolerance in percent (default: each test's marker, else "
                        f"{DEFAULT_TOLERANCE_PCT:g})")
    p.add_argument("--python", metavar="PY", help="the Python that runs pytest (default: "
                   "this one)")
    p.add_argument("--keep-worktrees", action="store_true",
                   help="keep the worktrees and session results (for debugging)")
    p.add_argument("--served", metavar="CMD",
                   help="both sides are served engines: start CMD ({port} filled in) in "
                        "BASE's and HEAD's worktrees side by side and run ONE pytest session "
                        "in HEAD's worktree that sends every request to both "
                        "(--llmperf-url BASE --llmperf-ab url=HEAD): interleaved by request; "
                        "--pairs is not used (each test's paired A/B makes 5 to 10 pairs)")
    p.add_argument("--server-timeout", type=float, default=120.0, metavar="S",
                   help="with --served: seconds to wait for both servers (default 120)")
    p.add_argument("--json", metavar="FILE", help="write the outcome here as JSON")
    p.add_argument("--html", metavar="FILE", help="write an HTML page here")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown summary here")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    p.set_defaults(func=cmd_compare)
    return p


def _path(raw: str | None) -> Path | None:
    return Path(raw) if raw else None


def cmd_compare(args: argparse.Namespace, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    opts = CompareOptions(
        base=args.base, head=args.head, repo=Path(args.repo) if args.repo else Path.cwd(),
        pairs=args.pairs, alpha=args.alpha, max_regression_pct=args.max_regression_pct,
        python=args.python or sys.executable, keep_worktrees=args.keep_worktrees,
        pytest_args=list(args.pytest_args), json_path=_path(args.json),
        html_path=_path(args.html), markdown_path=_path(args.markdown),
        junit_path=_path(args.junit), served=args.served,
        server_timeout=args.server_timeout)
    try:
        outcome = run_served(opts, err=err) if opts.served else run(opts, err=err)
        write_outputs(outcome)
    except CompareError as exc:
        print(f"llmperf: error: {exc}", file=err)
        return 2
    except Exception as exc:  # a bug, not a verdict: Python's own exit status 1 says "regressed"
        traceback.print_exc(file=err)
        print(f"llmperf: error: internal error ({type(exc).__name__}: {exc}); no verdict "
              "(exit 2)", file=err)
        return 2
    print(outcome.headline(), file=out)
    print("", file=out)
    print(render_table(outcome), file=out)
    for nodeid in outcome.comparison.left_out:
        print(f"left out (no results in every session): {nodeid}", file=out)
    for nodeid, changes in sorted(outcome.comparison.workload_changed.items()):
        print(f"workload changed, not compared: {nodeid} ({'; '.join(changes)})", file=out)
    for nodeid in sorted(outcome.tests):
        lines = attribution_lines(outcome.comparison.attribution(nodeid))
        if lines:
            print(f"{nodeid}:", file=out)
            print("\n".join(lines), file=out)
    return 1 if outcome.regressed else 0


def write_outputs(outcome: CompareOutcome) -> None:
    """Every output asked for; CompareError naming the option when one cannot be written."""
    opts = outcome.opts
    html_link = str(opts.html_path) if opts.html_path else None
    texts: list[tuple[str, Path | None, Any]] = [
        ("--json", opts.json_path, lambda: dumps(result_document(outcome))),
        ("--markdown", opts.markdown_path, lambda: render_markdown(outcome, html_link)),
        ("--junit", opts.junit_path, lambda: render_junit(outcome)),
        ("--html", opts.html_path, lambda: render_html(outcome)),
    ]
    for option, path, make in texts:
        if path is None:
            continue
        try:
            atomic_write_text(path, make())
        except OSError as exc:
            raise CompareError(f"{option} {path}: cannot write: {os_reason(exc)}") from None
    try:
        append_step_summary(render_markdown(outcome, html_link))
    except OSError as exc:
        raise CompareError(f"$GITHUB_STEP_SUMMARY: cannot append: {os_reason(exc)}") from None
