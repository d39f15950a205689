"""Nightly regression reports: change points over the stored history of every profile, test
and gated metric, each with its commit range and the ``llmperf bisect`` command that pins it.

The series of a (profile, test, metric) is the commits of ``git rev-list --first-parent HEAD``
that have a clean baseline file for the profile (``<commit>.dirty.json`` files never count),
oldest first, each with all of its runs' values (not their mean); only the runs of the test's
newest workload count (an edited workload starts a new history). The metrics are the default
gated ones plus those the test's marker gated (recorded with the runs, see ``recorded_args``).
``changepoints.detect`` finds the change points; one for the worse (by
``metric_table.higher_is_better``) is a regression, one for the better an improvement, which
is reported but never fails. Each names its last good commit (the series' commit before the
change) and first bad commit (the first of the new level): the change landed in between, and
``llmperf bisect LAST_GOOD FIRST_BAD -- <the pytest arguments that produced the series>``
pins it.

The state file (``<store>/.llmperf-nightly-state.json`` by default; plain sorted JSON, written
atomically) remembers the regressions already reported, by (profile, test, metric, first bad
commit). A regression is new unless the state holds one of the same profile, test and metric
whose first bad commit is that commit or its neighbour in the series: a change point placed
one commit later (or earlier) as more nights arrive is the same regression.

Provenance: ``Gate.save`` records, with every run, the pytest arguments of the session
(``recorded_args``: the options that only name outputs or saving are left out; test paths are
made relative to the repository root, where bisect runs its sessions) as
``client.pytest_args``, and the metrics the marker gated as ``client.gated``. The store is
not trusted to name commands or files: the command shown and ``--bisect`` use only the stored
arguments ``replay.check`` allows; a finding whose arguments hold another names it
(``refused``) and is not bisected.

The state file is read through ``reading`` (a regular file, bounded, strict JSON) and every
entry is checked; a state that cannot be read or holds a bad entry is refused whole
(``NightlyError``, exit 2) and never overwritten, so no reported regression is forgotten.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import reading
from ..decision import DEFAULT_ALPHA, DEFAULT_TOLERANCE_PCT, alpha_problem
from ..files import atomic_write_text, dumps, os_reason
from ..metric_table import DEFAULT_GATED, higher_is_better
from ..redact import redact_argv
from ..run.workload import workload_key
from ..store import gitinfo
from ..store.baselines import Baseline, BaselineError, BaselineStore, run_value
from ..store.keys import canonical_keys
from ..store.provenance import run_args, run_gated
from ..values import is_finite_number
from ..verdict import changepoints
from ..verdict.attribution import attribution
from . import replay

SCHEMA = "pytest-llmperf/nightly"
STATE_SCHEMA = "pytest-llmperf/nightly-state"
SCHEMA_VERSION = 1
STATE_NAME = ".llmperf-nightly-state.json"
MAX_COMMITS = 5000  # first-parent commits looked at, newest first

class NightlyError(ValueError):
    """The history cannot be read (no repository, no store): one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# The history.


@dataclass(frozen=True)
class Point:
    """One commit of a series: its runs' values of the metric."""

    commit: str
    subject: str
    committed_at: str
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.values))


