"""``llmperf compare BASE [HEAD]``: the paired PR gate, BASE and HEAD side by side.

The stored-baseline gate compares a head job with jobs made at other times, and on a shared
runner their job-to-job spread (10-17% on the development machine) hides a 10% change. This
command makes one comparison of ``llmperf bisect`` (``bisect.Bisector.compare``): BASE and HEAD
are each checked out in a detached ``git worktree`` and run as whole ``pytest --llmperf``
sessions interleaved B H, H B, B H, ... (``bisect.abba_order``), one session being one data
point per test; each test is decided with the paired sign-flip gate (``ab.decide`` through
``bisect.judge``), alpha split evenly over the tests (Bonferroni). HEAD regressed when any test
regressed (significant **and** beyond the tolerance).

``run`` returns a ``CompareOutcome``; ``result_document`` is its JSON (``--json``). The
terminal table, Markdown, JUnit and HTML renderings are in ``cli/compare.py``.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..engines.servers import ManagedServer, ServerError, die_with_parent, free_port
from ..files import ReportPathError, check_path
from ..redact import redact_argv, redact_command
from ..store import gitinfo
from ..verdict import ab, stats
from ..verdict.outputs import compare as compare_outputs
from . import bisect
from .bisect import BisectError, Commit, Comparison, DataPoint

SCHEMA = "pytest-llmperf/compare"
VERSION = 1
DEFAULT_PAIRS = bisect.DEFAULT_PAIRS
# The roles of bisect's comparison, as compare names them.
ROLE_NAMES = {"reference": "base", "candidate": "head"}


class CompareError(BisectError):
    """Bad usage (exit 2): a bad ref, impossible --pairs/--alpha, an unwritable output, or a
    session that produced no numbers. The first line of the message is the one-line error."""


@dataclass
class CompareOptions(bisect.SessionOptions):
    """What ``llmperf compare`` was asked to do."""

    base: str
    head: str = "HEAD"
    html_path: Path | None = None
    markdown_path: Path | None = None
    junit_path: Path | None = None
    # --served CMD: BASE's and HEAD's servers side by side, one session interleaving by
    # request (``run_served``); ``{port}`` in CMD is filled in.
    served: str | None = None
    server_timeout: float = 120.0

    def bisect_options(self) -> bisect.Options:
        shared = self.session_options()
        return bisect.Options(good=self.base, bad=self.head,
                              **{**shared, "pytest_args": list(self.pytest_args)})

    def outputs(self) -> list[tuple[str, Path]]:
        return [(opt, p) for opt, p in (("--json", self.json_path), ("--html", self.html_path),
                                        ("--markdown", self.markdown_path),
                                        ("--junit", self.junit_path)) if p is not None]


@dataclass
class CompareOutcome:
    """BASE against HEAD: the comparison and what it was made of."""

    base: Commit
    head: Commit
    comparison: Comparison
    opts: CompareOptions
    elapsed_s: float
    dirty: bool = False  # the working tree had uncommitted changes (not measured)

    @property
    def regressed(self) -> bool:
        return self.comparison.is_bad

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    @property
    def tests(self) -> dict[str, list[stats.MetricVerdict]]:
        return self.comparison.tests

    def regressions(self) -> list[tuple[str, stats.MetricVerdict]]:
        return self.comparison.regressions()

    def values(self, nodeid: str, metric: str) -> dict[str, list[float | None]]:
        """Per side (``base``, ``head``), the metric's value in each session, pair order."""
        out: dict[str, list[float | None]] = {}
        for role, name in ROLE_NAMES.items():
            sessions = self.comparison.sides.get(role, [])
            out[name] = [_number(s[nodeid].summary.get(metric)) if nodeid in s else None
                         for s in sessions]
        return out

    def outputs(self, nodeid: str) -> dict[str, Any] | None:
        """HEAD's answers against BASE's, request by request (issue 25): every HEAD session
        against BASE's first (``--served``: the A/B's own comparison); None when no session
        fingerprinted its outputs."""
        if nodeid in self.comparison.outputs:
            return self.comparison.outputs[nodeid]
        base = [s[nodeid] for s in self.comparison.sides.get("reference", []) if nodeid in s]
        head = [s[nodeid] for s in self.comparison.sides.get("candidate", []) if nodeid in s]
        base_runs = [{"samples": list(p.prints)} for p in base if p.prints][:1]
        head_runs = [{"samples": list(p.prints)} for p in head if p.prints]
        if not base_runs and not head_runs:
            return None
        return compare_outputs(base_runs, head_runs).to_dict()

    def runs_per_session(self, nodeid: str) -> int:
        sessions = self.comparison.sides.get("reference", [])
        return max((s[nodeid].runs for s in sessions if nodeid in s), default=0)

    def headline(self) -> str:
        """One line: the answer."""
        base, head = self.base.short, self.head.short
        how = (f"{self.comparison.pairs} interleaved pairs, alpha {self.opts.alpha:g}"
               + (f" ({self.comparison.alpha_per_test:.3g} per test)" if len(self.tests) > 1
                  else ""))
        if self.regressed:
            found = self.regressions()
            named = ", ".join(f"{n} {v.metric} {v.change_pct:+.1f}%" for n, v in found[:3]
                              if v.change_pct is not None)
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            return f"regression: HEAD {head} is slower than BASE {base}: {named}{more} ({how})"
        word = {"ok": "no regression", "improvement": "no regression (an improvement)",
                "inconclusive": "no regression found (inconclusive)"}.get(self.verdict,
                                                                          self.verdict)
        short = [(n, v) for n, vs in sorted(self.tests.items()) for v in vs
                 if v.gated and v.verdict == "inconclusive" and v.pairs_run is not None]
        if self.verdict == "inconclusive" and short:
            usable = ", ".join(f"{n} {v.metric} {v.n_current} of {v.pairs_run} pairs usable"
                               for n, v in short[:3])
            more = f" and {len(short) - 3} more" if len(short) > 3 else ""
            word = f"no regression found (inconclusive: {usable}{more})"
        return f"{word}: HEAD {head} against BASE {base} ({how})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def validate(opts: CompareOptions) -> CompareOptions:
    """The options ready to use; CompareError for values that cannot work, before anything
    runs (bisect's checks: pairs, alpha, tolerance, python; and every output path)."""
    try:
        checked = bisect.validate(opts.bisect_options())
    except BisectError as exc:
        raise CompareError(str(exc)) from None
    for option, path in opts.outputs():
        try:
            check_path(option, str(path))
        except ReportPathError as exc:
            raise CompareError(str(exc)) from None
    return replace(opts, python=checked.python)


