"""The ``llmperf`` command: stored baselines (list, show, diff, prune, changes), reports, and
bisect (the first commit of a regression, confirmed with the paired gate).

Errors are one line on stderr; bad usage exits with 2, unreadable baseline files with 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..commits import bisect, calibrate
from ..decision import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT
from ..formatting import fixed, num, pct
from ..metric_table import DEFAULT_GATED
from ..store import gitinfo
from ..store.baselines import Baseline, BaselineError, BaselineStore, run_value
from ..store.profile import mismatch_message
from ..verdict import changepoints
from ..verdict.gate import compare_runs
from . import compare, export, init_cmd, nightly, store_cli


class UsageError(Exception):
    """Bad usage: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _store(args: argparse.Namespace) -> BaselineStore:
    path = Path(args.dir) if args.dir else gitinfo.default_baselines_dir()
    if not path.is_dir():
        raise UsageError(f"no baseline directory at {path}: save baselines with "
                         "pytest --llmperf --llmperf-save, or give --dir")
    return BaselineStore(path)


def _warn(errors: Sequence[str]) -> int:
    for e in errors:
        print(f"llmperf: warning: {e}", file=sys.stderr)
    return 1 if errors else 0


def _resolve_commit(store: BaselineStore, ref: str) -> str:
    """A commit id from a ref (branch, tag, commit) or a prefix of a stored commit id."""
    known = store.all_commits(dirty=None)
    try:
        sha = gitinfo.resolve_ref(Path.cwd(), ref)
    except gitinfo.GitError:
        sha = None
    if sha is not None:
        return sha
    matches = sorted(c for c in known if c.startswith(ref.lower()))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"{ref!r} is ambiguous: it starts {len(matches)} stored commits "
                         f"({', '.join(m[:12] for m in matches[:4])}); give more digits")
    raise UsageError(f"{ref!r} names no stored baseline commit and no git ref here; "
                     "see llmperf baselines list")


def _profile_filter(args: argparse.Namespace, entries: Sequence[Any]) -> list[Any]:
    if getattr(args, "profile", None):
        return [e for e in entries if e.profile_id == args.profile or
                e.profile_id.startswith(args.profile)]
    return list(entries)


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    baselines, errors = store.load_all(dirty=None)
    baselines = _profile_filter(args, baselines)
    if not baselines:
        print(f"no baselines in {store.root}")
        return _warn(errors)
    by_profile: dict[str, list[Baseline]] = {}
    for b in baselines:
        by_profile.setdefault(b.profile_id, []).append(b)
    for pid, items in sorted(by_profile.items()):
        eng = items[0].profile.get("engine", {})
        hw = items[0].profile.get("hardware", {})
        print(f"{pid}  ({eng.get('kind')} {eng.get('version', '')}, {eng.get('model')}, "
              f"{hw.get('cpu_model')} x{hw.get('cpu_cores')})")
        items.sort(key=lambda b: b.committed_at, reverse=True)
        for b in items:
            flag = " dirty" if b.dirty else ""
            print(f"  {b.commit[:12]}  {b.branch or '-':16s} committed {b.committed_at}  "
                  f"saved {b.saved_at}  {len(b.tests)} test(s), {b.n_runs} run(s){flag}")
    return _warn(errors)


def _load_commit(store: BaselineStore, commit: str, profile: str | None) -> list[Baseline]:
    """The commit's baselines, clean files and dirty ones (``<commit>.dirty.json``)."""
    out, errors = [], []
    for e in store.profiles_at(commit, dirty=None):
        if profile and not e.profile_id.startswith(profile):
            continue
        try:
            out.append(store.load(e.profile_id, commit, dirty=e.dirty))
        except BaselineError as exc:
            errors.append(str(exc))
    if not out:
        if errors:
            raise BaselineError(errors[0])
        raise UsageError(f"no baseline stored for commit {commit[:12]}"
                         + (f" and profile {profile}" if profile else ""))
    _warn(errors)
    return out


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    commit = _resolve_commit(store, args.commit)
    baselines = _load_commit(store, commit, args.profile)
    if args.json:
        print(json.dumps([b.to_dict() for b in baselines], sort_keys=True, indent=1))
        return 0
    for b in baselines:
        print(f"commit {b.commit}  branch {b.branch or '-'}  profile {b.profile_id}"
              f"{'  (dirty tree)' if b.dirty else ''}")
        print(f"committed {b.committed_at}, saved {b.saved_at}")
        for nodeid, entry in sorted(b.tests.items()):
            runs = entry.get("runs", [])
            print(f"  {nodeid}: {len(runs)} run(s)")
            for metric in (*DEFAULT_GATED, "ttft_p95_ms", "e2e_p50_ms", "errors"):
                values = [run_value(r, metric) for r in runs]
                shown = ", ".join(fixed(v, ".4g") for v in values)
                print(f"    {metric:12s} {shown}")
    return 0


