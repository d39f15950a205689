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

Tests are keyed in baselines by ``store.keys``: the test file's path relative to the
repository (not to pytest's rootdir, which an option value taken for a path, or a new ini
file, moves); a baseline that holds a test under an older spelling of its key is still
compared with, and the comparison's message and ``baseline_key`` say which spelling it was.

Without a git repository (a container image), ``LLMPERF_COMMIT`` (with ``LLMPERF_BRANCH`` and
``LLMPERF_COMMITTED_AT``) names the commit: saving works under it, and since the ancestry is
unknown the lookup takes the newest baseline of the same profile (and branch, when known)
saved for another, earlier commit, by committed time then saved time.

Two ways a regression used to slip in are closed here. A gated metric whose verdict is
inconclusive (one run per side and too few earlier baselines) while its change is beyond the
tolerance in the bad direction is *undecided*: the comparison carries a warning, and
``--llmperf-inconclusive=fail`` makes it a failure. Each saved test records the gate verdict it
got (``"gate"``: ok, regression, undecided, no baseline); when the nearest baseline was itself
a regression or undecided, the test is also compared with the last clean baseline before it
(``"clean_baseline"`` in the comparison), and a regression against either fails.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..decision import alpha_problem
from ..formatting import num
from ..metric_table import DEFAULT_GATED, EMBEDDING_GATED, higher_is_better, is_embeddings
from ..run.metrics import RunResult
from ..run.workload import workload_key
from ..store import gitinfo
from ..store.baselines import Baseline, BaselineError, BaselineStore, run_value
from ..store.keys import TestKey
from ..store.profile import differences, make_profile, mismatch_message, profile_id
from ..store.provenance import provenance, recorded_args
from . import stats
from .attribution import attribution, workload_changes
from .failure import Failure
from .outputs import compare as compare_outputs
from .testbed import compare_testbeds
from .thresholds import Thresholds, UnknownMetricError

if TYPE_CHECKING:
    from ..settings import Settings

DEFAULT_DIR = "baselines"
COMMIT_ENV = "LLMPERF_COMMIT"
BRANCH_ENV = "LLMPERF_BRANCH"
COMMITTED_AT_ENV = "LLMPERF_COMMITTED_AT"
NO_ANCESTRY = ("ancestry unknown (no git repository): compared with the newest earlier "
               "baseline in the store")
ENV_HINT = (f"in an image without .git, set {COMMIT_ENV} (and {BRANCH_ENV}) to the commit it "
            "was built from")
INCONCLUSIVE_MODES = ("warn", "fail")
# The gate verdicts a saved test records ("gate" in its stored entry); the last two are not
# clean: a later commit is then also compared with the last clean baseline before it.
GATE_VERDICTS = ("ok", "no baseline", "regression", "undecided")
# A comparison's status when the test's traffic changed since its baseline (attribution.py):
# not compared; its gate verdict is "no baseline" (the next save starts the new series).
WORKLOAD_CHANGED = "workload changed"
UNCLEAN = frozenset({"regression", "undecided"})
_HEX = re.compile(r"^[0-9a-fA-F]{7,64}$")
RERUN_HINT = "rerun with repeats or use llmperf compare"


class GateUsageError(ValueError):
    """Bad gate options or an unusable repository: one line naming the problem and the fix."""


class GateConfigError(ValueError):
    """A marker asks the gate for something it cannot do (an unknown metric)."""


@dataclass(frozen=True)
class Head:
    """The commit a session measures: git's HEAD, or without git, ``LLMPERF_COMMIT``'s
    (``from_env``: its ancestry is unknown; dirty is unknown and treated as clean)."""

    commit: str
    branch: str | None
    dirty: bool
    committed_at: str  # ISO 8601, UTC
    from_env: bool = False


def _parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (naive: UTC) or Unix seconds, as an aware datetime; None otherwise."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        when = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_EPOCH = datetime.fromtimestamp(0, UTC)


