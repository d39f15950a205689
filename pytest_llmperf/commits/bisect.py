"""``llmperf bisect GOOD BAD``: the first commit where a performance regression began.

The nightly change-point detection (``llmperf baselines changes``) names a commit where a
shift seems to begin; bisect confirms it with the paired gate. Every commit it measures is
checked out in its own ``git worktree`` (the user's working tree is never touched) and run as
whole pytest sessions (``pytest --llmperf --llmperf-json ...``), one session being one data
point per test. A comparison of a commit X with the known-good commit G interleaves sessions
G X, X G, G X, ... for ``pairs`` pairs and decides per test with ``ab.decide`` (the exact
sign-flip test over the paired log-ratios, joint over the gated metrics), alpha split evenly
over the tests compared (Bonferroni), so one comparison raises a false alarm with probability
at most alpha. X is bad when any test regressed (significant **and** beyond the tolerance).

BAD is compared with GOOD first (no regression: nothing to bisect). Then a binary search over
the first-parent commits of GOOD..BAD, each compared with GOOD, names the first bad one.

The pure logic (``first_bad``, ``abba_order``, ``check_pairs``, ``session_results``,
``judge``) is separate from the git and subprocess work (``Worktrees``, ``run_session``,
``Bisector``) so it can be tested on its own. ``llmperf compare`` (``commits/compare.py``)
makes one such comparison, BASE against HEAD, with the same machinery.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import git

from ..decision import alpha_problem
from ..engines.servers import die_with_parent
from ..files import ReportPathError, atomic_write_text, check_path, dumps, os_reason
from ..limits import PAIRS
from ..reading import ReadLimitError, is_regular_file, read_json
from ..redact import redact_argv
from ..store import gitinfo
from ..values import show
from ..verdict import ab, stats
from ..verdict.attribution import attribution, workload_changes
from ..verdict.thresholds import Thresholds

SCHEMA = "pytest-llmperf/bisect"
VERSION = 1
DEFAULT_PAIRS = 10
TAIL_LINES = 20
# Threshold keywords of a test's marker that shape the paired decision.
# Reports that every session would otherwise write (or append to) on its own.
ENV_DROPPED = ("GITHUB_STEP_SUMMARY", "LLMPERF_JSON", "LLMPERF_HTML", "LLMPERF_MARKDOWN")
# pytest's exit statuses other than 0 (passed) and 1 (some tests failed: numbers still count).
PYTEST_EXIT = {2: "interrupted, e.g. by a collection error", 3: "internal error",
               4: "usage error", 5: "no tests collected"}

Role = Literal["reference", "candidate"]
Summary = Mapping[str, Any]
T = TypeVar("T")


class BisectError(Exception):
    """Bisect cannot go on: bad usage, a bad ref, or a session that produced no numbers.

    The first line of the message is the one-line error; later lines (a session's output
    tail) are detail.
    """


# ---------------------------------------------------------------------------------------------
# Pure logic.


def first_bad(commits: Sequence[T], is_bad: Callable[[T], bool]) -> int:
    """Index of the first bad commit by binary search.

    ``commits`` is oldest first; ``commits[0]`` is known good and ``commits[-1]`` known bad,
    so neither is asked about. ``is_bad`` is called ceil(log2(len(commits) - 1)) times at most.
    """
    if len(commits) < 2:
        raise ValueError("need a good and a bad commit")
    lo, hi = 0, len(commits) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if is_bad(commits[mid]):
            hi = mid
        else:
            lo = mid
    return hi


def abba_order(pairs: int) -> list[tuple[int, Role]]:
    """The order of sessions for ``pairs`` pairs: (pair index, role) in run order.

    Pair i runs the reference first when i is even and the candidate first when i is odd
    (G X, X G, G X, ...), so a slow drift of the machine cancels instead of always hurting
    the same side.
    """
    order: list[tuple[int, Role]] = []
    for i in range(pairs):
        first: tuple[Role, Role] = ("reference", "candidate")
        if i % 2 == 1:
            first = ("candidate", "reference")
        order += [(i, role) for role in first]
    return order


def min_pairs(alpha: float, n_tests: int = 1) -> int:
    """The fewest pairs whose smallest sign-flip p-value (2**-pairs) is below alpha/n_tests."""
    return math.floor(math.log2(max(1, n_tests) / alpha)) + 1


def check_pairs(pairs: int, alpha: float, n_tests: int = 1) -> None:
    """BisectError when ``pairs`` can never flag a regression at ``alpha`` over ``n_tests``.

    The exact sign-flip test's smallest p-value is 2**-pairs; a regression needs p < alpha
    split over the tests, so too few pairs would report every commit as good.
    """
    level = alpha / max(1, n_tests)
    if 2.0 ** -pairs < level:
        return
    need = min_pairs(alpha, n_tests)
    split = (f" split over {n_tests} tests is {level:.3g} per test, and" if n_tests > 1
             else ",")
    raise BisectError(
        f"--pairs {pairs} can never flag a regression: alpha {alpha:g}{split} {pairs} pairs "
        f"reach p = 2**-{pairs} = {2.0 ** -pairs:.3g} at best (the sign-flip test is exact); "
        f"use --pairs {need} or more" + (" or select fewer tests" if n_tests > 1 else "")
        + ", or a larger --alpha")


@dataclass(frozen=True)
class DataPoint:
    """One test's data point from one session: its runs combined, and its marker."""

    summary: dict[str, Any]
    thresholds: dict[str, Any]
    runs: int
    # The first run's workload, engine and prompts' digest (verdict/attribution.py).
    run: dict[str, Any] = field(default_factory=dict)

    def as_run(self) -> dict[str, Any]:
        """A stored-run shape (summary, workload, engine, client) for verdict/attribution."""
        return {"summary": self.summary, **self.run}
    # Outputs (issue 25): the first run's per-request output fingerprints (verdict/outputs.py).
    prints: tuple[dict[str, Any], ...] = ()