def _history(store: BaselineStore, pid: str, upto: Baseline, n: int = 20) -> list[Baseline]:
    """Baselines of the profile committed no later than ``upto``, newest first."""
    items, _ = store.load_all(pid)
    items = [b for b in items if b.committed_at <= upto.committed_at]
    items.sort(key=lambda b: b.committed_at, reverse=True)
    return items[:n]


def cmd_diff(args: argparse.Namespace) -> int:
    store = _store(args)
    ca, cb = _resolve_commit(store, args.a), _resolve_commit(store, args.b)
    # Per profile, the commit's clean file, else its dirty one (the gate's rule).
    la = {b.profile_id: b for b in sorted(_load_commit(store, ca, args.profile),
                                          key=lambda b: not b.path.stem.endswith(".dirty"))}
    lb = {b.profile_id: b for b in sorted(_load_commit(store, cb, args.profile),
                                          key=lambda b: not b.path.stem.endswith(".dirty"))}
    common = sorted(set(la) & set(lb))
    if not common:
        a, b = next(iter(la.values())), next(iter(lb.values()))
        print(f"llmperf: error: {ca[:12]} and {cb[:12]} share no profile: "
              f"{mismatch_message(a.profile, b.profile, f'of {ca[:12]}')}", file=sys.stderr)
        return 1
    header = (f"{'metric':14s} {'A':>10s} {'B':>10s} {'change':>8s} "
              f"{'interval':>17s}  verdict")
    regressions = 0
    for pid in common:
        a, b = la[pid], lb[pid]
        print(f"profile {pid}: A {ca[:12]} -> B {cb[:12]} (alpha {args.alpha:g})")
        hist = _history(store, pid, a)
        for nodeid in sorted(set(a.tests) & set(b.tests)):
            history = [h.runs(nodeid) for h in hist]
            verdicts = compare_runs({}, a.runs(nodeid), b.runs(nodeid),
                                    [h for h in history if h], alpha=args.alpha)
            print(f"\n{nodeid} ({len(a.runs(nodeid))} vs {len(b.runs(nodeid))} runs)")
            print(header)
            for v in verdicts:
                regressions += v.verdict == "regression"
                interval = ("-" if v.ci_low_pct is None else
                            f"{v.ci_low_pct:+.1f}..{v.ci_high_pct:+.1f}%")
                change = pct(v.change_pct)
                gated = "" if v.gated else " (not gated)"
                print(f"{v.metric:14s} {num(v.baseline):>10s} {num(v.current):>10s} "
                      f"{change:>8s} {interval:>17s}  {v.verdict}{gated}")
        only = sorted(set(a.tests) ^ set(b.tests))
        if only:
            print(f"\nnot in both: {', '.join(only)}")
    return 1 if (regressions and args.fail_on_regression) else 0