@dataclass
class Finding:
    """One change point of one (profile, test, metric) series."""

    profile_id: str
    nodeid: str
    metric: str
    kind: str  # "regression" (for the worse) or "improvement"
    last_good: str
    last_good_subject: str
    first_bad: str
    first_bad_subject: str
    between: int  # first-parent commits after last_good before first_bad (no baseline)
    before: float
    after: float
    change_pct: float
    ci_low_pct: float
    ci_high_pct: float
    p_value: float
    index: int  # of the first bad commit in the series
    order: int  # of the first bad commit in the first-parent history, 0 the oldest
    pytest_args: tuple[str, ...]
    args_recorded: bool
    new: bool = True
    bisect: dict[str, Any] | None = None
    refused: tuple[replay.Refused, ...] = ()  # stored arguments nightly does not replay
    # What moved with it between the last good and the first bad commit's runs
    # (verdict/attribution.py); None for an improvement.
    attribution: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.profile_id, self.nodeid, self.metric, self.first_bad)

    @property
    def bisect_command(self) -> str:
        args = " ".join(shlex.quote(a) for a in redact_argv(self.pytest_args))
        return f"llmperf bisect {self.last_good[:12]} {self.first_bad[:12]} -- {args}".rstrip()

    @property
    def args_note(self) -> str:
        return "" if self.args_recorded else (
            "the pytest arguments were not recorded in these baselines (saved before "
            "pytest-llmperf recorded them): the command runs the test by its node id")

    @property
    def replay_note(self) -> str:
        """Why ``--bisect`` does not run the stored arguments ("" when it may)."""
        if not self.refused:
            return ""
        return ("bisect does not run these stored arguments: the baseline store is not "
                "trusted to name commands or files, and it holds "
                + "; ".join(str(r) for r in self.refused) + ". Check them before you run "
                "the command yourself, or give the pytest arguments with llmperf nightly "
                "--bisect --bisect-args '...'")

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile_id": self.profile_id, "nodeid": self.nodeid, "metric": self.metric,
            "kind": self.kind, "new": self.new,
            "last_good": {"commit": self.last_good, "subject": self.last_good_subject},
            "first_bad": {"commit": self.first_bad, "subject": self.first_bad_subject},
            "commits_between": self.between,
            "before": _finite(self.before), "after": _finite(self.after),
            "change_pct": _finite(self.change_pct),
            "ci_low_pct": _finite(self.ci_low_pct), "ci_high_pct": _finite(self.ci_high_pct),
            "p_value": _finite(self.p_value), "index": self.index,
            "higher_is_better": higher_is_better(self.metric),
            "pytest_args": redact_argv(self.pytest_args), "args_recorded": self.args_recorded,
            "bisect_command": self.bisect_command, "note": self.args_note,
            "replay_refused": [{"argument": r.argument, "reason": r.reason}
                               for r in self.refused],
            "replay_note": self.replay_note,
            "bisect": self.bisect,
            "attribution": self.attribution,
        }


def _finite(value: float) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass
class Series:
    """One (profile, test, metric) series and what the detector said of it."""

    profile_id: str
    nodeid: str
    metric: str
    points: list[Point]
    status: str = "ok"  # "ok" | "too short"
    note: str = ""
    findings: list[Finding] = field(default_factory=list)
    left_out: int = 0  # commits whose runs were of an older workload
    # Per commit of a point, its runs' summary, workload, engine and prompts' digest (for
    # ``attribution``; not in ``to_dict``).
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def regressed(self) -> bool:
        return any(f.kind == "regression" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile_id": self.profile_id, "nodeid": self.nodeid, "metric": self.metric,
            "status": self.status, "note": self.note,
            "higher_is_better": higher_is_better(self.metric),
            "commits": [{"commit": p.commit, "subject": p.subject,
                         "committed_at": p.committed_at, "values": list(p.values)}
                        for p in self.points],
            "change_points": [f.to_dict() for f in self.findings],
            "older_workload_commits": self.left_out,
        }


@dataclass
class NightlyReport:
    """Every series of the store, its change points, and the notes (unreadable files)."""

    store: str
    repo: str
    head: str
    alpha: float
    min_change_pct: float
    series: list[Series]
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="seconds"))

    @property
    def findings(self) -> list[Finding]:
        """Every change point, newest first (by the first bad commit's place in history)."""
        return sorted((f for s in self.series for f in s.findings), key=lambda f: -f.order)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "regression"]

    @property
    def new_regressions(self) -> list[Finding]:
        return [f for f in self.regressions if f.new]

    @property
    def improvements(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "improvement"]

    @property
    def too_short(self) -> list[Series]:
        return [s for s in self.series if s.status == "too short"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": self.created,
            "store": self.store, "repo": self.repo, "head": self.head,
            "alpha": self.alpha, "min_change_pct": self.min_change_pct,
            "regressions": [f.to_dict() for f in self.regressions],
            "new_regressions": len(self.new_regressions),
            "improvements": [f.to_dict() for f in self.improvements],
            "too_short": [{"profile_id": s.profile_id, "nodeid": s.nodeid,
                           "metric": s.metric, "note": s.note} for s in self.too_short],
            "series": [s.to_dict() for s in self.series],
            "notes": list(self.notes),
        }