def _resolve(repo: Any, ref: str, name: str) -> Commit:
    try:
        return bisect.resolve(repo, ref, name)
    except BisectError as exc:
        raise CompareError(str(exc)) from None


def _prepare(opts: CompareOptions, err: TextIO
             ) -> tuple[Commit, Commit, bool, Path, bisect.Worktrees]:
    """What both modes start from: BASE and HEAD resolved in the repository, whether its
    working tree is dirty, a temporary directory with ``results/`` in it, and the worktrees
    kept there (the worktrees earlier runs killed outright left are removed first, said on
    ``err``). CompareError for a missing repository or a ref that does not resolve."""
    try:
        repo = bisect.open_repo(opts.repo)
    except BisectError as exc:
        raise CompareError(str(exc)) from None
    base, head = _resolve(repo, opts.base, "BASE"), _resolve(repo, opts.head, "HEAD")
    dirty = False
    with contextlib.suppress(gitinfo.GitError):
        dirty = gitinfo.repo_info(opts.repo).dirty
    worktrees = bisect.Worktrees.create(repo, "compare", keep=opts.keep_worktrees, err=err)
    (worktrees.base / "results").mkdir()
    return base, head, dirty, worktrees.base, worktrees


def run(opts: CompareOptions, err: TextIO | None = None) -> CompareOutcome:
    """Run the interleaved sessions and decide; CompareError (exit 2) for bad usage and for
    sessions that produced no numbers. Progress lines go to ``err``."""
    err = err or sys.stderr
    opts = validate(opts)
    base, head, dirty, tmp, worktrees = _prepare(opts, err)
    results_dir = tmp / "results"
    bopts = replace(opts.bisect_options(), python=opts.python)
    comparer = bisect.Bisector(bopts, worktrees, results_dir, base, err, prefix="compare")
    t0 = time.perf_counter()
    try:
        with bisect.sigterm_as_interrupt():
            comparer.say(f"BASE {base.short} ({base.subject}) against HEAD {head.short} "
                         f"({head.subject}): {opts.pairs} interleaved pairs, "
                         f"{2 * opts.pairs} pytest sessions")
            if dirty and opts.head == "HEAD":
                comparer.say("note: the working tree has uncommitted changes; HEAD is the "
                             "last commit, which is what is measured")
            if base.sha == head.sha:
                comparer.say("note: BASE and HEAD are the same commit (an A/A comparison)")
            comparison = comparer.compare(head)
    except BisectError as exc:
        raise CompareError(str(exc)) from None
    finally:
        worktrees.close()
        if opts.keep_worktrees:
            print(f"[compare] kept the worktrees and session results under {tmp}", file=err)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return CompareOutcome(base=base, head=head, comparison=comparison, opts=opts,
                          elapsed_s=time.perf_counter() - t0, dirty=dirty)


