"""``llmperf report``: the HTML page (and Markdown table) from stored results and baselines.

For nightly jobs that run the suite in pieces (shards, several machines): each piece writes
``--llmperf-json``; this merges them into one page with the trend over ``baselines/``.
With no ``--json``, the page shows each profile's newest baseline and its trend.

``cli.py`` calls ``add_parser(subparsers)``; the parser's ``func`` default is the handler,
which returns the exit status (0 ok, 2 unusable input or output path, or results files that
are not the shards of one run, or two files holding the same test: see
``report/provenance.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..files import ReportPathError, atomic_write_text, check_path, dumps, os_reason
from ..report.html import render_html
from ..report.markdown import render_markdown
from ..report.provenance import ProvenanceError, check_disjoint
from ..report.view import (
    ReportInputError,
    build_report,
    check_baselines_dir,
    document_from_history,
    load_history,
    load_results,
)
from ..results import SCHEMA, SCHEMA_VERSION
from ..store import gitinfo

DEFAULT_BASELINES = "baselines"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on an argparse subparsers object; returns the new parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="build the HTML report from results JSON files and baselines",
        description="Build one self-contained HTML page (and optionally a Markdown table) "
                    "from results files written by pytest --llmperf-json, with the trend "
                    "of every test over the commits stored in the baselines directory.",
    )
    parser.add_argument("--html", metavar="OUT", help="write the HTML page here")
    parser.add_argument("--markdown", metavar="OUT", help="write the Markdown table here")
    parser.add_argument("--json", metavar="RESULTS", nargs="+", action="extend", default=[],
                        help="results file(s) from --llmperf-json; several are merged "
                             "(default: none, the newest baselines are shown)")
    parser.add_argument("--merged", metavar="OUT",
                        help="write the merged results (the --json files as one results "
                             "document: every test, the run's provenance, the sources) here")
    parser.add_argument("--allow-partial", action="store_true",
                        help="merge the shards given even when some of the run's shards are "
                             "missing (a warning names them; default: refuse, exit 2)")
    parser.add_argument("--baselines", metavar="DIR", default=None,
                        help=f"baselines directory for the trends (default: "
                             f"{DEFAULT_BASELINES}/ at the repository root, when it exists)")
    parser.add_argument("--title", default="pytest-llmperf report", help="page title")
    parser.set_defaults(func=run)
    return parser


def merged_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The merged results in the shape of one ``--llmperf-json`` file (so every reader of
    those reads it), with ``sources`` (the files merged) and ``hosts`` (each file's host)."""
    out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": doc.get("created", ""),
           "tests": doc["tests"], "sources": doc["sources"], "hosts": doc["hosts"],
           "host": doc["hosts"][0] if doc["hosts"] else {}}
    for key in ("provenance", "profile", "git", "warnings"):
        if doc.get(key):
            out[key] = doc[key]
    return out


def _nodeids(paths: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Each results file's node ids (files ``load_results`` has read and checked)."""
    out = []
    for raw in paths:
        try:
            tests = json.loads(Path(raw).read_text(encoding="utf-8")).get("tests") or []
        except (OSError, ValueError) as exc:  # changed since it was read
            raise ReportInputError(f"{raw}: cannot read it: {exc}") from None
        out.append((str(Path(raw)), [str(t.get("nodeid", "")) for t in tests
                                     if isinstance(t, dict) and t.get("nodeid")]))
    return out


def _error(stream: TextIO, message: str) -> int:
    print(f"llmperf report: error: {message}", file=stream)
    return 2


def run(args: argparse.Namespace, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if not args.html and not args.markdown and not args.merged:
        return _error(err, "nothing to write: give --html OUT, --markdown OUT and/or "
                           "--merged OUT")
    if args.merged and not args.json:
        return _error(err, "--merged OUT merges results files: give them with --json")
    try:
        for option, path in (("--html", args.html), ("--markdown", args.markdown),
                             ("--merged", args.merged)):
            if path:
                check_path(option, path)
        if args.baselines is not None:
            check_baselines_dir(args.baselines)
            baselines: Path | None = Path(args.baselines)
        else:
            default = gitinfo.default_baselines_dir()
            baselines = default if default.is_dir() else None
        history = load_history(baselines)
        if args.json:
            doc = load_results(args.json, allow_partial=args.allow_partial)
            if len(args.json) > 1:
                check_disjoint(_nodeids(args.json))
            for warning in doc.get("warnings", []):
                print(f"llmperf report: warning: {warning}", file=err)
        else:
            if not history.profiles:
                where = baselines or gitinfo.default_baselines_dir()
                return _error(err, f"no results given (--json RESULTS) and no baselines in "
                                   f"{where}")
            doc = document_from_history(history)
    except (ReportInputError, ReportPathError, ProvenanceError) as exc:
        return _error(err, str(exc))
    report = build_report(doc, history, title=args.title, with_plots=bool(args.html))
    for note in report.notes:
        print(f"llmperf report: warning: skipped {note}", file=err)
    try:
        if args.merged:
            atomic_write_text(args.merged, dumps(merged_document(doc)))
            print(f"Merged results: {args.merged} ({len(doc['tests'])} test(s) from "
                  f"{len(doc['sources'])} file(s))", file=out)
        if args.html:
            atomic_write_text(args.html, render_html(report))
            print(f"HTML report: {args.html} ({len(report.tests)} test(s))", file=out)
        if args.markdown:
            atomic_write_text(args.markdown, render_markdown(report, html_link=args.html))
            print(f"Markdown summary: {args.markdown}", file=out)
    except OSError as exc:
        return _error(err, f"cannot write the report: {os_reason(exc)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m pytest_llmperf.cli.report report ...``)."""
    parser = argparse.ArgumentParser(prog="llmperf")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