def cmd_prune(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise UsageError(f"--keep {args.keep}: keep at least 1 commit per profile")
    store = _store(args)
    order: dict[str, int] | None = None
    try:
        order = {c: i for i, c in enumerate(gitinfo.ancestors(Path.cwd()))}
    except gitinfo.GitError:
        order = None
    removed, errors = store.prune(args.keep, order=order, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in removed:
        print(f"{verb} {p}")
    print(f"{verb} {len(removed)} baseline file(s); kept the newest {args.keep} per profile")
    return _warn(errors)


def cmd_changes(args: argparse.Namespace) -> int:
    store = _store(args)
    baselines, errors = store.load_all(args.profile)
    if not baselines:
        _warn(errors)
        raise UsageError(f"no baselines in {store.root}" +
                         (f" for profile {args.profile}" if args.profile else ""))
    by_profile: dict[str, list[Baseline]] = {}
    for b in baselines:
        by_profile.setdefault(b.profile_id, []).append(b)
    found = 0
    for pid, items in sorted(by_profile.items()):
        items.sort(key=lambda b: b.committed_at)
        tests = sorted({t for b in items for t in b.tests})
        for nodeid in tests:
            raw = [(b, [run_value(r, args.metric) for r in b.runs(nodeid)]) for b in items]
            present = [(b, [v for v in vals if v]) for b, vals in raw]
            series = [(b, vals) for b, vals in present if vals]
            if not series:
                continue
            det = changepoints.detect([v for _, v in series], alpha=args.alpha,
                                      min_change_pct=args.min_change_pct)
            if det.status != "ok":
                print(f"{pid} {nodeid} {args.metric}: {det.status} ({det.note})")
            for cp in det.change_points:
                found += 1
                print(f"{pid} {nodeid} {args.metric}: shift of {cp.change_pct:+.1f}% "
                      f"(interval {cp.ci_low_pct:+.1f}% .. {cp.ci_high_pct:+.1f}%) "
                      f"starting at {series[cp.index][0].commit[:12]} (p={cp.p_value:.4f})")
    if not found:
        print(f"no change points in {args.metric} (alpha {args.alpha:g}, "
              f"minimum {args.min_change_pct:g}%; a shift must hold for 3 commits, and "
              f"deciding needs {changepoints.min_commits(args.alpha)} or more commits per test)")
    return _warn(errors)


def cmd_bisect(args: argparse.Namespace) -> int:
    opts = bisect.Options(
        good=args.good, bad=args.bad, repo=Path(args.repo) if args.repo else Path.cwd(),
        pairs=args.pairs, alpha=args.alpha, max_regression_pct=args.max_regression_pct,
        python=args.python or sys.executable, keep_worktrees=args.keep_worktrees,
        pytest_args=list(args.pytest_args), json_path=Path(args.json) if args.json else None)
    try:
        return bisect.run(opts)
    except bisect.BisectError as exc:
        raise UsageError(str(exc)) from None


def _add_bisect(sub: Any) -> None:
    p = sub.add_parser(
        "bisect", help="find the first commit of a regression with the paired gate",
        usage="%(prog)s GOOD BAD [options] [-- PYTEST_ARG ...]",
        description="Compare commits of GOOD..BAD (first parent) with GOOD, each checked out "
                    "in a temporary git worktree and run as interleaved pytest --llmperf "
                    "sessions (G X, X G, ...), and name the first one that regressed. "
                    "Exit 0: found; 1: BAD is not slower than GOOD; 2: bad usage or a "
                    "session that produced no numbers.")
    p.add_argument("good", metavar="GOOD", help="a known-good commit, branch or tag")
    p.add_argument("bad", metavar="BAD", help="a bad commit, branch or tag (GOOD's descendant)")
    p.add_argument("pytest_args", metavar="PYTEST_ARG", nargs="*",
                   help="arguments for pytest in each session, after -- (test paths, -k ...)")
    p.add_argument("--repo", metavar="DIR",
                   help="the git repository (default: the one around the current directory)")
    p.add_argument("--pairs", type=int, default=bisect.DEFAULT_PAIRS, metavar="N",
                   help=f"interleaved session pairs per comparison (default "
                        f"{bisect.DEFAULT_PAIRS})")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, metavar="A",
                   help=f"false-alarm rate of one comparison, split over the tests (default "
                        f"{DEFAULT_ALPHA:g})")
    p.add_argument("--max-regression-pct", type=float, default=None, metavar="P",
                   help="tolerance in percent (default: each test's marker, else "
                        f"{DEFAULT_TOLERANCE_PCT:g})")
    p.add_argument("--python", metavar="PY",
                   help="the Python that runs pytest (default: this one)")
    p.add_argument("--keep-worktrees", action="store_true",
                   help="keep the worktrees and session results (for debugging)")
    p.add_argument("--json", metavar="FILE", help="write the outcome here as JSON")
    p.set_defaults(func=cmd_bisect)


def cmd_calibrate(args: argparse.Namespace) -> int:
    opts = calibrate.Options(
        pytest_args=list(args.pytest_args), sessions=args.sessions, alpha=args.alpha,
        pairs=args.pairs, python=args.python or sys.executable, json_path=Path(args.json),
        cwd=Path.cwd())
    try:
        calibrate.run(opts)
    except calibrate.CalibrateError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _add_calibrate(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate", help="A/A sessions: per test the noise, the smallest change each gate "
                          "can see (MDE) and the repeats or pairs its tolerance needs",
        usage="%(prog)s [options] [-- PYTEST_ARG ...]",
        description="Run the same pytest --llmperf suite K times in the current directory "
                    "(nothing changes between the sessions, so every difference is noise) "
                    "and write per test and gated metric the session-to-session CV, the MDE "
                    "of the stored gate and of llmperf compare at the current settings, and "
                    "the repeats or pairs needed to see the test's tolerance.")
    p.add_argument("pytest_args", metavar="PYTEST_ARG", nargs="*",
                   help="arguments for pytest in each session, after -- (test paths, -k ...)")
    p.add_argument("--sessions", type=int, default=calibrate.DEFAULT_SESSIONS, metavar="K",
                   help=f"A/A sessions to run (default {calibrate.DEFAULT_SESSIONS})")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, metavar="A",
                   help=f"the gates' false-alarm rate (default {DEFAULT_ALPHA:g})")
    p.add_argument("--pairs", type=int, default=bisect.DEFAULT_PAIRS, metavar="N",
                   help=f"llmperf compare's pairs (default {bisect.DEFAULT_PAIRS})")
    p.add_argument("--python", metavar="PY", help="the Python that runs pytest (default: "
                   "this one)")
    p.add_argument("--json", metavar="FILE", default=calibrate.DEFAULT_JSON,
                   help=f"where to write the calibration (default {calibrate.DEFAULT_JSON})")
    p.set_defaults(func=cmd_calibrate)