def _when(text: str | None) -> datetime:
    """For ordering stored times: unreadable or missing sorts first."""
    return (_parse_time(text) if text else None) or _EPOCH


def env_head(env: Mapping[str, str]) -> Head | None:
    """The commit ``LLMPERF_COMMIT`` names (None when unset); GateUsageError when
    ``LLMPERF_COMMITTED_AT`` is not a time."""
    commit = env.get(COMMIT_ENV, "").strip()
    if not commit:
        return None
    raw = env.get(COMMITTED_AT_ENV, "").strip()
    when = _parse_time(raw) if raw else datetime.now(UTC)
    if when is None:
        raise GateUsageError(f"{COMMITTED_AT_ENV}={raw!r} is not a time: give ISO 8601 "
                             "(git log -1 --format=%cI) or Unix seconds (--format=%ct)")
    return Head(commit=commit.lower() if _HEX.match(commit) else commit,
                branch=env.get(BRANCH_ENV, "").strip() or None, dirty=False,
                committed_at=when.astimezone(UTC).isoformat(timespec="seconds"),
                from_env=True)


@dataclass
class Lookup:
    """Where a profile's baseline is: status, the baseline file, and the history behind it."""

    status: str  # "compared" (a baseline exists), "no baseline", "profile mismatch"
    message: str
    baseline: Baseline | None = None
    history: list[Baseline] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable nearer baselines' errors