def first_parent(repo: Path, limit: int = MAX_COMMITS) -> list[tuple[str, str]]:
    """(commit, subject) of ``git rev-list --first-parent HEAD``, newest first."""
    r = gitinfo.open_repo(repo)
    try:
        text = r.git.log("--first-parent", f"--max-count={limit}", "--format=%H%x00%s", "HEAD")
    except Exception as exc:  # gitpython: GitCommandError (no commits, a broken repo)
        raise NightlyError(f"cannot list the history of {repo}: "
                           f"{str(exc).strip().splitlines()[-1]}") from None
    out = []
    for line in str(text).splitlines():
        sha, _, subject = line.partition("\x00")
        if sha:
            out.append((sha.strip(), subject))
    return out


def _slim(run: Mapping[str, Any]) -> dict[str, Any]:
    """What ``attribution`` reads of a stored run: no samples."""
    client = run.get("client")
    return {"summary": run.get("summary") or {}, "workload": run.get("workload") or {},
            "engine": run.get("engine") or {},
            "client": {"prompts_digest": client.get("prompts_digest")}
            if isinstance(client, Mapping) and client.get("prompts_digest") else {}}


def build_series(store: BaselineStore, history: Sequence[tuple[str, str]],
                 profile: str | None = None) -> tuple[list[Series], list[str],
                                                      dict[str, list[str] | None]]:
    """The series of every profile, test and metric (oldest commit first), the notes, and
    per (profile, nodeid) key ``profile\\0nodeid`` the pytest arguments of its newest runs
    (None when they were not recorded)."""
    order = list(reversed(history))  # oldest first
    subjects = dict(history)
    notes: list[str] = []
    out: list[Series] = []
    args_of: dict[str, list[str] | None] = {}
    by_profile: dict[str, set[str]] = {}
    for e in store.entries(dirty=False):
        if profile and not (e.profile_id == profile or e.profile_id.startswith(profile)):
            continue
        by_profile.setdefault(e.profile_id, set()).add(e.commit)
    for pid, commits in sorted(by_profile.items()):
        loaded: list[Baseline] = []
        for sha, _ in order:
            if sha not in commits:
                continue
            try:
                loaded.append(store.load(pid, sha))
            except BaselineError as exc:
                notes.append(f"skipped {exc}")
        off = sorted(commits - {sha for sha, _ in order})
        if off:
            notes.append(f"profile {pid}: {len(off)} baseline(s) of commits not on the first-"
                         f"parent history of HEAD left out ({', '.join(c[:12] for c in off[:3])}"
                         f"{' ...' if len(off) > 3 else ''})")
        # One series per test, whichever spelling of its key each baseline used (store.keys).
        spelling = canonical_keys(list(b.tests) for b in reversed(loaded))

        def runs_of(b: Baseline, key: str,
                    spelling: Mapping[str, str] = spelling) -> list[dict[str, Any]]:
            return [r for k in b.tests if spelling.get(k) == key for r in b.runs(k)]

        for nodeid in sorted(set(spelling.values())):
            with_runs = [b for b in loaded if runs_of(b, nodeid)]
            newest = runs_of(with_runs[-1], nodeid)
            wl = workload_key(newest[-1])
            args_of[f"{pid}\0{nodeid}"] = run_args(newest[-1])
            metrics = list(DEFAULT_GATED)
            for b in with_runs:
                for run in runs_of(b, nodeid):
                    metrics += [m for m in run_gated(run) if m not in metrics]
            per_commit = [(b, [r for r in runs_of(b, nodeid) if workload_key(r) == wl])
                          for b in with_runs]
            left_out = sum(1 for _, runs in per_commit if not runs)
            slim = {b.commit: [_slim(r) for r in runs] for b, runs in per_commit if runs}
            for metric in metrics:
                points = []
                for b, runs in per_commit:
                    values = [v for v in (run_value(r, metric) for r in runs)
                              if v is not None and math.isfinite(v) and v > 0]
                    if values:
                        points.append(Point(b.commit, subjects.get(b.commit, ""),
                                            b.committed_at, tuple(values)))
                if points or metric in DEFAULT_GATED:
                    out.append(Series(pid, nodeid, metric, points, left_out=left_out,
                                      runs=slim))
    return out, notes, args_of


