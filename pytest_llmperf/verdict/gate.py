"""Glue between the plugin and the statistics: a test's runs against its baseline -> verdicts.

``Gate`` is made once per pytest process from the settings. It finds the repository from
pytest's rootdir, else from the test paths given and the invocation directory (a rootdir moved
outside the repository, e.g. by an option value pytest took for a path, does not switch the
gate off). It finds the baseline commit (``--llmperf-compare REF``, else the nearest ancestor
of HEAD with a clean baseline for the run's profile); a baseline file that cannot be read is
skipped for the next valid ancestor, and the comparison's message names it. It compares each
test's runs with it (``stats.compare_stored``), and at the end of the session saves the runs
under HEAD (``--llmperf-save``, on the controller only; a dirty tree's runs go to the
commit's separate ``.dirty.json`` file, see ``store``).
``failure`` turns a comparison's gated regressions into the test's ``outcome.Failure``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..formatting import num
from ..metric_table import DEFAULT_GATED, DEFAULT_WATCHED, SUMMARY_KEYS
from ..run.metrics import RunResult
from . import gitinfo, stats
from .outcome import Failure
from .profile import differences, make_profile, mismatch_message, profile_id
from .store import Baseline, BaselineError, BaselineStore, run_value

if TYPE_CHECKING:
    from ..settings import Settings

DEFAULT_DIR = "baselines"


class GateUsageError(ValueError):
    """Bad gate options or an unusable repository: one line naming the problem and the fix."""


class GateConfigError(ValueError):
    """A marker asks the gate for something it cannot do (an unknown metric)."""


@dataclass
class Lookup:
    """Where a profile's baseline is: status, the baseline file, and the history behind it."""

    status: str  # "compared" (a baseline exists), "no baseline", "profile mismatch"
    message: str
    baseline: Baseline | None = None
    history: list[Baseline] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable nearer baselines' errors