def result_document(outcome: CompareOutcome) -> dict[str, Any]:
    """The comparison as a plain, versioned document (``--json``)."""
    def ref(c: Commit) -> dict[str, str]:
        return {"commit": c.sha, "subject": c.subject}

    comp, opts = outcome.comparison, outcome.opts
    tests: dict[str, Any] = {}
    for nodeid, verdicts in sorted(outcome.tests.items()):
        tests[nodeid] = {
            "verdict": ab.overall(verdicts),
            "runs_per_session": outcome.runs_per_session(nodeid),
            "pairs_per_metric": {v.metric: v.n_current for v in verdicts},
            "metrics": [v.to_dict() for v in verdicts],
            "values": {v.metric: outcome.values(nodeid, v.metric) for v in verdicts},
            **({"attribution": block} if (block := comp.attribution(nodeid)) else {}),
            "outputs": outcome.outputs(nodeid),  # issue 25
        }
    return bisect.finite({
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": ref(outcome.base),
        "head": ref(outcome.head),
        "verdict": outcome.verdict,
        "regression": outcome.regressed,
        "message": outcome.headline(),
        "regressions": [{"test": n, "metric": v.metric, "change_pct": v.change_pct,
                         "ci_low_pct": v.ci_low_pct, "ci_high_pct": v.ci_high_pct,
                         "p_value": v.p_value}
                        for n, v in outcome.regressions()],
        "pairs": comp.pairs,
        "interleave": "requests" if opts.served else "sessions",
        "order": ([] if opts.served else
                  [ROLE_NAMES[role] for _, role in bisect.abba_order(comp.pairs)]),
        "elapsed_s": round(outcome.elapsed_s, 3),
        "dirty_working_tree": outcome.dirty,
        "settings": {"pairs": opts.pairs, "alpha": opts.alpha,
                     "alpha_per_test": comp.alpha_per_test,
                     "max_regression_pct": opts.max_regression_pct,
                     "pytest_args": redact_argv(opts.pytest_args), "python": opts.python,
                     "served": redact_command(opts.served) if opts.served else opts.served},
        "left_out": list(comp.left_out),
        "workload_changed": dict(sorted(comp.workload_changed.items())),
        "tests": tests,
    })