def _split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(llmperf's arguments, pytest's arguments): bisect's are after the first ``--``."""
    argv = list(argv)
    if "--" in argv and {"bisect", "compare", "calibrate"} & set(argv[: argv.index("--")]):
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmperf",
                     description="pytest-llmperf baselines, reports and bisect")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    bl = sub.add_parser("baselines", help="list, show, diff, prune, push, pull and compact stored "
                         "baselines")
    bsub = bl.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    bsub.required = True

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", help="baseline directory (default: baselines/ at the "
                       "repository root)")
        p.add_argument("--profile", help="only this profile id (or a prefix of it)")
        return p

    p = common(bsub.add_parser("list", help="profiles, commits, runs and dates"))
    p.set_defaults(func=cmd_list)
    p = common(bsub.add_parser("show", help="the runs stored for one commit"))
    p.add_argument("commit", help="a commit, branch or tag (or a stored commit prefix)")
    p.add_argument("--json", action="store_true", help="print the stored JSON")
    p.set_defaults(func=cmd_show)
    p = common(bsub.add_parser("diff", help="metric changes from commit A to commit B"))
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when a gated metric regressed")
    p.set_defaults(func=cmd_diff)
    p = common(bsub.add_parser("prune", help="keep the newest N commits per profile"))
    p.add_argument("--keep", type=int, required=True, metavar="N")
    p.add_argument("--dry-run", action="store_true", help="only say what would go")
    p.set_defaults(func=cmd_prune)
    p = common(bsub.add_parser("changes",
                               help="change points in a metric over the commit history"))
    p.add_argument("--metric", default="tpot_p50_ms")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    p.add_argument("--min-change-pct", type=float, default=DEFAULT_TOLERANCE_PCT)
    p.set_defaults(func=cmd_changes)
    store_cli.add_parsers(bsub)
    try:
        report = importlib.import_module("pytest_llmperf.cli.report")
    except ImportError:
        report = None
    if report is not None and hasattr(report, "add_parser"):
        report.add_parser(sub)
    nightly.add_parser(sub)
    _add_bisect(sub)
    compare.add_parser(sub)
    export.add_parser(sub)
    init_cmd.add_parser(sub)
    _add_calibrate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    own, passthrough = _split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    if passthrough:
        args.pytest_args = [*args.pytest_args, *passthrough]
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmperf: interrupted", file=sys.stderr)
        return 130
    except BaselineError as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