def gated_metrics(thresholds: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(gated, watched) metric names for a marker's thresholds."""
    gate = thresholds.get("gate")
    gated = list(gate) if gate else list(DEFAULT_GATED)
    tol = thresholds.get("max_regression_pct")
    if isinstance(tol, Mapping):
        gated += [m for m in tol if m not in gated]
    bad = [m for m in gated if m not in SUMMARY_KEYS]
    if bad:
        raise GateConfigError(
            f"gate / max_regression_pct name unknown metric(s) {', '.join(sorted(bad))}; "
            f"use summary keys such as {', '.join(DEFAULT_GATED)}"
        )
    watched = [m for m in DEFAULT_WATCHED if m not in gated]
    return gated, watched


def tolerance_for(thresholds: Mapping[str, Any], metric: str) -> float:
    tol = thresholds.get("max_regression_pct")
    if isinstance(tol, Mapping):
        return float(tol.get(metric, stats.DEFAULT_TOLERANCE_PCT))
    if tol is None:
        return stats.DEFAULT_TOLERANCE_PCT
    return float(tol)


def _as_dict(run: RunResult | Mapping[str, Any]) -> dict[str, Any]:
    return run.to_dict() if isinstance(run, RunResult) else dict(run)


def compare_runs(
    thresholds: Mapping[str, Any],
    baseline_runs: Sequence[Mapping[str, Any]],
    current_runs: Sequence[Mapping[str, Any]],
    history: Sequence[Sequence[Mapping[str, Any]]] = (),
    *,
    alpha: float = stats.DEFAULT_ALPHA,
) -> list[stats.MetricVerdict]:
    """Every gated and watched metric of the runs against the baseline runs.

    ``alpha`` is the test's false-alarm budget: it is split evenly over the gated metrics
    (Bonferroni), so a test with three gated metrics alarms falsely at most ``alpha`` of the
    time, not three times that.
    """
    gated, watched = gated_metrics(thresholds)
    alpha = stats.per_metric_alpha(alpha, len(gated))
    out = []
    for metric, is_gated in [(m, True) for m in gated] + [(m, False) for m in watched]:
        cur = [run_value(r, metric) for r in current_runs]
        if all(v is None for v in cur):
            continue  # this workload does not produce the metric (e.g. no SLO, no accuracy)
        out.append(stats.compare_stored(
            metric,
            [run_value(r, metric) for r in baseline_runs],
            cur,
            [[run_value(r, metric) for r in h] for h in history],
            alpha=alpha,
            tolerance_pct=tolerance_for(thresholds, metric),
            gated=is_gated,
        ))
    return out


def _workload_key(run: Mapping[str, Any]) -> str:
    return json.dumps(run.get("workload", {}), sort_keys=True, default=str)


def failure_message(comparison: Mapping[str, Any] | None) -> str:
    """The gate's part of a test's failure message ('' when nothing gated regressed)."""
    if not comparison:
        return ""
    bad = [m for m in comparison.get("metrics", [])
           if m.get("gated") and m.get("verdict") == "regression"]
    if not bad:
        return ""
    commit = (comparison.get("baseline_commit") or "")[:12]
    head = (f"{len(bad)} llmperf regression(s) against baseline {commit} "
            f"(alpha {comparison.get('alpha', stats.DEFAULT_ALPHA):g}):")
    lines = [head]
    for m in bad:
        lines.append("  " + stats.MetricVerdict(**{
            k: m[k] for k in stats.MetricVerdict.__dataclass_fields__ if k in m
        }).describe())
    return "\n".join(lines)


def regression_clauses(comparison: Mapping[str, Any] | None) -> list[str]:
    """``regression tpot_p50_ms 41.2 vs baseline 35.1 (+17.4%, tolerance 5%)`` per gated
    regression of the comparison."""
    if not comparison:
        return []
    out: list[str] = []
    for m in comparison.get("metrics", []) or []:
        if not (m.get("gated") and m.get("verdict") == "regression"):
            continue
        text = (f"regression {m.get('metric')} {num(m.get('current'), large='.1f', whole=True)}"
                f" vs baseline {num(m.get('baseline'), large='.1f', whole=True)}")
        change = m.get("change_pct")
        if isinstance(change, int | float):
            tol = m.get("tolerance_pct")
            tol_text = f", tolerance {tol:g}%" if isinstance(tol, int | float) else ""
            text += f" ({change:+.1f}%{tol_text})"
        out.append(text)
    return out


def regression_clause(comparison: Mapping[str, Any] | None) -> str:
    """The gate's clause of the one-line failure headline: every gated regression, or, when
    the comparison names none, what kind of failure it is."""
    return "; ".join(regression_clauses(comparison)) or "regression against the baseline"


def failure(comparison: Mapping[str, Any] | None) -> Failure | None:
    """The gate's failure (None when nothing gated regressed)."""
    text = failure_message(comparison)
    return Failure("regression", regression_clause(comparison), text) if text else None


class Gate:
    """Baseline lookup, comparison and saving for one pytest process."""

    def __init__(
        self,
        *,
        rootpath: Path,
        baseline_dir: str | None = None,
        compare: str | None = None,
        save: bool = False,
        save_dirty: bool = False,
        alpha: float = stats.DEFAULT_ALPHA,
        history: int = stats.DEFAULT_MAX_HISTORY,
        args: Sequence[str] = (),
        invocation_dir: Path | None = None,
    ) -> None:
        """``rootpath``: pytest's rootdir; when it is not inside a git repository, the
        repository is looked for from ``args`` (the test paths pytest was given, relative to
        ``invocation_dir``) and then from ``invocation_dir``."""
        if not 0 < alpha < 0.5:
            raise GateUsageError(f"--llmperf-alpha={alpha!r} must be between 0 and 0.5 "
                                 "(e.g. 0.01)")
        self.rootpath = rootpath
        self.alpha = alpha
        self.save_requested = save
        self.save_dirty = save_dirty
        self.max_history = history
        self.git_error: str | None = None
        self.git: gitinfo.GitInfo | None = None
        root = rootpath
        where = rootpath
        for candidate in _repo_candidates(rootpath, args, invocation_dir):
            try:
                root = gitinfo.repo_info(candidate).root
            except gitinfo.GitError as exc:
                if self.git_error is None:
                    self.git_error = str(exc)  # rootpath's reason
                continue
            where, self.git_error = candidate, None
            break
        self.dir = (Path(baseline_dir).resolve() if baseline_dir
                    else (root / DEFAULT_DIR).resolve())
        if self.git_error is None:
            self.git = gitinfo.repo_info(where, exclude=self.dir)
        self.store = BaselineStore(self.dir)
        self.compare_ref = compare
        self.compare_commit: str | None = None
        if compare:
            if self.git is None:
                raise GateUsageError(f"--llmperf-compare {compare} needs a git repository: "
                                     f"{self.git_error}")
            try:
                self.compare_commit = gitinfo.resolve_ref(self.git.root, compare)
                gitinfo.ancestors(self.git.root, self.compare_commit, limit=1)
            except gitinfo.GitError as exc:
                raise GateUsageError(f"--llmperf-compare: {exc}") from None
        if save:
            if self.git is None:
                raise GateUsageError(f"--llmperf-save stores results per commit: "
                                     f"{self.git_error}")
            if self.git.dirty and not save_dirty:
                files = ", ".join(self.git.dirty_files[:5])
                more = " ..." if len(self.git.dirty_files) > 5 else ""
                raise GateUsageError(
                    f"--llmperf-save refuses a dirty tree ({len(self.git.dirty_files)} changed "
                    f"file(s): {files}{more}): commit or stash the changes, or add "
                    "--llmperf-save-dirty to save anyway (the baseline is then marked dirty)"
                )
        self._lookups: dict[str, Lookup] = {}

    @classmethod
    def from_settings(cls, settings: Settings, rootpath: Path, args: Sequence[str] = (),
                      invocation_dir: Path | None = None) -> Gate:
        """The session's gate; ``args`` and ``invocation_dir`` (pytest's ``config.args`` and
        ``config.invocation_params.dir``) find the repository when the rootdir is not in one."""
        return cls(
            rootpath=rootpath,
            args=args,
            invocation_dir=invocation_dir,
            baseline_dir=settings.baseline_dir,
            compare=settings.compare,
            save=settings.save,
            save_dirty=settings.save_dirty,
            alpha=float(settings.alpha or stats.DEFAULT_ALPHA),
        )

    # -- lookup ----------------------------------------------------------------------------

    @functools.cached_property
    def _head_ancestors(self) -> list[str]:
        assert self.git is not None
        return gitinfo.ancestors(self.git.root, self.git.commit)

    def lookup(self, pid: str, profile: Mapping[str, Any]) -> Lookup:
        if pid not in self._lookups:
            self._lookups[pid] = self._lookup(pid, profile)
        return self._lookups[pid]

    def _mismatch(self, commit: str, profile: Mapping[str, Any], pid: str) -> Lookup:
        best: tuple[int, str] | None = None
        for entry in self.store.profiles_at(commit):
            try:
                other = self.store.load(entry.profile_id, commit)
            except BaselineError:
                continue
            diffs = differences(other.profile, profile)
            if best is None or len(diffs) < best[0]:
                best = (len(diffs), mismatch_message(other.profile, profile,
                                                     f"of {commit[:12]} ({other.profile_id})"))
        msg = best[1] if best else f"no baseline for profile {pid} at {commit[:12]}"
        return Lookup("profile mismatch", msg + f"; this run's profile is {pid}")

    def _lookup(self, pid: str, profile: Mapping[str, Any]) -> Lookup:
        if self.git is None:
            return Lookup("no baseline", f"no baseline: {self.git_error}")
        ours = self.store.commits(pid)
        try:
            if self.compare_commit is not None:
                base_commit = self.compare_commit
                chain = gitinfo.ancestors(self.git.root, base_commit)
                if base_commit not in ours:
                    if base_commit in self.store.commits(pid, dirty=True):
                        return self._load_chain(pid, [base_commit], chain, dirty=True)
                    if base_commit in self.store.all_commits():
                        return self._mismatch(base_commit, profile, pid)
                    return Lookup("no baseline", f"no baseline saved for {self.compare_ref} "
                                  f"({base_commit[:12]}) in {self.dir}")
            else:
                chain = self._head_ancestors
        except gitinfo.GitError as exc:
            return Lookup("no baseline", f"no baseline: {exc}")
        candidates = [c for c in chain if c in ours]
        if not candidates:
            others = self.store.all_commits()
            near = next((c for c in chain if c in others), None)
            if near is not None:
                return self._mismatch(near, profile, pid)
            return Lookup("no baseline", f"no baseline in {self.dir} for HEAD "
                          f"{self.git.commit[:12]} or its ancestors")
        return self._load_chain(pid, candidates, chain)

    def _load_chain(self, pid: str, candidates: Sequence[str], chain: Sequence[str],
                    dirty: bool = False) -> Lookup:
        """The first of ``candidates`` (nearest first) whose file reads; the unreadable ones
        before it are named in ``skipped``; its clean ancestors in ``chain`` are the history."""
        skipped: list[str] = []
        for commit in candidates:
            try:
                baseline = self.store.load(pid, commit, dirty=dirty)
            except BaselineError as exc:
                skipped.append(str(exc))
                continue
            ours = self.store.commits(pid)
            rest = chain[chain.index(commit):] if commit in chain else [commit]
            hist_commits = [c for c in rest if c in ours][: self.max_history]
            history: list[Baseline] = []
            for c in hist_commits:
                if c == commit and not dirty:
                    history.append(baseline)
                else:
                    history.extend(self.store.iter_loaded(pid, [c]))
            return Lookup("compared", "", baseline, history, skipped)
        return Lookup("no baseline", "no baseline: " + "; and ".join(skipped), None, [],
                      skipped)

    # -- comparison ------------------------------------------------------------------------

    def compare_test(
        self,
        nodeid: str,
        runs: Sequence[RunResult | Mapping[str, Any]],
        thresholds: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        """The test's comparison (the shape reports render), or None without runs."""
        if not runs:
            return None
        gated_metrics(thresholds)  # an unknown metric is an error even without a baseline
        dicts = [_as_dict(r) for r in runs]
        profile = make_profile(dicts[0].get("engine", {}))
        pid = profile_id(profile)
        current = [d for d in dicts if make_profile(d.get("engine", {})) == profile]
        # Runs of another workload in the same test are not data points of this one.
        wl = _workload_key(current[0])
        current = [d for d in current if _workload_key(d) == wl]
        out: dict[str, Any] = {"baseline_commit": None, "profile_id": pid,
                               "alpha": self.alpha, "metrics": []}
        found = self.lookup(pid, profile)
        if found.baseline is None:
            out.update(status=found.status, message=found.message)
            return out
        skipped = [f"skipped unreadable baseline {e}" for e in found.skipped]
        base = found.baseline
        out["baseline_commit"] = base.commit
        out["baseline_branch"] = base.branch
        base_runs = [r for r in base.runs(nodeid) if _workload_key(r) == wl]
        if not base_runs:
            what = "this test" if not base.runs(nodeid) else "this test with this workload"
            out.update(status="no baseline", message="; ".join(
                [f"baseline {base.commit[:12]} has no runs of {what}", *skipped]))
            return out
        history = [[r for r in b.runs(nodeid) if _workload_key(r) == wl]
                   for b in found.history]
        history = [h for h in history if h]
        verdicts = compare_runs(thresholds, base_runs, current, history, alpha=self.alpha)
        out["metrics"] = [v.to_dict() for v in verdicts]
        methods = sorted({v.method for v in verdicts if v.method != "none"})
        noise = {"history": f"noise from {len(history)} earlier baselines",
                 "repeats": "noise from the repeats"}
        where = f"{base.commit[:12]}" + (f" ({base.branch})" if base.branch else "")
        parts = [f"compared with {where}: {len(current)} run(s) vs {len(base_runs)}"]
        parts += [noise[m] for m in methods if m in noise]
        if any(v.verdict == "inconclusive" for v in verdicts):
            parts.append("some metrics inconclusive (repeats=1 and fewer than "
                         f"{stats.DEFAULT_MIN_HISTORY} earlier baselines)")
        if base.dirty:
            parts.append("the baseline was saved from a dirty tree")
        out.update(status="compared", message="; ".join(parts + skipped))
        return out

    # -- saving ----------------------------------------------------------------------------

    def save(self, tests: Iterable[Any], pytest_args: Sequence[str] | None = None,
             invocation_dir: Path | None = None) -> list[str]:
        """Append every test's runs under HEAD, one file per profile; lines for the terminal.

        ``tests`` are session.TestRecord-like objects (nodeid, outcome, runs). A dirty tree's
        runs go to ``<commit>.dirty.json``. Raises BaselineError when an existing file cannot
        be read (it is left untouched) or the directory's save lock cannot be had.
        ``pytest_args`` (pytest's ``invocation_params.args``, relative to ``invocation_dir``)
        are recorded with every run, less the output and saving options
        (``nightly.recorded_args``), with the metrics its marker gated, in ``client``.
        """
        from .nightly import provenance, recorded_args

        assert self.git is not None
        args = (None if pytest_args is None else
                recorded_args(pytest_args, invocation_dir, self.git.root))
        grouped: dict[str, tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]] = {}
        outcomes: dict[str, str] = {}
        for test in tests:
            outcomes[test.nodeid] = test.outcome
            try:
                gated = gated_metrics(getattr(test, "thresholds", None) or {})[0]
            except GateConfigError:
                gated = list(DEFAULT_GATED)
            for run in test.runs:
                data = _as_dict(run)
                data["client"] = {**(data.get("client") or {}), **provenance(args, gated)}
                profile = make_profile(data.get("engine", {}))
                pid = profile_id(profile)
                grouped.setdefault(pid, (profile, {}))[1].setdefault(test.nodeid, []).append(data)
        lines = []
        for pid, (profile, runs) in sorted(grouped.items()):
            path = self.store.save(
                profile_id=pid, profile=profile, commit=self.git.commit, branch=self.git.branch,
                dirty=self.git.dirty, committed_at=self.git.committed_at, tests=runs,
                outcomes={k: outcomes[k] for k in runs},
            )
            n = sum(len(v) for v in runs.values())
            dirty = " (dirty tree)" if self.git.dirty else ""
            lines.append(f"saved {n} run(s) of {len(runs)} test(s) to {path}{dirty}")
        return lines


def _repo_candidates(rootpath: Path, args: Sequence[str],
                     invocation_dir: Path | None) -> list[Path]:
    """Where to look for the repository, in order: pytest's rootdir, the directories of the
    test paths pytest was given (``path::test`` ids included), the invocation directory."""
    out = [Path(rootpath)]
    base = Path(invocation_dir) if invocation_dir is not None else Path.cwd()
    for arg in args:
        path = base / str(arg).split("::", 1)[0]
        while not path.exists() and path != path.parent:  # a glob or a not-yet-made path
            path = path.parent
        out.append(path if path.is_dir() else path.parent)
    if invocation_dir is not None:
        out.append(Path(invocation_dir))
    return list(dict.fromkeys(out))


def summary_lines(tests: Iterable[Any]) -> list[str]:
    """Terminal lines: per test, the comparison status and its gated or flagged metrics."""
    lines: list[str] = []
    for test in tests:
        comp = getattr(test, "comparison", None)
        if comp:
            lines.append(f"{test.nodeid}: {comp.get('status')}"
                         + (f" - {comp['message']}" if comp.get("message") else ""))
            for m in comp.get("metrics", []):
                if not m.get("gated") and m.get("verdict") in ("ok", "inconclusive"):
                    continue
                change = m.get("change_pct")
                text = f"  {m['metric']}: {m['verdict']}"
                if change is not None:
                    text += (f", {num(m.get('current'))} vs {num(m.get('baseline'))} "
                             f"({change:+.1f}%")
                    if m.get("ci_low_pct") is not None:
                        text += f", interval {m['ci_low_pct']:+.1f}%..{m['ci_high_pct']:+.1f}%"
                    text += ")"
                lines.append(text)
        for ab in getattr(test, "ab", None) or []:
            lines.append(f"{test.nodeid}: A/B {ab.get('message', '')}")
    return lines