# ---------------------------------------------------------------------------------------------
# The state file.


def default_state_path(store_dir: str | Path) -> Path:
    return Path(store_dir) / STATE_NAME


_STATE_KEYS = ("profile_id", "nodeid", "metric", "first_bad")  # the key: text, required
_STATE_TEXT = ("last_good", "reported_at", "bisect_first_bad")  # text when present


def load_state(path: str | Path) -> list[dict[str, Any]]:
    """The regressions already reported; [] when the file does not exist. NightlyError (one
    line) when it exists but cannot be read (not a regular file, too large, not JSON, NaN,
    nested too deeply) or is not a state file whose every entry is well formed: the caller
    then stops before writing anything, so the file is kept as it is."""
    path = Path(path)
    if not path.exists():
        return []
    keep = "; it was not changed: fix or delete it (every regression is then reported again)"
    try:
        data = reading.read_json(path)
    except (OSError, ValueError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise NightlyError(f"--state {path}: unreadable ({reason}){keep}") from None
    reported = data.get("reported") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA
            or not isinstance(reported, list)):
        raise NightlyError(f"--state {path}: not a pytest-llmperf nightly state file{keep}")
    for i, entry in enumerate(reported):
        problem = _entry_problem(entry)
        if problem:
            raise NightlyError(f"--state {path}: entry {i} of \"reported\" {problem}{keep}")
    return [dict(r) for r in reported]


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one state entry, or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    for key in _STATE_KEYS:
        if not isinstance(entry.get(key), str) or not entry[key]:
            return f"has no text {key!r}"
    for key, value in entry.items():
        if key in _STATE_TEXT and not isinstance(value, str):
            return f"has a {key!r} that is not text"
        if key == "change_pct" and value is not None and not is_finite_number(value):
            return "has a 'change_pct' that is not a finite number"
        if not isinstance(value, str | bool | None) and not is_finite_number(value):
            return f"has a {key!r} that is not a plain value"
    return None


def save_state(path: str | Path, reported: Iterable[Mapping[str, Any]]) -> None:
    entries = sorted((dict(r) for r in reported),
                     key=lambda r: (r["profile_id"], r["nodeid"], r["metric"], r["first_bad"]))
    atomic_write_text(path, dumps({"schema": STATE_SCHEMA, "schema_version": SCHEMA_VERSION,
                                   "reported": entries}))


def _known(reported: Sequence[Mapping[str, Any]], series: Series, index: int) -> bool:
    """Whether a regression at ``index`` of ``series`` was reported: same profile, test and
    metric, at that commit or one stored commit either side of it."""
    near = {p.commit for p in series.points[max(0, index - 1): index + 2]}
    return any(r["profile_id"] == series.profile_id and r["nodeid"] == series.nodeid
               and r["metric"] == series.metric and r["first_bad"] in near for r in reported)


# ---------------------------------------------------------------------------------------------
# The analysis.