def combine(summaries: Sequence[Summary]) -> dict[str, Any]:
    """One summary from a session's runs of a test: the median of each numeric metric.

    A session is one data point however many runs it made (``repeats=N``): runs within one
    session share the machine's state, so pairing them one by one would understate the noise.
    """
    if len(summaries) == 1:
        return dict(summaries[0])
    out: dict[str, Any] = {}
    for key in sorted({k for s in summaries for k in s}):
        values = [s.get(key) for s in summaries]
        numbers = [float(v) for v in values
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers:
            out[key] = statistics.median(numbers)
        else:
            out[key] = next((v for v in values if v is not None), None)
    return out


def session_results(doc: Mapping[str, Any]) -> dict[str, DataPoint]:
    """Per test (its baseline key, else its node id), its data point in one
    ``--llmperf-json`` results document."""
    out: dict[str, DataPoint] = {}
    for test in doc.get("tests") or []:
        runs = [r.get("summary") for r in test.get("runs") or []]
        summaries = [s for s in runs if isinstance(s, Mapping)]
        if not summaries:
            continue
        # The baseline key where the session made one: the worktrees of the two sides lie
        # in different directories, and pytest's node ids move with its rootdir.
        first = (test.get("runs") or [{}])[0]
        first = first if isinstance(first, Mapping) else {}
        client = first.get("client")
        client = client if isinstance(client, Mapping) else {}
        out[str(test.get("key") or test["nodeid"])] = DataPoint(
            summary=combine(summaries), thresholds=dict(test.get("thresholds") or {}),
            runs=len(summaries), prints=output_prints(test.get("runs") or []),
            run={"workload": dict(first.get("workload") or {}),
                 "engine": dict(first.get("engine") or {}),
                 "client": {k: client[k] for k in ("prompts_digest",) if k in client}})
    return out


_PRINT_KEYS = ("index", "warmup", "error", "output_digest", "output_basis", "output_units",
               "output_marks")


def output_prints(runs: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """The first run's samples, only what comparing outputs reads (issue 25)."""
    first = runs[0] if runs and isinstance(runs[0], Mapping) else {}
    samples = first.get("samples")
    return tuple({k: s.get(k) for k in _PRINT_KEYS}
                 for s in (samples if isinstance(samples, list) else [])
                 if isinstance(s, Mapping) and s.get("output_digest") is not None)


def decision_thresholds(marker: Mapping[str, Any],
                        max_regression_pct: float | None) -> Thresholds:
    """What the paired decision uses: the marker's thresholds (its ``gate`` and
    ``max_regression_pct``), the command line's ``--max-regression-pct`` winning."""
    return Thresholds.of(marker).with_tolerance(max_regression_pct)


@dataclass
class Comparison:
    """A candidate commit compared with the reference (known-good) commit."""

    commit: str
    subject: str
    reference: str
    pairs: int
    alpha: float
    alpha_per_test: float
    tests: dict[str, list[stats.MetricVerdict]]
    left_out: list[str] = field(default_factory=list)
    # Per role, its sessions' data points in pair order (not in ``to_dict``).
    sides: dict[str, list[dict[str, DataPoint]]] = field(default_factory=dict, repr=False)
    # Tests whose traffic differs between the two commits: not compared (what changed).
    workload_changed: dict[str, list[str]] = field(default_factory=dict)

    def attribution(self, nodeid: str) -> dict[str, Any] | None:
        """What moved with the test's regression or warning (verdict/attribution.py), from
        its sessions on both sides; None when nothing regressed."""
        if not any(v.verdict in ("regression", "warn") for v in self.tests.get(nodeid, [])):
            return None
        ref, cand = ([s[nodeid].as_run() for s in self.sides.get(role, []) if nodeid in s]
                     for role in ("reference", "candidate"))
        return attribution(ref, cand) if ref and cand else None
    # Outputs (issue 25): per test, HEAD's answers against BASE's where a served comparison's
    # A/B made it (the session mode compares ``sides``' fingerprints instead).
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> str:
        """"regression" when any test regressed, else ab.overall over every test."""
        return ab.overall([v for vs in self.tests.values() for v in vs])

    @property
    def is_bad(self) -> bool:
        return self.verdict == "regression"

    def regressions(self) -> list[tuple[str, stats.MetricVerdict]]:
        """(node id, verdict) of every regressed gated metric."""
        return [(n, v) for n, vs in sorted(self.tests.items()) for v in vs
                if v.gated and v.verdict == "regression"]

    def key_change(self) -> tuple[str, stats.MetricVerdict] | None:
        """The gated metric that got worst (a regressed one when there is one)."""
        found = self.regressions() or [(n, v) for n, vs in sorted(self.tests.items())
                                       for v in vs if v.gated and v.worse_pct is not None]
        if not found:
            return None
        return max(found, key=lambda nv: nv[1].worse_pct or 0.0)

    def describe_lines(self, only_regressions: bool = False) -> list[str]:
        """One line per gated metric (or per regression): node id and ``describe()``."""
        rows = (self.regressions() if only_regressions else
                [(n, v) for n, vs in sorted(self.tests.items()) for v in vs if v.gated])
        return [f"{n}: {v.describe()} -> {v.verdict}" for n, v in rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "subject": self.subject,
            "reference": self.reference,
            "verdict": self.verdict,
            "is_bad": self.is_bad,
            "pairs": self.pairs,
            "alpha": self.alpha,
            "alpha_per_test": self.alpha_per_test,
            "left_out": list(self.left_out),
            "tests": {n: {"verdict": ab.overall(vs),
                          "pairs_per_metric": {v.metric: v.n_current for v in vs},
                          "metrics": [v.to_dict() for v in vs],
                          **({"attribution": block} if (block := self.attribution(n))
                             else {})}
                      for n, vs in sorted(self.tests.items())},
            "workload_changed": dict(sorted(self.workload_changed.items())),
        }


def workload_split(reference: Sequence[Mapping[str, DataPoint]],
                   candidate: Sequence[Mapping[str, DataPoint]]) -> dict[str, list[str]]:
    """The tests whose traffic differs between the two sides (their first sessions'
    workloads or prompts, ``attribution.workload_changes``): what changed, per test."""
    out: dict[str, list[str]] = {}
    if not reference or not candidate:
        return out
    for nodeid in sorted(set(reference[0]) & set(candidate[0])):
        changes = workload_changes([reference[0][nodeid].as_run()],
                                   [candidate[0][nodeid].as_run()])
        if changes:
            out[nodeid] = changes
    return out


def judge(
    reference: Sequence[Mapping[str, DataPoint]],
    candidate: Sequence[Mapping[str, DataPoint]],
    *,
    alpha: float,
    max_regression_pct: float | None = None,
) -> tuple[dict[str, list[stats.MetricVerdict]], list[str], float]:
    """Per-test paired verdicts of the candidate's sessions against the reference's.

    ``reference[i]`` and ``candidate[i]`` are pair i. Only tests with a result in every
    session of both sides are compared; the others are returned as left out. Alpha is split
    evenly over the compared tests. Returns (verdicts per test, left out, alpha per test).
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError("need as many candidate sessions as reference sessions, at least one")
    sessions = [*reference, *candidate]
    every = set.intersection(*(set(s) for s in sessions))
    left_out = sorted(set().union(*(set(s) for s in sessions)) - every)
    per_test = alpha / max(1, len(every))
    verdicts: dict[str, list[stats.MetricVerdict]] = {}
    for nodeid in sorted(every):
        thresholds = decision_thresholds(reference[0][nodeid].thresholds, max_regression_pct)
        try:
            verdicts[nodeid] = ab.decide([s[nodeid].summary for s in reference],
                                         [s[nodeid].summary for s in candidate],
                                         thresholds, per_test)
        except ValueError as exc:  # a marker's gate names an unknown metric
            raise BisectError(f"{nodeid}: {exc}") from None
    return verdicts, left_out, per_test


# ---------------------------------------------------------------------------------------------
# Git and subprocess I/O.


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:12]


@dataclass(kw_only=True)
class SessionOptions:
    """How the paired sessions of ``llmperf bisect`` and ``llmperf compare`` run."""

    repo: Path = field(default_factory=Path.cwd)
    pairs: int = DEFAULT_PAIRS
    alpha: float = stats.DEFAULT_ALPHA
    max_regression_pct: float | None = None
    python: str = field(default_factory=lambda: sys.executable)
    keep_worktrees: bool = False
    pytest_args: list[str] = field(default_factory=list)
    json_path: Path | None = None

    def session_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(SessionOptions)}


@dataclass
class Options(SessionOptions):
    """What ``llmperf bisect`` was asked to do."""

    good: str
    bad: str


def validate(opts: Options) -> Options:
    """The options ready to use (``--python`` as an absolute path, since sessions run in
    other directories); BisectError for values that cannot work, before anything runs."""
    if opts.pairs < 2:
        raise BisectError(f"--pairs {opts.pairs}: need at least 2 pairs "
                          "(one pair cannot show the noise)")
    if opts.pairs > PAIRS.maximum:
        raise BisectError(f"--pairs {show(opts.pairs)} is above the limit: {PAIRS.words()}")
    problem = alpha_problem(opts.alpha)
    if problem:
        raise BisectError(f"--alpha {opts.alpha:g}: {problem}")
    if opts.max_regression_pct is not None and not (
            math.isfinite(opts.max_regression_pct) and opts.max_regression_pct >= 0):
        raise BisectError(f"--max-regression-pct {opts.max_regression_pct:g}: must be a "
                          "number >= 0")
    check_pairs(opts.pairs, opts.alpha)
    found = shutil.which(opts.python)
    if found is None:
        raise BisectError(f"--python {opts.python}: no such executable")
    if opts.json_path is not None:
        try:  # fail now, not after an hour of sessions
            check_path("--json", str(opts.json_path))
        except ReportPathError as exc:
            raise BisectError(str(exc)) from None
    # absolute(), not resolve(): a virtual environment's python is a symlink that must stay one
    return replace(opts, python=str(Path(found).absolute()))


def open_repo(path: Path) -> git.Repo:
    try:
        return gitinfo.open_repo(path)
    except gitinfo.GitError as exc:
        raise BisectError(str(exc)) from None


def resolve(repo: git.Repo, ref: str, name: str) -> Commit:
    """The commit a ref names, with its subject line."""
    root = Path(repo.working_tree_dir or repo.git_dir)
    try:
        sha = gitinfo.resolve_ref(root, ref)
    except gitinfo.GitError as exc:
        raise BisectError(f"{name} {exc}") from None
    return Commit(sha, str(repo.commit(sha).summary))


def candidates(repo: git.Repo, good: Commit, bad: Commit) -> list[Commit]:
    """The first-parent commits of GOOD..BAD, oldest first (BAD last)."""
    if good.sha == bad.sha:
        raise BisectError(f"GOOD and BAD are the same commit ({good.short}): nothing to bisect")
    if not repo.is_ancestor(repo.commit(good.sha), repo.commit(bad.sha)):
        raise BisectError(f"GOOD {good.short} is not an ancestor of BAD {bad.short}: give the "
                          "older, known-good commit first")
    found = repo.iter_commits(f"{good.sha}..{bad.sha}", first_parent=True, reverse=True)
    return [Commit(c.hexsha, str(c.summary)) for c in found]


# The file in a run's worktree directory naming the process that owns it (``Worktrees.create``):
# a run killed outright (SIGKILL, an OOM kill) cannot remove its worktrees, so the next run of
# compare or bisect in the repository removes those whose owner is gone.
OWNER_FILE = "llmperf-owner.json"
OWNER_SCHEMA = "pytest-llmperf/worktrees-owner"


def _process_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from ``/proc`` (Linux), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields_ = fh.read().rpartition(")")[2].split()
        return fields_[0], fields_[19]  # fields 3 and 22 of proc(5)
    except (OSError, IndexError):
        return None


def _owner_gone(owner: Mapping[str, Any]) -> bool:
    """True when the process an owner file names is certainly gone: not running (or a
    zombie), or its pid now belongs to a process started at another time. An owner on
    another host, or one asked to keep its worktrees, is never gone."""
    pid = owner.get("pid")
    if (owner.get("keep") or owner.get("host") != socket.gethostname()
            or isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    now = _process_stat(pid)
    if now is None:
        return False
    return now[0] == "Z" or (owner.get("started") is not None and now[1] != owner["started"])


def _owner(run_dir: Path) -> dict[str, Any] | None:
    """The owner file of a run's worktree directory, when it is one of ours."""
    path = run_dir / OWNER_FILE
    if not is_regular_file(path):
        return None
    try:
        doc = read_json(path, limit=1 << 16)
    except (OSError, ReadLimitError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == OWNER_SCHEMA else None


def remove_stale_worktrees(repo: git.Repo) -> dict[Path, int]:
    """Remove the worktrees (and their whole run directory) that runs of compare or bisect
    killed before they could clean up left in ``repo``; returns each removed run directory
    with its dead owner's pid. Worktrees of a live run, of another host, kept with
    ``--keep-worktrees`` or not made by this tool are left alone."""
    try:
        listing = str(repo.git.worktree("list", "--porcelain"))
    except git.GitCommandError:
        return {}
    trees: dict[Path, list[Path]] = {}
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
            trees.setdefault(path.parent, []).append(path)
    removed: dict[Path, int] = {}
    for run_dir, paths in trees.items():
        owner = _owner(run_dir)
        if owner is None or not _owner_gone(owner):
            continue
        for path in paths:
            with contextlib.suppress(git.GitCommandError):
                repo.git.worktree("remove", "--force", "--force", str(path))
        shutil.rmtree(run_dir, ignore_errors=True)
        removed[run_dir] = int(owner["pid"])
    if removed:
        with contextlib.suppress(git.GitCommandError):
            repo.git.worktree("prune")
    return removed


class Worktrees:
    """Detached ``git worktree``s under one temporary directory, removed on ``close()``."""

    def __init__(self, repo: git.Repo, base: Path, keep: bool = False) -> None:
        self.repo = repo
        self.base = base
        self.keep = keep
        self._paths: dict[str, Path] = {}

    @classmethod
    def create(cls, repo: git.Repo, command: str, *, keep: bool, err: TextIO) -> Worktrees:
        """A new temporary directory for a run of ``command`` (compare, bisect) holding its
        owner file (this process). First the worktrees that earlier runs killed outright
        left in the repository are removed (``remove_stale_worktrees``), said in one line."""
        removed = remove_stale_worktrees(repo)
        if removed:
            pids = ", ".join(str(pid) for pid in sorted(set(removed.values())))
            print(f"[{command}] removed the worktrees of {len(removed)} earlier run(s) "
                  f"killed before they could clean up (process {pids} gone): "
                  + ", ".join(str(d) for d in removed), file=err, flush=True)
        base = Path(tempfile.mkdtemp(prefix=f"llmperf-{command}-"))
        me = _process_stat(os.getpid())
        owner = {"schema": OWNER_SCHEMA, "command": command, "pid": os.getpid(),
                 "started": me[1] if me else None, "host": socket.gethostname(),
                 "keep": keep, "repo": str(repo.working_tree_dir or repo.git_dir)}
        atomic_write_text(base / OWNER_FILE, dumps(owner))
        return cls(repo, base, keep=keep)

    def get(self, commit: Commit) -> Path:
        """The worktree of a commit, checked out on first use."""
        if commit.sha in self._paths:
            return self._paths[commit.sha]
        path = self.base / commit.short
        self._paths[commit.sha] = path  # registered first: an interrupted add is cleaned too
        try:
            self.repo.git.worktree("add", "--detach", str(path), commit.sha)
        except git.GitCommandError as exc:
            raise BisectError(f"cannot check out {commit.short} in a worktree at {path}: "
                              f"{_first_line(exc.stderr)}") from None
        return path

    def release(self, commit: Commit) -> None:
        """Remove a commit's worktree (kept with ``keep``)."""
        path = self._paths.pop(commit.sha, None)
        if path is not None and not self.keep:
            with contextlib.suppress(git.GitCommandError):
                self.repo.git.worktree("remove", "--force", "--force", str(path))
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Remove every worktree still here and git's records of them."""
        for sha in list(self._paths):
            self.release(Commit(sha, ""))
        if not self.keep:
            with contextlib.suppress(git.GitCommandError):
                self.repo.git.worktree("prune")

    @property
    def paths(self) -> list[Path]:
        return list(self._paths.values())


def _first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "git failed"


def _tail(output: str, n: int = TAIL_LINES) -> str:
    lines = output.rstrip().splitlines()[-n:]
    return "\n".join("    " + ln for ln in lines) if lines else "    (no output)"


def session_env() -> dict[str, str]:
    """The environment of a session: ours, less the report outputs every session would write."""
    return {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}


def run_session(python: str, worktree: Path, pytest_args: Sequence[str], json_path: Path,
                commit: Commit) -> dict[str, DataPoint]:
    """One pytest session in a commit's worktree: per test its data point.

    BisectError (with the output's tail) when the session produced no numbers: a crash,
    a collection or usage error, or no test marked @llmperf that measured anything. A test
    that fails its thresholds still has numbers, and they count.
    """
    cmd = [python, "-m", "pytest", "--llmperf", "--llmperf-json", str(json_path),
           "-p", "no:cacheprovider", "-q", *pytest_args]
    json_path.unlink(missing_ok=True)
    try:
        proc = subprocess.run(cmd, cwd=worktree, env=session_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              check=False, preexec_fn=die_with_parent())
    except OSError as exc:
        raise BisectError(f"cannot run {python} -m pytest at {commit.short}: {exc}") from None
    why = ""
    results: dict[str, DataPoint] = {}
    if proc.returncode not in (0, 1):
        meaning = PYTEST_EXIT.get(proc.returncode) or (
            f"killed by signal {-proc.returncode}" if proc.returncode < 0 else "crashed")
        why = f"pytest exited with status {proc.returncode} ({meaning})"
    else:
        try:
            results = session_results(json.loads(json_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f"no readable results file ({type(exc).__name__}: {exc})"
        else:
            if not results:
                why = "no test marked @llmperf measured anything"
    if why:
        raise BisectError(f"the pytest session at {commit.short} ({commit.subject}) produced "
                          f"no numbers: {why}; output tail:\n{_tail(proc.stdout)}")
    return results


class Bisector:
    """Runs the comparisons: every candidate against the known-good reference."""

    def __init__(self, opts: Options, worktrees: Worktrees, workdir: Path, reference: Commit,
                 err: TextIO, prefix: str = "bisect") -> None:
        self.opts = opts
        self.prefix = prefix
        self.worktrees = worktrees
        self.workdir = workdir
        self.reference = reference
        self.err = err
        self.comparisons: dict[str, Comparison] = {}
        self._sessions = 0
        self._checked = False

    def say(self, text: str) -> None:
        print(f"[{self.prefix}] {text}", file=self.err, flush=True)

    def session(self, commit: Commit) -> dict[str, DataPoint]:
        self._sessions += 1
        path = self.workdir / f"{self._sessions:04d}-{commit.short}.json"
        results = run_session(self.opts.python, self.worktrees.get(commit),
                              self.opts.pytest_args, path, commit)
        if not self._checked:  # the first session says how many tests alpha is split over
            self._checked = True
            check_pairs(self.opts.pairs, self.opts.alpha, len(results))
        return results

    def compare(self, candidate: Commit) -> Comparison:
        """Interleave reference and candidate sessions (ABBA) and decide."""
        ref, cand = self.reference, candidate
        sides: dict[Role, list[dict[str, DataPoint]]] = {"reference": [], "candidate": []}
        n = self.opts.pairs
        for k, (i, role) in enumerate(abba_order(n)):
            commit = ref if role == "reference" else cand
            self.say(f"comparing {cand.short} against {ref.short}: pair {i + 1}/{n}, "
                     f"run {k + 1}/{2 * n} ({commit.short}) ...")
            sides[role].append(self.session(commit))
        changed = workload_split(sides["reference"], sides["candidate"])
        verdicts, left_out, per_test = judge(
            [{k: v for k, v in s.items() if k not in changed} for s in sides["reference"]],
            [{k: v for k, v in s.items() if k not in changed} for s in sides["candidate"]],
            alpha=self.opts.alpha, max_regression_pct=self.opts.max_regression_pct)
        for nodeid, changes in changed.items():
            self.say(f"note: {nodeid} not compared: its workload changed between "
                     f"{ref.short} and {cand.short} ({'; '.join(changes)})")
        if not verdicts:
            raise BisectError(f"{cand.short} and {ref.short} share no test with results in "
                              "every session and the same workload; nothing to compare")
        for nodeid in left_out:
            self.say(f"warning: {nodeid} left out of {cand.short} vs {ref.short}: it has no "
                     "results in every session")
        result = Comparison(commit=cand.sha, subject=cand.subject, reference=ref.sha, pairs=n,
                            alpha=self.opts.alpha, alpha_per_test=per_test, tests=verdicts,
                            left_out=left_out,
                            sides={str(k): v for k, v in sides.items()},
                            workload_changed=changed)
        change = _key_change_text(result)
        self.say(f"{cand.short} vs {ref.short}: {result.verdict}"
                 + (f" ({change})" if change != "-" else ""))
        self.comparisons[cand.sha] = result
        if cand.sha != ref.sha:
            self.worktrees.release(cand)
        return result


# ---------------------------------------------------------------------------------------------
# Output.


def _key_change_text(c: Comparison) -> str:
    key = c.key_change()
    if key is None or key[1].change_pct is None:
        return "-"
    nodeid, v = key
    where = f" in {nodeid.rsplit('::', 1)[-1]}" if len(c.tests) > 1 else ""
    return f"{v.metric} {v.change_pct:+.1f}%{where}"


def format_table(good: Commit, commits: Sequence[Commit], comparisons: Mapping[str, Comparison],
                 first: Commit | None) -> str:
    """Every commit tested (and GOOD), oldest first: commit, subject, verdict, key change."""
    rows = [("commit", "subject", "verdict", "key change")]
    rows.append((good.short, good.subject, "good (reference)", "-"))
    for c in commits:
        comp = comparisons.get(c.sha)
        if comp is None:
            continue
        verdict = comp.verdict + (" <- first bad" if first is not None and c == first else "")
        rows.append((c.short, c.subject, verdict, _key_change_text(comp)))
    subj = min(40, max(len(r[1]) for r in rows))
    rows = [(a, b if len(b) <= subj else b[: subj - 3] + "...", v, k) for a, b, v, k in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:{widths[0]}}  {b:{widths[1]}}  {v:{widths[2]}}  {k}".rstrip()
                     for a, b, v, k in rows)


def finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def result_document(opts: Options, good: Commit, bad: Commit, commits: Sequence[Commit],
                    comparisons: Mapping[str, Comparison], confirmed: bool,
                    first: Commit | None) -> dict[str, Any]:
    """The bisect's outcome as a plain, versioned document (``--json``)."""
    def ref(c: Commit) -> dict[str, str]:
        return {"commit": c.sha, "subject": c.subject}

    order = {c.sha: i for i, c in enumerate(commits)}
    tested = sorted(comparisons.values(), key=lambda comp: order.get(comp.commit, -1))
    return finite({
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "good": ref(good),
        "bad": ref(bad),
        "confirmed": confirmed,
        "first_bad": ref(first) if first is not None else None,
        "candidates": [c.sha for c in commits],
        "settings": {"pairs": opts.pairs, "alpha": opts.alpha,
                     "max_regression_pct": opts.max_regression_pct,
                     "pytest_args": redact_argv(opts.pytest_args), "python": opts.python},
        "comparisons": [comp.to_dict() for comp in tested],
    })


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so the worktrees are removed."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# The command.


def run(opts: Options, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Bisect; returns the exit status: 0 first bad commit found, 1 regression not confirmed.

    Raises BisectError (exit 2) for bad usage and for sessions that produced no numbers.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    opts = validate(opts)
    repo = open_repo(opts.repo)
    good, bad = resolve(repo, opts.good, "GOOD"), resolve(repo, opts.bad, "BAD")
    commits = candidates(repo, good, bad)
    worktrees = Worktrees.create(repo, "bisect", keep=opts.keep_worktrees, err=err)
    base = worktrees.base
    results_dir = base / "results"
    results_dir.mkdir()
    try:
        with sigterm_as_interrupt():
            return _bisect(opts, good, bad, commits,
                           Bisector(opts, worktrees, results_dir, good, err), out, err)
    finally:
        worktrees.close()
        if opts.keep_worktrees:
            print(f"[bisect] kept the worktrees and session results under {base}", file=err)
        else:
            shutil.rmtree(base, ignore_errors=True)


def _bisect(opts: Options, good: Commit, bad: Commit, commits: list[Commit],
            bisector: Bisector, out: TextIO, err: TextIO) -> int:
    steps = math.ceil(math.log2(len(commits))) if len(commits) > 1 else 0
    bisector.say(f"{len(commits)} commit(s) after {good.short} up to {bad.short}; confirming "
                 f"the regression, then about {steps} more comparison(s) of {opts.pairs} pairs")
    confirm = bisector.compare(bad)
    if not confirm.is_bad:
        print(f"regression not confirmed: {bad.short} is not slower than {good.short} "
              f"({confirm.verdict}, {opts.pairs} interleaved pairs, alpha {opts.alpha:g})",
              file=out)
        for line in confirm.describe_lines():
            print(f"  {line}", file=out)
        _finish(opts, good, bad, commits, bisector, None, out)
        return 1
    index = first_bad([good, *commits], lambda c: bisector.compare(c).is_bad)
    first = commits[index - 1]
    guilty = bisector.comparisons[first.sha]
    print(f"first bad commit: {first.short} {first.subject}", file=out)
    for line in guilty.describe_lines(only_regressions=True):
        print(f"  {line}", file=out)
    _finish(opts, good, bad, commits, bisector, first, out)
    return 0


def _finish(opts: Options, good: Commit, bad: Commit, commits: Sequence[Commit],
            bisector: Bisector, first: Commit | None, out: TextIO) -> None:
    print("", file=out)
    print(format_table(good, commits, bisector.comparisons, first), file=out)
    if opts.json_path is not None:
        doc = result_document(opts, good, bad, commits, bisector.comparisons,
                              confirmed=first is not None, first=first)
        try:
            atomic_write_text(opts.json_path, dumps(doc))
        except OSError as exc:
            raise BisectError(f"--json {opts.json_path}: cannot write: "
                              f"{os_reason(exc)}") from None