def session_points(outcome: CompareOutcome) -> dict[str, list[dict[str, DataPoint]]]:
    """Per side (``base``, ``head``), every session's data points, pair order."""
    return {ROLE_NAMES[role]: list(sessions)
            for role, sessions in outcome.comparison.sides.items() if role in ROLE_NAMES}


# ---------------------------------------------------------------------------------------------
# --served CMD: interleave by request.


def _server_argv(cmd: str, port: int) -> list[str]:
    """CMD split as a shell would (``{port}`` filled in); a CompareError when it cannot be
    (an unbalanced quote, a trailing backslash). The command is not repeated: it may hold a
    secret."""
    try:
        return shlex.split(cmd.replace("{port}", str(port)))
    except ValueError as exc:
        raise CompareError(f"--served: the server command cannot be split as a shell would: "
                           f"{str(exc).lower()} (check its quotes)") from None


def _server(name: str, commit: Commit, worktree: Path, cmd: str, log: Path) -> ManagedServer:
    """One side's server: CMD (``{port}`` filled in) started in its worktree, in its own
    process group, with the sessions' environment; healthy when ``/v1/models`` answers 200.
    Its log and command line are redacted wherever they are shown."""
    port = free_port()
    argv = _server_argv(cmd, port)
    if not argv:
        raise CompareError("--served: an empty server command")
    return ManagedServer(argv, name=f"{name} ({commit.short})", port=port,
                         health_path="/v1/models", env=bisect.session_env(), replace_env=True,
                         cwd=worktree, log_path=log)


def _start_both(servers: list[ManagedServer], timeout: float) -> None:
    """Launch both servers, then wait for each (they start side by side)."""
    deadline = time.monotonic() + timeout
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_healthy(max(0.0, deadline - time.monotonic()))
    except ServerError as exc:
        raise CompareError(f"--served: {exc}") from None


def served_session_args(base_url: str, head_url: str, json_path: Path,
                        alpha: float, pytest_args: list[str]) -> list[str]:
    """The one session's pytest arguments: A is BASE's server, B is HEAD's."""
    return ["--llmperf", "--llmperf-json", str(json_path), "-p", "no:cacheprovider", "-q",
            "--llmperf-url", base_url, "--llmperf-ab", f"url={head_url}",
            "--llmperf-alpha", f"{alpha:g}", *pytest_args]


