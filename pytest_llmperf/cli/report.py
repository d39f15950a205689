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
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..files import (
    ReportPathError,
    atomic_write_text,
    check_path,
    dumps,
    dumps_pieces,
    os_reason,
)
from ..report.html import html_chunks
from ..report.markdown import render_markdown
from ..report.provenance import ProvenanceError
from ..report.view import (
    ReportBuilder,
    ReportInputError,
    ResultsFile,
    check_baselines_dir,
    checked_tests,
    document_from_history,
    load_history,
    merge_header,
    read_results,
    reread_tests,
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


def merged_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The merged results in the shape of one ``--llmperf-json`` file (so every reader of
    those reads it), with ``sources`` (the files merged) and ``hosts`` (each file's host)."""
    out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": doc.get("created", ""),
           "tests": doc["tests"], "sources": doc["sources"], "hosts": doc["hosts"],
           "host": doc["hosts"][0] if doc["hosts"] else {}}
    for key in ("provenance", "profile", "git", "warnings"):
        if doc.get(key):
            out[key] = doc[key]
    return out


_TESTS_MARK = '\n "tests": []'


def merged_chunks(header: Mapping[str, Any], tests: Iterable[Any]) -> Iterator[str]:
    """``files.dumps(merged_document({**header, "tests": [...tests]}))``, the same text, in
    pieces: one test encoded at a time, so the whole document is never one string (nor all
    the tests in memory, when ``tests`` reads them file by file)."""
    head, tail = dumps(merged_document({**header, "tests": []})).split(_TESTS_MARK)
    yield head + _TESTS_MARK[:-1]  # '... "tests": ['; in JSON strings quotes are escaped
    first = True
    for test in tests:
        yield "\n  " if first else ",\n  "
        first = False
        # Newlines only start the indentation (JSON strings escape theirs): two levels more.
        for piece in dumps_pieces(test, newline=False):
            yield piece.replace("\n", "\n  ")
    yield ("]" if first else "\n ]") + tail


def _error(stream: TextIO, message: str) -> int:
    print(f"llmperf report: error: {message}", file=stream)
    return 2


def _read(paths: Sequence[str], builder: ReportBuilder | None,
          merged: bool) -> tuple[list[ResultsFile], list[Any] | None]:
    """Every results file read and checked, one at a time: each test goes to ``builder`` (with
    its samples read once, for the plots) and only what the merge needs of the file is kept,
    so memory holds one file at a time. ``merged``: also return the tests of a file given
    alone, or else note each file's SHA-256 (``--merged`` reads them again)."""
    files: list[ResultsFile] = []
    kept: list[Any] | None = None
    keep = merged and len(paths) == 1
    for raw in paths:
        data, digest = read_results(raw, digest=merged and not keep)
        plots = builder is not None and builder.with_plots
        for test, records in checked_tests(raw, data, records=plots):
            if builder is not None:
                builder.add(test, records)
        files.append(ResultsFile.of(raw, data, digest))
        if keep:
            kept = data["tests"]
        del data
    return files, kept


def _all_tests(files: Sequence[ResultsFile], kept: list[Any] | None) -> Iterator[Any]:
    """The tests of every file, in file order: the one file's kept tests, else each file read
    again (and refused if it changed since it was checked), one file in memory at a time."""
    if kept is not None:
        yield from kept
        return
    for f in files:
        yield from reread_tests(f)


def run(args: argparse.Namespace, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if not args.html and not args.markdown and not args.merged:
        return _error(err, "nothing to write: give --html OUT, --markdown OUT and/or "
                           "--merged OUT")
    if args.merged and not args.json:
        return _error(err, "--merged OUT merges results files: give them with --json")
    files: list[ResultsFile] = []
    kept: list[Any] | None = None
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
        builder = ReportBuilder(history, with_plots=bool(args.html))
        if args.json:
            files, kept = _read(args.json, builder if args.html or args.markdown else None,
                                merged=bool(args.merged))
            doc = merge_header(files, allow_partial=args.allow_partial)
            for warning in doc.get("warnings", []):
                print(f"llmperf report: warning: {warning}", file=err)
        else:
            if not history.profiles:
                where = baselines or gitinfo.default_baselines_dir()
                return _error(err, f"no results given (--json RESULTS) and no baselines in "
                                   f"{where}")
            doc = document_from_history(history)
            for test in doc["tests"]:
                builder.add(test)
    except (ReportInputError, ReportPathError, ProvenanceError) as exc:
        return _error(err, str(exc))
    report = builder.report(doc, title=args.title)
    for note in report.notes:
        print(f"llmperf report: warning: skipped {note}", file=err)
    try:
        if args.merged:
            atomic_write_text(args.merged, merged_chunks(doc, _all_tests(files, kept)))
            print(f"Merged results: {args.merged} ({sum(len(f.nodeids) for f in files)} "
                  f"test(s) from {len(files)} file(s))", file=out)
        if args.html:
            atomic_write_text(args.html, html_chunks(report))
            print(f"HTML report: {args.html} ({len(report.tests)} test(s))", file=out)
        if args.markdown:
            atomic_write_text(args.markdown, render_markdown(report, html_link=args.html))
            print(f"Markdown summary: {args.markdown}", file=out)
    except ReportInputError as exc:  # a file changed between its check and the merge
        return _error(err, str(exc))
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
