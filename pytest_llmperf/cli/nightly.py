"""``llmperf nightly``: change points over the stored history, each with its commit range and
the bisect that pins it; exit 1 only for a regression not reported on an earlier night.

``cli/main.py`` calls ``add_parser(subparsers)``; the parser's ``func`` default is the
handler, which returns the exit status: 0 (no new regression), 1 (a new regression), 2 (bad
usage, an unreadable store, state file, issues manifest or output path: one line, no
traceback; nothing is written then).

``--bisect`` replays only the stored arguments ``commits/replay.py`` allows (the store is not
trusted to name commands or files); a regression whose stored arguments hold another is
reported with the argument named, not bisected, unless the user gives the arguments with
``--bisect-args``. ``--issues DIR`` touches only the files it wrote there (``MANIFEST_NAME``
lists them with their SHA-256): a file of the user's is never deleted or overwritten.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from .. import reading
from ..commits import bisect, nightly
from ..decision import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT
from ..files import ReportPathError, atomic_write_text, check_path, dumps, os_reason
from ..formatting import pct
from ..report import nightly as render
from ..report.md import one_line
from ..report.nightly import issue_body, issue_title
from ..store import gitinfo
from ..verdict.attribution import attribution_lines

MANIFEST_NAME = ".llmperf-issues.json"
MANIFEST_SCHEMA = "pytest-llmperf/nightly-issues"
_ISSUE_FILE = re.compile(r"[0-9]{2,6}\.(md|title)\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


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
    p.add_argument("--bisect-args", metavar="ARGS",
                   help="with --bisect: the pytest arguments every bisect session runs "
                        "with, one shell-quoted string (e.g. \"tests/perf -k chat "
                        "--llmperf-server-cmd '...'\"), instead of those stored with the "
                        "runs, of which only options that select tests or shape the "
                        "measurement are replayed")
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


def run_bisects(report: nightly.NightlyReport, pairs: int | None, err: TextIO,
                bisect_args: list[str] | None = None) -> None:
    """``llmperf bisect`` once per distinct (last good, first bad, arguments) of the new
    regressions; each finding gets ``bisect``: the commit it names, or why not. The arguments:
    ``bisect_args`` (the user's) when given, else the stored ones, unless the store held an
    argument nightly does not replay: that finding is not bisected and says which."""
    done: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    for f in report.new_regressions:
        if bisect_args is None and f.refused:
            what = f"{one_line(f.nodeid)} {f.metric}"
            print(f"llmperf nightly: warning: bisect of {what} not run: the stored pytest "
                  f"arguments hold {'; '.join(str(r) for r in f.refused)}; give the arguments with "
                  "--bisect-args '...' to bisect it", file=err, flush=True)
            f.bisect = {"status": "refused", "first_bad": None,
                        "message": "not run: the stored arguments hold "
                                   + ", ".join(r.argument for r in f.refused)
                                   + ", which nightly does not replay from the store; give "
                                     "the arguments with llmperf nightly --bisect-args"}
            continue
        args = tuple(bisect_args) if bisect_args is not None else f.pytest_args
        key = (f.last_good, f.first_bad, args)
        if key not in done:
            shown = " ".join(shlex.quote(a) for a in args)
            print(f"[nightly] bisecting {one_line(f.nodeid)} {f.metric}: llmperf bisect "
                  f"{f.last_good[:12]} {f.first_bad[:12]} -- {one_line(shown)}", file=err,
                  flush=True)
            done[key] = _bisect_one(bisect, report, f, args, pairs, err)
        f.bisect = done[key]


def _bisect_one(bisect: Any, report: nightly.NightlyReport, f: nightly.Finding,
                args: tuple[str, ...], pairs: int | None, err: TextIO) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmperf-nightly-") as tmp:
        out_json = Path(tmp) / "bisect.json"
        opts = bisect.Options(good=f.last_good, bad=f.first_bad, repo=Path(report.repo),
                              pytest_args=list(args), json_path=out_json)
        if pairs is not None:
            opts.pairs = pairs
        try:
            status = bisect.run(opts, out=io.StringIO(), err=err)
        except bisect.BisectError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "failed"
            return {"status": "error", "first_bad": None, "message": f"did not finish: {first}"}
        try:
            doc = reading.read_json(out_json)
        except (OSError, ValueError):
            doc = {}
    found = doc.get("first_bad") if isinstance(doc, dict) else None
    found = found if isinstance(found, dict) else {}
    commit, subject = found.get("commit"), found.get("subject", "")
    subject = subject if isinstance(subject, str) else ""
    if status == 0 and isinstance(commit, str) and commit:
        return {"status": "found", "first_bad": commit, "subject": subject,
                "message": f"first bad commit {commit[:12]} {subject}".rstrip()}
    return {"status": "not confirmed", "first_bad": None,
            "message": f"{f.first_bad[:12]} was not confirmed slower than {f.last_good[:12]} "
                       "by the paired sessions"}


def _summary(report: nightly.NightlyReport, out: TextIO) -> None:
    for f in report.findings:
        tag = f.kind + (" (new)" if f.kind == "regression" and f.new else
                        " (reported before)" if f.kind == "regression" else "")
        print(one_line(f"{tag}: {f.profile_id} {f.nodeid} {f.metric} {pct(f.change_pct)} "
                       f"(p {f.p_value:.3g}) last good {f.last_good[:12]}, first bad "
                       f"{f.first_bad[:12]}"), file=out)
        if f.kind == "regression":
            print(f"  {one_line(f.bisect_command)}", file=out)
            for note in (f.args_note, f.replay_note):
                if note:
                    print(f"  ({one_line(note)})", file=out)
            if f.bisect:
                print(f"  bisect: {one_line(f.bisect['message'])}", file=out)
            for line in attribution_lines(f.attribution):  # store text: one line each
                indent = line[:len(line) - len(line.lstrip())]
                print(indent + one_line(line), file=out)
    for s in report.too_short:
        print(one_line(f"too short: {s.profile_id} {s.nodeid} {s.metric}: {s.note}"), file=out)
    print(f"{len(report.series)} series: {len(report.new_regressions)} new regression(s), "
          f"{len(report.regressions) - len(report.new_regressions)} reported before, "
          f"{len(report.improvements)} improvement(s), {len(report.too_short)} too short",
          file=out)


# ---------------------------------------------------------------------------------------------
# --issues DIR: only the files this command wrote are ever deleted.


def read_manifest(directory: Path) -> dict[str, list[str]]:
    """The issue files the last run wrote in ``directory`` (name -> the SHA-256 of each content
    it may hold); {} when there is no manifest. NightlyError when it cannot be read."""
    path = directory / MANIFEST_NAME
    if not path.exists():
        return {}
    keep = ("; nothing was written: delete it to start afresh (the files it listed are then "
            "left alone)")
    try:
        doc = reading.read_json(path)
    except (OSError, ValueError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise nightly.NightlyError(f"--issues {directory}: {MANIFEST_NAME} unreadable "
                                   f"({reason}){keep}") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA
            or not isinstance(files, dict)
            or not all(isinstance(name, str) and _ISSUE_FILE.match(name)
                       and isinstance(sums, list)
                       and all(isinstance(h, str) and _SHA256.match(h) for h in sums)
                       for name, sums in files.items())):
        raise nightly.NightlyError(f"--issues {directory}: {MANIFEST_NAME} is not a "
                                   f"pytest-llmperf issues manifest{keep}")
    return {name: list(sums) for name, sums in files.items()}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ours(path: Path, sums: list[str]) -> bool:
    """Whether ``path`` is still a file this command wrote, with the content it wrote."""
    try:
        return hashlib.sha256(reading.read_bytes(path)).hexdigest() in sums
    except (OSError, ValueError):
        return False


def _write_manifest(directory: Path, files: dict[str, list[str]]) -> None:
    atomic_write_text(directory / MANIFEST_NAME,
                      dumps({"schema": MANIFEST_SCHEMA, "files": files}))


def write_issues(report: nightly.NightlyReport, directory: Path, html_link: str | None,
                 manifest: dict[str, list[str]]) -> tuple[list[Path], int]:
    """One ``NN.title`` and ``NN.md`` per new regression in ``directory``, in place of the
    files the last run wrote (``manifest``, from ``read_manifest``). A file this command did
    not write (or that changed since) is never deleted or overwritten: its number is skipped.
    Returns the bodies written and how many issue-named files were left alone."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = [name for name, sums in manifest.items() if _ours(directory / name, sums)]

    def taken(name: str) -> bool:
        path = directory / name
        return name not in stale and (path.exists() or path.is_symlink())

    new: dict[str, str] = {}
    number = 0
    for f in report.new_regressions:
        number += 1
        while taken(f"{number:02d}.title") or taken(f"{number:02d}.md"):
            number += 1
        new[f"{number:02d}.title"] = issue_title(f) + "\n"
        new[f"{number:02d}.md"] = issue_body(f, html_link)
    sums = {name: [_sha256(text)] for name, text in new.items()}
    # First a manifest listing both the old files and the new ones, so a run stopped half-way
    # leaves no file of ours unlisted; then the old files go, the new come, and the manifest
    # lists the new ones only.
    _write_manifest(directory, {**{n: manifest[n] for n in stale},
                                **{n: sorted({*manifest.get(n, []), *h})
                                   for n, h in sums.items()}})
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    for name, text in new.items():
        atomic_write_text(directory / name, text)
    _write_manifest(directory, sums)
    left_alone = sum(1 for p in directory.iterdir()
                     if _ISSUE_FILE.match(p.name) and p.name not in new)
    return [directory / n for n in new if n.endswith(".md")], left_alone


def run(args: argparse.Namespace, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    store_dir = Path(args.dir) if args.dir else gitinfo.default_baselines_dir()
    state_path = Path(args.state) if args.state else nightly.default_state_path(store_dir)
    if args.bisect_pairs is not None and args.bisect_pairs < 1:
        return _error(err, f"--bisect-pairs {args.bisect_pairs}: give 1 or more")
    bisect_args: list[str] | None = None
    if args.bisect_args is not None:
        if not args.bisect:
            return _error(err, "--bisect-args: give --bisect too")
        try:
            bisect_args = shlex.split(args.bisect_args)
        except ValueError as exc:
            return _error(err, f"--bisect-args: cannot split {args.bisect_args!r}: "
                               f"{str(exc).lower()}")
    manifest: dict[str, list[str]] = {}
    try:
        for option, path in (("--html", args.html), ("--markdown", args.markdown),
                             ("--json", args.json), ("--state", str(state_path))):
            if path:
                check_path(option, path)
        if args.issues and Path(args.issues).exists() and not Path(args.issues).is_dir():
            raise ReportPathError(f"--issues {args.issues}: not a directory")
        if args.issues:
            manifest = read_manifest(Path(args.issues))
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
        run_bisects(report, args.bisect_pairs, err, bisect_args)
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
            written, left_alone = write_issues(report, Path(args.issues), args.html,
                                               manifest)
            alone = (f" ({left_alone} file(s) named like issues that this command did not "
                     "write: left alone)" if left_alone else "")
            print(f"issues: {len(written)} in {args.issues}{alone}", file=out)
        nightly.save_state(state_path, nightly.state_entries(report, reported))
    except OSError as exc:
        return _error(err, f"cannot write: {os_reason(exc)}")
    return 1 if report.new_regressions else 0