def ab_outputs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per test, its first A/B's outputs comparison in a session's results (issue 25)."""
    out: dict[str, dict[str, Any]] = {}
    for test in doc.get("tests") or []:
        entries = [e for e in test.get("ab") or [] if isinstance(e, dict)]
        found = entries[0].get("outputs") if entries else None
        if isinstance(found, dict):
            out[str(test.get("nodeid"))] = found
    return out


def ab_verdicts(doc: dict[str, Any]) -> tuple[dict[str, list[stats.MetricVerdict]],
                                              list[str], int]:
    """Per test, its A/B metric verdicts in a session's results (the first A/B of each
    test); the tests that made none; the most pairs any test made."""
    tests: dict[str, list[stats.MetricVerdict]] = {}
    left_out: list[str] = []
    pairs = 0
    for test in doc.get("tests") or []:
        entries = [e for e in test.get("ab") or [] if isinstance(e, dict)]
        if not entries:
            left_out.append(str(test.get("nodeid")))
            continue
        entry = entries[0]
        pairs = max(pairs, int(entry.get("pairs") or 0))
        known = stats.MetricVerdict.__dataclass_fields__
        tests[str(test["nodeid"])] = [
            stats.MetricVerdict(**{k: v for k, v in m.items() if k in known})
            for m in entry.get("metrics") or []]
    return tests, sorted(left_out), pairs


def run_served(opts: CompareOptions, err: TextIO | None = None) -> CompareOutcome:
    """``--served CMD``: start BASE's and HEAD's servers side by side (CMD in each worktree),
    then ONE pytest session in HEAD's worktree sends every request pair to both
    (``--llmperf-url BASE --llmperf-ab url=HEAD``); each test is decided by its paired A/B
    verdict (at ``--alpha`` per test). CompareError (exit 2) for bad usage, a server that
    does not come up, or a session that produced no A/B verdict."""
    import json
    import subprocess

    err = err or sys.stderr
    served = opts.served
    if not served or not served.strip():
        raise CompareError("--served: give the server command, e.g. --served 'python "
                           "serve.py --port {port}'")
    if "{port}" not in served:
        raise CompareError("--served: the command must contain {port} (each side's server "
                           "gets its own port)")
    if not opts.server_timeout > 0:
        raise CompareError("--server-timeout must be > 0")
    _server_argv(served, 0)  # bad quoting is bad usage: said before any worktree is made
    opts = validate(opts)
    base, head, dirty, tmp, worktrees = _prepare(opts, err)

    def say(text: str) -> None:
        print(f"[compare] {text}", file=err, flush=True)

    t0 = time.perf_counter()
    servers: list[ManagedServer] = []
    try:
        with bisect.sigterm_as_interrupt():
            base_tree = worktrees.get(base)
            head_tree = base_tree if head.sha == base.sha else worktrees.get(head)
            for name, commit, tree in (("BASE", base, base_tree), ("HEAD", head, head_tree)):
                servers.append(_server(name, commit, tree, served,
                                       tmp / "results" / f"server-{name.lower()}.log"))
            say(f"BASE {base.short} ({base.subject}) on {servers[0].url}, HEAD {head.short} "
                f"({head.subject}) on {servers[1].url}: waiting for both servers")
            _start_both(servers, opts.server_timeout)
            json_path = tmp / "results" / "session.json"
            cmd = [opts.python, "-m", "pytest",
                   *served_session_args(servers[0].url, servers[1].url, json_path,
                                        opts.alpha, list(opts.pytest_args))]
            if opts.max_regression_pct is not None:
                say("note: --max-regression-pct is not passed to a --served session; the "
                    "markers' tolerances apply")
            say("one session, every request sent to both servers (interleaved by request)")
            proc = subprocess.run(cmd, cwd=head_tree, env=bisect.session_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace", check=False, preexec_fn=die_with_parent())
            why = ""
            tests: dict[str, list[stats.MetricVerdict]] = {}
            left_out: list[str] = []
            outputs: dict[str, dict[str, Any]] = {}
            pairs = 0
            if proc.returncode not in (0, 1):
                why = f"pytest exited with status {proc.returncode}"
            else:
                try:
                    doc = json.loads(json_path.read_text(encoding="utf-8"))
                    tests, left_out, pairs = ab_verdicts(doc)
                    outputs = ab_outputs(doc)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    why = f"no readable results file ({type(exc).__name__}: {exc})"
                else:
                    if not tests:
                        why = "no test marked @llmperf made an A/B verdict"
            if why:
                raise CompareError(f"the --served session in HEAD's worktree ({head.short}) "
                                   f"produced no verdict: {why}; output tail:\n"
                                   f"{bisect._tail(proc.stdout)}")
    except BisectError as exc:
        raise CompareError(str(exc)) from None
    finally:
        for server in servers:
            server.stop()
        worktrees.close()
        if opts.keep_worktrees:
            print(f"[compare] kept the worktrees and session results under {tmp}", file=err)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    comparison = Comparison(commit=head.sha, subject=head.subject, reference=base.sha,
                            pairs=pairs, alpha=opts.alpha, alpha_per_test=opts.alpha,
                            tests=tests, left_out=left_out, outputs=outputs)
    say(f"{head.short} vs {base.short}: {comparison.verdict}")
    return CompareOutcome(base=base, head=head, comparison=comparison, opts=opts,
                          elapsed_s=time.perf_counter() - t0, dirty=dirty)