def analyse(store_dir: str | Path, *, repo: str | Path | None = None,
            alpha: float = DEFAULT_ALPHA, min_change_pct: float = DEFAULT_TOLERANCE_PCT,
            profile: str | None = None,
            reported: Sequence[Mapping[str, Any]] = ()) -> NightlyReport:
    """Every series of the store and its change points; regressions in ``reported`` (the
    state file's entries) are marked not new."""
    problem = alpha_problem(alpha)
    if problem:
        raise NightlyError(f"--alpha {alpha!r}: {problem}")
    if not (math.isfinite(min_change_pct) and min_change_pct >= 0):
        raise NightlyError(f"--min-change-pct {min_change_pct!r}: must be 0 or more")
    store_path = Path(store_dir)
    if not store_path.is_dir():
        raise NightlyError(f"no baseline directory at {store_path}: save baselines with "
                           "pytest --llmperf --llmperf-save, or give --dir")
    try:
        root = gitinfo.open_repo(repo if repo is not None else store_path)
    except gitinfo.GitError as exc:
        raise NightlyError(f"{exc} (the history comes from git: give --repo)") from None
    repo_root = Path(root.working_tree_dir or store_path).resolve()
    history = first_parent(repo_root)
    position = {sha: i for i, (sha, _) in enumerate(reversed(history))}
    store = BaselineStore(store_path)
    series, notes, args_of = build_series(store, history, profile)
    if not store.entries(dirty=False):
        notes.append(f"no clean baselines in {store_path}")
    for s in series:
        if len(s.points) == 0:
            s.status, s.note = "too short", "no commits with this metric"
            continue
        detection = changepoints.detect([list(p.values) for p in s.points], alpha=alpha,
                                        min_change_pct=min_change_pct)
        s.status, s.note = detection.status, detection.note
        args = args_of.get(f"{s.profile_id}\0{s.nodeid}")
        stored = tuple(args) if args is not None else (s.nodeid,)
        replayed = replay.check(stored)
        for cp in detection.change_points:
            if not 0 < cp.index < len(s.points):
                continue
            good, bad = s.points[cp.index - 1], s.points[cp.index]
            worse = cp.change_pct < 0 if higher_is_better(s.metric) else cp.change_pct > 0
            kind = "regression" if worse else "improvement"
            s.findings.append(Finding(
                profile_id=s.profile_id, nodeid=s.nodeid, metric=s.metric, kind=kind,
                last_good=good.commit, last_good_subject=good.subject,
                first_bad=bad.commit, first_bad_subject=bad.subject,
                between=position.get(bad.commit, 0) - position.get(good.commit, 0) - 1,
                before=cp.before, after=cp.after, change_pct=cp.change_pct,
                ci_low_pct=cp.ci_low_pct, ci_high_pct=cp.ci_high_pct, p_value=cp.p_value,
                index=cp.index, order=position.get(bad.commit, 0),
                pytest_args=replayed.args if replayed.ok else stored,
                args_recorded=args is not None,
                refused=replayed.refused,
                new=kind == "regression" and not _known(reported, s, cp.index),
                attribution=attribution(s.runs.get(good.commit, []), s.runs.get(bad.commit, []))
                if kind == "regression" else None))
        s.findings.sort(key=lambda f: -f.order)  # newest first
    head = history[0][0] if history else ""
    return NightlyReport(store=str(store_path), repo=str(repo_root), head=head, alpha=alpha,
                         min_change_pct=min_change_pct, series=series, notes=notes)


def state_entries(report: NightlyReport, reported: Sequence[Mapping[str, Any]]
                  ) -> list[dict[str, Any]]:
    """The state after this night: what was there and every new regression."""
    out = [dict(r) for r in reported]
    have = {(r["profile_id"], r["nodeid"], r["metric"], r["first_bad"]) for r in out}
    for f in report.new_regressions:
        if f.key in have:
            continue
        entry: dict[str, Any] = {
            "profile_id": f.profile_id, "nodeid": f.nodeid, "metric": f.metric,
            "first_bad": f.first_bad, "last_good": f.last_good,
            "change_pct": _finite(f.change_pct), "reported_at": report.created}
        if f.bisect and f.bisect.get("first_bad"):
            entry["bisect_first_bad"] = f.bisect["first_bad"]
        out.append(entry)
        have.add(f.key)
    return out


def ordered_series(report: NightlyReport) -> list[Series]:
    """The series as the page shows them: regressed first (new ones first, newest change
    first), then those with an improvement, then the rest, then the too-short ones."""
    def rank(s: Series) -> tuple[int, int, str, str, str]:
        if s.regressed:
            group = 0 if any(f.new for f in s.findings if f.kind == "regression") else 1
        elif s.findings:
            group = 2
        elif s.status != "too short":
            group = 3
        else:
            group = 4
        newest = max((f.order for f in s.findings), default=0)
        return (group, -newest, s.profile_id, s.nodeid, s.metric)

    return sorted(report.series, key=rank)