def gated_metrics(thresholds: Thresholds | Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(gated, watched) metric names for a marker's thresholds (``Thresholds.gated_metrics``);
    GateConfigError for an unknown metric name."""
    try:
        return Thresholds.of(thresholds).gated_metrics()
    except UnknownMetricError as exc:
        raise GateConfigError(str(exc)) from None


def embeddings_gated(parsed: Thresholds, gated: list[str], watched: list[str],
                     summaries: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(gated, watched) for runs that are all embeddings runs (issue 24, item 6), which have
    no TTFT, TPOT or output tokens/s: without a marker ``gate``, E2E p50 and input tokens/s
    (``EMBEDDING_GATED``) are gated instead of the default three; else as given."""
    if parsed.gate is not None or not summaries or not all(is_embeddings(s)
                                                            for s in summaries):
        return gated, watched
    gated = [*EMBEDDING_GATED, *(m for m in gated if m not in DEFAULT_GATED)]
    return gated, [m for m in watched if m not in gated]


def _as_dict(run: RunResult | Mapping[str, Any]) -> dict[str, Any]:
    return run.to_dict() if isinstance(run, RunResult) else dict(run)


def compare_runs(
    thresholds: Thresholds | Mapping[str, Any],
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
    parsed = Thresholds.of(thresholds)
    gated, watched = embeddings_gated(parsed, *gated_metrics(parsed),
                                      [r.get("summary") or {} for r in current_runs])
    alpha = stats.per_metric_alpha(alpha, len(gated))
    out = []
    for metric, is_gated in [(m, True) for m in gated] + [(m, False) for m in watched]:
        cur = [run_value(r, metric) for r in current_runs]
        if all(v is None for v in cur) and not _undefined_here(metric, current_runs):
            continue  # this workload does not produce the metric (e.g. no SLO, no accuracy)
        out.append(stats.compare_stored(
            metric,
            [run_value(r, metric) for r in baseline_runs],
            cur,
            [[run_value(r, metric) for r in h] for h in history],
            alpha=alpha,
            tolerance_pct=parsed.tolerance_for(metric),
            gated=is_gated,
        ))
    return out


def _undefined_here(metric: str, runs: Sequence[Mapping[str, Any]]) -> bool:
    """A TPOT metric the runs measured but found undefined (every answer of several tokens in
    one read, ``tpot_undefined``): compared (inconclusive, no value), not skipped."""
    return metric.startswith("tpot_") and any(
        (run_value(r, "tpot_undefined") or 0) > 0 for r in runs)


def stored_gate(baseline: Baseline, nodeid: str | TestKey) -> str | None:
    """The gate verdict the test got when ``baseline`` was saved (None: not recorded);
    a ``TestKey`` also finds the test under an older spelling of its key."""
    stored = nodeid.find(baseline.tests) if isinstance(nodeid, TestKey) else nodeid
    value = baseline.tests.get(stored, {}).get("gate") if stored is not None else None
    return value if isinstance(value, str) else None


def undecided_metrics(comparison: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The comparison's gated metrics whose verdict is inconclusive while their change is
    beyond the tolerance in the bad direction."""
    out = []
    for m in (comparison or {}).get("metrics", []) or []:
        change, tol = m.get("change_pct"), m.get("tolerance_pct", stats.DEFAULT_TOLERANCE_PCT)
        if not (m.get("gated") and m.get("verdict") == "inconclusive"
                and isinstance(change, int | float) and isinstance(tol, int | float)):
            continue
        worse = -change if higher_is_better(str(m.get("metric"))) else change
        if worse > tol:
            out.append(m)
    return out


def undecided_warning(metrics: Sequence[Mapping[str, Any]], commit: str | None) -> str:
    """One line for the undecided metrics among ``metrics`` ('' when none), e.g.
    ``undecided: tpot_p50_ms +38.0% vs baseline 1a2b3c4d5e6f (beyond the 5% tolerance;
    inconclusive: one run on each side and fewer than 5 earlier baselines); rerun with
    repeats or use llmperf compare``."""
    bad = undecided_metrics({"metrics": metrics})
    if not bad:
        return ""
    changes = ", ".join(f"{m['metric']} {m['change_pct']:+.1f}%" for m in bad)
    tols = "/".join(dict.fromkeys(f"{m.get('tolerance_pct', 5.0):g}%" for m in bad))
    reason = str(bad[0].get("note") or "the noise is unknown").split(":")[0]
    return (f"undecided: {changes} vs baseline {(commit or '')[:12]} (beyond the {tols} "
            f"tolerance; inconclusive: {reason}); {RERUN_HINT}")


def comparison_gate(comparison: Mapping[str, Any]) -> str:
    """The gate verdict of a comparison, as a save records it: ``regression`` (a gated
    regression against the nearest or the last clean baseline), ``undecided`` (a warning),
    ``ok``, or ``no baseline``."""
    if comparison.get("status") != "compared":
        return "no baseline"
    clean = comparison.get("clean_baseline") or {}
    for part in (comparison, clean):
        if any(m.get("gated") and m.get("verdict") == "regression"
               for m in part.get("metrics", []) or []):
            return "regression"
    if comparison.get("warnings") or undecided_metrics(comparison) or undecided_metrics(clean):
        return "undecided"
    return "ok"


def failure_message(comparison: Mapping[str, Any] | None, against: str = "baseline") -> str:
    """The gate's part of a test's failure message ('' when nothing gated regressed).
    ``against``: how the baseline is named (``baseline``, ``the last clean baseline``)."""
    if not comparison:
        return ""
    bad = [m for m in comparison.get("metrics", [])
           if m.get("gated") and m.get("verdict") == "regression"]
    if not bad:
        return ""
    commit = (comparison.get("baseline_commit") or "")[:12]
    head = (f"{len(bad)} llmperf regression(s) against {against} {commit} "
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


def failure(comparison: Mapping[str, Any] | None, inconclusive: str = "warn") -> Failure | None:
    """The gate's failure (None when nothing gated regressed): a gated regression against
    the nearest baseline or, when that one was not clean, against the last clean baseline;
    with ``inconclusive="fail"`` also an undecided change (the comparison's warnings)."""
    if not comparison:
        return None
    clauses = regression_clauses(comparison)
    texts = [failure_message(comparison)]
    clean = comparison.get("clean_baseline")
    if clean:
        commit = (clean.get("baseline_commit") or "")[:12]
        near = (comparison.get("baseline_commit") or "")[:12]
        clauses += [f"{c} (last clean baseline {commit})" for c in regression_clauses(clean)]
        text = failure_message({"alpha": comparison.get("alpha"), **clean},
                               against="the last clean baseline")
        if text:
            texts.append(text + f"\n  (the nearest baseline {near} was itself not clean "
                         "against its predecessor)")
    if inconclusive == "fail":
        warnings = [str(w) for w in comparison.get("warnings", []) or []]
        clauses += warnings
        texts += [f"llmperf: {w}" for w in warnings]
    texts = [t for t in texts if t]
    if not texts:
        return None
    return Failure("regression", "; ".join(clauses), "\n".join(texts))


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
        inconclusive: str = "warn",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``rootpath``: pytest's rootdir; when it is not inside a git repository, the
        repository is looked for from ``args`` (the test paths pytest was given, relative to
        ``invocation_dir``) and then from ``invocation_dir``. Without one, ``env``'s
        ``LLMPERF_COMMIT`` (default: the process environment) names the commit.
        ``inconclusive``: ``warn`` or ``fail``, what an undecided change does to the test."""
        if inconclusive not in INCONCLUSIVE_MODES:
            raise GateUsageError(f"--llmperf-inconclusive={inconclusive!r} must be one of "
                                 f"{', '.join(INCONCLUSIVE_MODES)}")
        self.inconclusive = inconclusive
        problem = alpha_problem(alpha)
        if problem:
            raise GateUsageError(f"--llmperf-alpha={alpha!r} {problem}")
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
        self.head: Head | None = None
        if self.git_error is None:
            self.git = gitinfo.repo_info(where, exclude=self.dir)
            self.head = Head(self.git.commit, self.git.branch, self.git.dirty,
                             self.git.committed_at)
        else:
            self.head = env_head(os.environ if env is None else env)
        self.store = BaselineStore(self.dir)
        self.compare_ref = compare
        self.compare_commit: str | None = None
        if compare:
            if self.git is None:
                # Without git a ref cannot be resolved: a commit id (or its prefix) names the
                # baseline in the store, looked up when a test needs it (after a store pull).
                if not _HEX.match(compare):
                    raise GateUsageError(
                        f"--llmperf-compare {compare}: without a git repository "
                        f"({self.git_error}) name the baseline's commit id (7 to 64 hex "
                        "digits, as saved under LLMPERF_COMMIT), not a branch or tag")
            else:
                try:
                    self.compare_commit = gitinfo.resolve_ref(self.git.root, compare)
                    gitinfo.ancestors(self.git.root, self.compare_commit, limit=1)
                except gitinfo.GitError as exc:
                    raise GateUsageError(f"--llmperf-compare: {exc}") from None
        if save:
            if self.head is None:
                raise GateUsageError(f"--llmperf-save stores results per commit: "
                                     f"{self.git_error}; {ENV_HINT}")
            if self.head.from_env and not _HEX.match(self.head.commit):
                raise GateUsageError(f"{COMMIT_ENV}={self.head.commit!r} is not a commit id "
                                     "(7 to 64 hex digits): set it to git rev-parse HEAD of "
                                     "the commit the image was built from")
            if self.git is not None and self.git.dirty and not save_dirty:
                files = ", ".join(self.git.dirty_files[:5])
                more = " ..." if len(self.git.dirty_files) > 5 else ""
                raise GateUsageError(
                    f"--llmperf-save refuses a dirty tree ({len(self.git.dirty_files)} changed "
                    f"file(s): {files}{more}): commit or stash the changes, or add "
                    "--llmperf-save-dirty to save anyway (the baseline is then marked dirty)"
                )
        self._lookups: dict[str, Lookup] = {}

    def test_key(self, nodeid: str, path: str | Path | None = None) -> TestKey:
        """The baseline key of pytest's ``nodeid`` (``store.keys``): its file's path relative
        to the repository's root, whatever pytest's rootdir; without git, the node id.
        ``path``: the item's file (absolute), else it is found from the node id and the
        rootdir."""
        return TestKey.of(nodeid, self.rootpath, self.git.root if self.git else None, path)

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
            inconclusive=str(getattr(settings, "inconclusive", None) or "warn"),
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
            if self.compare_ref:
                return self._lookup_named(pid, profile, self.compare_ref)
            if self.head is None:
                return Lookup("no baseline", self.git_error or "not inside a git repository")
            return self._lookup_by_time(pid, profile, self.head)
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
            return Lookup("no baseline", str(exc))
        candidates = [c for c in chain if c in ours]
        if not candidates:
            others = self.store.all_commits()
            near = next((c for c in chain if c in others), None)
            if near is not None:
                return self._mismatch(near, profile, pid)
            return Lookup("no baseline", f"no baseline in {self.dir} for HEAD "
                          f"{self.git.commit[:12]} or its ancestors")
        return self._load_chain(pid, candidates, chain)

    def _earlier(self, baselines: Iterable[Baseline], head: Head) -> list[Baseline]:
        """The baselines of other commits (of head's branch when it is known) committed no
        later than head, newest first (by committed time, then saved time)."""
        limit = _when(head.committed_at)
        out = [b for b in baselines
               if b.commit != head.commit and (head.branch is None or b.branch == head.branch)
               and _when(b.committed_at or b.saved_at) <= limit]
        return sorted(out, key=lambda b: (_when(b.committed_at or b.saved_at),
                                          _when(b.saved_at)), reverse=True)

    def _lookup_by_time(self, pid: str, profile: Mapping[str, Any], head: Head) -> Lookup:
        """Without git: the newest earlier baseline of the profile (see ``_earlier``); the
        older ones are the history."""
        good, errors = self.store.load_all(pid)
        earlier = self._earlier(good, head)
        if earlier:
            return Lookup("compared", NO_ANCESTRY, earlier[0], earlier[: self.max_history],
                          errors)
        of_branch = f" of branch {head.branch}" if head.branch else ""
        others, _ = self.store.load_all()
        near = self._earlier([b for b in others if b.profile_id != pid], head)
        if near:
            found = self._mismatch(near[0].commit, profile, pid)
            found.message += f"; {NO_ANCESTRY.split(':')[0]}"
            return found
        return Lookup("no baseline", "; ".join([
            f"no baseline in {self.dir}{of_branch} earlier than {COMMIT_ENV} "
            f"{head.commit[:12]} (ancestry unknown: no git repository)",
            *[f"skipped unreadable baseline {e}" for e in errors]]), skipped=errors)

    def _lookup_named(self, pid: str, profile: Mapping[str, Any], ref: str) -> Lookup:
        """Without git, ``--llmperf-compare COMMIT``: the profile's baseline of the one commit
        whose id starts with COMMIT; the baselines committed before it are the history."""
        good, errors = self.store.load_all(pid)
        prefix = ref.lower()
        named = [b for b in good if b.commit.lower().startswith(prefix)]
        commits = sorted({b.commit for b in named})
        if len(commits) > 1:
            return Lookup("no baseline", f"--llmperf-compare {ref} matches {len(commits)} "
                          f"commits in {self.dir} ({', '.join(c[:12] for c in commits)}): "
                          "give more digits")
        if not named:
            others, _ = self.store.load_all()
            near = [b for b in others if b.commit.lower().startswith(prefix)]
            if near:
                return self._mismatch(near[0].commit, profile, pid)
            return Lookup("no baseline", "; ".join([
                f"no baseline saved for {ref} in {self.dir}",
                *[f"skipped unreadable baseline {e}" for e in errors]]), skipped=errors)
        base = max(named, key=lambda b: _when(b.saved_at))
        head = Head(base.commit, base.branch, False, base.committed_at or base.saved_at)
        history = [base, *self._earlier(good, head)]
        return Lookup("compared", f"compared with {base.commit[:12]} (--llmperf-compare; "
                      "ancestry unknown: no git repository)", base,
                      history[: self.max_history], errors)

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
        return Lookup("no baseline", "; and ".join(skipped), None, [],
                      skipped)

    # -- comparison ------------------------------------------------------------------------

    def compare_test(
        self,
        nodeid: str,
        runs: Sequence[RunResult | Mapping[str, Any]],
        thresholds: Thresholds | Mapping[str, Any],
        path: str | Path | None = None,
    ) -> dict[str, Any] | None:
        """The test's comparison (the shape reports render), or None without runs;
        ``path``: the test's file (the item's), for its baseline key (``test_key``).

        Keys: ``status``, ``message``, ``baseline_commit``, ``baseline_branch``,
        ``profile_id``, ``alpha``, ``metrics``, ``warnings`` (one line per compared baseline
        with undecided gated metrics), ``gate`` (the verdict a save records, one of
        GATE_VERDICTS), ``key`` (the test's baseline key, ``test_key``), ``baseline_key``
        (only when the baseline holds the test under an older spelling of it: that spelling)
        and, when the nearest baseline was not clean, ``clean_baseline`` (the same shape,
        against the last clean baseline before it).
        """
        if not runs:
            return None
        gated_metrics(thresholds)  # an unknown metric is an error even without a baseline
        dicts = [_as_dict(r) for r in runs]
        profile = make_profile(dicts[0].get("engine", {}))
        pid = profile_id(profile)
        current = [d for d in dicts if make_profile(d.get("engine", {})) == profile]
        # Runs of another workload in the same test are not data points of this one.
        wl = workload_key(current[0])
        current = [d for d in current if workload_key(d) == wl]
        key = self.test_key(nodeid, path)
        out: dict[str, Any] = {"baseline_commit": None, "profile_id": pid,
                               "alpha": self.alpha, "metrics": [], "warnings": [],
                               "gate": "no baseline", "key": key.key}
        found = self.lookup(pid, profile)
        if found.baseline is None:
            out.update(status=found.status, message=found.message)
            return out
        skipped = [f"skipped unreadable baseline {e}" for e in found.skipped]
        base = found.baseline
        near = self._compare_with(base, found.history, key, wl, current, thresholds)
        if near.get("baseline_key"):
            out["baseline_key"] = near["baseline_key"]
        out["baseline_commit"] = base.commit
        out["baseline_branch"] = base.branch
        if near["status"] != "compared":
            if near.get("testbed"):
                out["testbed"] = near["testbed"]
            out.update(status=near["status"] if near["status"] == WORKLOAD_CHANGED
                       else "no baseline", message="; ".join([near["message"], *skipped]))
            if near.get("workload_changes"):
                out["workload_changes"] = near["workload_changes"]
            return out
        out["metrics"] = near["metrics"]
        if near.get("attribution"):
            out["attribution"] = near["attribution"]
        out["warnings"] = list(near["warnings"])
        out["outputs"], out["testbed"] = near.get("outputs"), near.get("testbed")  # issue 25
        parts = [near["message"]]
        if found.message:
            parts.append(found.message)
        if base.dirty:
            parts.append("the baseline was saved from a dirty tree")
        before = stored_gate(base, key)
        if before in UNCLEAN and self.compare_commit is None:
            clean = self._clean_comparison(found.history, base, key, wl, current,
                                           thresholds)
            out["clean_baseline"] = clean
            out["warnings"] += clean["warnings"]
            if clean["baseline_commit"]:
                parts.append(f"the nearest baseline {base.commit[:12]} was itself "
                             f"{before} against its predecessor: also compared with the "
                             f"last clean baseline {clean['baseline_commit'][:12]} "
                             f"({clean['message']})")
            else:
                parts.append(f"the nearest baseline {base.commit[:12]} was itself {before} "
                             f"against its predecessor; {clean['message']}")
        out.update(status="compared", message="; ".join(parts + skipped))
        out["gate"] = comparison_gate(out)
        return out

    def _compare_with(self, base: Baseline, history: Sequence[Baseline], key: TestKey,
                      wl: str, current: Sequence[Mapping[str, Any]],
                      thresholds: Thresholds | Mapping[str, Any]) -> dict[str, Any]:
        """The runs against one baseline (``history``: it and the baselines before it, for
        the noise): status, message, metrics and warnings; ``baseline_key`` when ``base``
        holds the test under an older spelling of its key (the message says so)."""
        out: dict[str, Any] = {"baseline_commit": base.commit, "baseline_branch": base.branch,
                               "metrics": [], "warnings": []}
        stored = key.find(base.tests)
        all_runs = base.runs(stored) if stored is not None else []
        base_runs = [r for r in all_runs if workload_key(r) == wl]
        if not all_runs:
            out.update(status="no baseline",
                       message=f"baseline {base.commit[:12]} has no runs of this test"
                               + ("" if stored is not None else f" ({key.key})"))
            return out
        changed = workload_changes(base_runs or all_runs, current)
        if changed:  # not a comparison: neither passes nor fails (attribution.py)
            out.update(status=WORKLOAD_CHANGED, workload_changes=changed,
                       message=f"the workload changed since baseline {base.commit[:12]} ("
                               + "; ".join(changed) + "): not compared, neither passes nor "
                               "fails; the next --llmperf-save starts its series")
            return out
        hist = [[r for r in _runs_of(b, key) if workload_key(r) == wl] for b in history]
        hist = [h for h in hist if h]
        bed = compare_testbeds(base_runs, current, hist, gated_metrics(thresholds)[0])
        if bed["refused"]:  # another hardware class (issue 25): not a comparison
            out.update(status="no baseline", message=f"baseline {base.commit[:12]}: "
                       + bed["refused"], testbed=bed, outputs=None)
            return out
        verdicts = compare_runs(thresholds, base_runs, current, hist, alpha=self.alpha)
        out["metrics"] = [v.to_dict() for v in verdicts]
        if any(v.verdict in ("regression", "warn") for v in verdicts):
            out["attribution"] = attribution(base_runs, current)
        methods = sorted({v.method for v in verdicts if v.method != "none"})
        noise = {"history": f"noise from {len(hist)} earlier baselines",
                 "repeats": "noise from the repeats"}
        where = f"{base.commit[:12]}" + (f" ({base.branch})" if base.branch else "")
        parts = [f"compared with {where}: {len(current)} run(s) vs {len(base_runs)}"]
        if key.older(stored):
            out["baseline_key"] = stored
            parts.append(f"the baseline stores this test under its older key {stored} "
                         f"(saved now as {key.key})")
        parts += [noise[m] for m in methods if m in noise]
        if any(v.verdict == "inconclusive" for v in verdicts):
            parts.append("some metrics inconclusive (repeats=1 and fewer than "
                         f"{stats.DEFAULT_MIN_HISTORY} earlier baselines)")
        warning = undecided_warning(out["metrics"], base.commit)
        out["warnings"] = [warning] if warning else []
        # Outputs and testbed (issue 25): did the answers change; was it the same testbed.
        outputs = compare_outputs(base_runs, current)
        out["outputs"] = outputs.to_dict()
        if outputs.compared:
            parts.append(outputs.describe())
        out["testbed"] = bed
        parts += bed["notes"]
        out.update(status="compared", message="; ".join(parts))
        return out

    def _clean_comparison(self, history: Sequence[Baseline], base: Baseline, key: TestKey,
                          wl: str, current: Sequence[Mapping[str, Any]],
                          thresholds: Thresholds | Mapping[str, Any]) -> dict[str, Any]:
        """The runs against the newest baseline in ``history`` older than ``base`` whose own
        gate verdict for this test was clean (the baselines before it are its history)."""
        for i, b in enumerate(history):
            if b.commit == base.commit or stored_gate(b, key) in UNCLEAN:
                continue
            if not any(workload_key(r) == wl for r in _runs_of(b, key)):
                continue
            found = self._compare_with(b, history[i:], key, wl, current, thresholds)
            found["gate"] = comparison_gate(found)
            return found
        return {"baseline_commit": None, "baseline_branch": None, "status": "no baseline",
                "message": f"no clean baseline among the {len(history)} baseline(s) looked "
                           "at", "metrics": [], "warnings": [], "gate": "no baseline"}

    # -- saving ----------------------------------------------------------------------------

    def save(self, tests: Iterable[Any], pytest_args: Sequence[str] | None = None,
             invocation_dir: Path | None = None) -> list[str]:
        """Append every test's runs under HEAD (without git: ``LLMPERF_COMMIT``), one file
        per profile, with the gate verdict each test got (``comparison_gate``); lines for the
        terminal.

        ``tests`` are session.TestRecord-like objects (nodeid, outcome, runs, and ``key``
        when known); each is saved under its baseline key (``key``, else ``test_key``). A
        dirty tree's runs go to ``<commit>.dirty.json``. Raises BaselineError when an
        existing file cannot be read (it is left untouched) or the directory's save lock
        cannot be had.
        ``pytest_args`` (pytest's ``invocation_params.args``, relative to ``invocation_dir``)
        are recorded with every run, less the output and saving options
        (``nightly.recorded_args``), with the metrics its marker gated, in ``client``.
        """
        head = self.head
        assert head is not None
        root = self.git.root if self.git is not None else self.rootpath
        args = (None if pytest_args is None else
                recorded_args(pytest_args, invocation_dir, root))
        grouped: dict[str, tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]] = {}
        outcomes: dict[str, str] = {}
        gates: dict[str, str] = {}
        for test in tests:
            key = getattr(test, "key", None) or self.test_key(test.nodeid).key
            outcomes[key] = test.outcome
            comparison = getattr(test, "comparison", None)
            gates[key] = (comparison_gate(comparison) if comparison else "no baseline")
            try:
                gated = gated_metrics(getattr(test, "thresholds", None) or {})[0]
            except GateConfigError:
                gated = list(DEFAULT_GATED)
            for run in test.runs:
                data = _as_dict(run)
                data["client"] = {**(data.get("client") or {}), **provenance(args, gated)}
                profile = make_profile(data.get("engine", {}))
                pid = profile_id(profile)
                grouped.setdefault(pid, (profile, {}))[1].setdefault(key, []).append(data)
        lines = []
        for pid, (profile, runs) in sorted(grouped.items()):
            path = self.store.save(
                profile_id=pid, profile=profile, commit=head.commit, branch=head.branch,
                dirty=head.dirty, committed_at=head.committed_at, tests=runs,
                outcomes={k: outcomes[k] for k in runs}, gates={k: gates[k] for k in runs},
            )
            n = sum(len(v) for v in runs.values())
            dirty = " (dirty tree)" if head.dirty else ""
            env = f" (commit {head.commit[:12]} from {COMMIT_ENV})" if head.from_env else ""
            lines.append(f"saved {n} run(s) of {len(runs)} test(s) to {path}{dirty}{env}")
        return lines


def _runs_of(baseline: Baseline, key: TestKey) -> list[dict[str, Any]]:
    """The baseline's runs of the test, under its key or an older spelling of it."""
    stored = key.find(baseline.tests)
    return baseline.runs(stored) if stored is not None else []


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
