"""Baselines per commit and profile: ``<dir>/<profile_id>/<commit>.json``.

File format (plain, sorted, versioned JSON; indent 1 so it diffs well in git)::

    {"schema": "pytest-llmperf/baseline", "schema_version": 1,
     "profile_id": str, "profile": {...}, "commit": sha, "branch": str | null,
     "dirty": bool, "committed_at": iso8601, "saved_at": iso8601,
     "tests": {"<nodeid>": {"runs": [{"summary": {...}, "started_at": iso,
                                     "workload": {...}, "engine": {...},
                                     "samples": [...], ...}]}}}

Saving appends runs to the commit's file, never replaces them, and writes atomically (a
temporary file renamed over the old one), so a crash mid-write leaves the previous file
intact. A corrupt or foreign file is an error that names it; the other files still load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..report.json_report import atomic_write_text, dumps

SCHEMA = "pytest-llmperf/baseline"
SCHEMA_VERSION = 1
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and the fix."""


def now_iso() -> str:
    """Now, ISO 8601 in UTC with microseconds (saves within one second still sort)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Baseline:
    """One baseline file: the runs of one commit under one profile."""

    path: Path
    profile_id: str
    profile: dict[str, Any]
    commit: str
    branch: str | None
    dirty: bool
    committed_at: str
    saved_at: str
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def runs(self, nodeid: str) -> list[dict[str, Any]]:
        return list(self.tests.get(nodeid, {}).get("runs", []))

    @property
    def n_runs(self) -> int:
        return sum(len(t.get("runs", [])) for t in self.tests.values())

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        data.update({
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "profile_id": self.profile_id,
            "profile": self.profile,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "committed_at": self.committed_at,
            "saved_at": self.saved_at,
            "tests": self.tests,
        })
        return data


def _fix(path: Path) -> str:
    return f"delete or restore {path} (git checkout -- {path.name} in its directory)"


def parse(path: Path, data: Any) -> Baseline:
    """Validate a decoded baseline document; BaselineError naming the file otherwise."""
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise BaselineError(f"{path}: not a pytest-llmperf baseline file (no \"schema\": "
                            f"\"{SCHEMA}\"); move it out of the baseline directory")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BaselineError(f"{path}: baseline schema_version {version!r} is not supported "
                            f"(this pytest-llmperf reads {SCHEMA_VERSION}); upgrade "
                            "pytest-llmperf or move the file away")
    problems = []
    for key, kind in (("profile_id", str), ("commit", str), ("profile", dict), ("tests", dict)):
        if not isinstance(data.get(key), kind):
            problems.append(f"{key!r} missing or not a {kind.__name__}")
    tests = data.get("tests")
    if isinstance(tests, dict):
        for nodeid, entry in tests.items():
            runs = entry.get("runs") if isinstance(entry, Mapping) else None
            if not isinstance(runs, list) or not all(
                isinstance(r, Mapping) and isinstance(r.get("summary"), Mapping) for r in runs
            ):
                problems.append(f"test {nodeid!r} has no valid 'runs' list")
                break
    if problems:
        raise BaselineError(f"{path}: malformed baseline ({'; '.join(problems)}); {_fix(path)}")
    known = {"schema", "schema_version", "profile_id", "profile", "commit", "branch", "dirty",
             "committed_at", "saved_at", "tests"}
    return Baseline(
        path=path,
        profile_id=data["profile_id"],
        profile=dict(data["profile"]),
        commit=data["commit"],
        branch=data.get("branch"),
        dirty=bool(data.get("dirty", False)),
        committed_at=str(data.get("committed_at", "")),
        saved_at=str(data.get("saved_at", "")),
        tests={k: dict(v) for k, v in data["tests"].items()},
        extra={k: v for k, v in data.items() if k not in known},
    )


def load(path: str | Path) -> Baseline:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: not a text file; {_fix(path)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{path}: corrupt baseline, not valid JSON (line {exc.lineno}: {exc.msg}); "
            f"{_fix(path)}"
        ) from None
    baseline = parse(path, data)
    if path.stem != baseline.commit or path.parent.name != baseline.profile_id:
        raise BaselineError(
            f"{path}: its contents say profile {baseline.profile_id!r} and commit "
            f"{baseline.commit[:12]!r}, which does not match where it lies; move it to "
            f"{baseline.profile_id}/{baseline.commit}.json"
        )
    return baseline


@dataclass(frozen=True)
class Entry:
    """A baseline file found on disk (not yet loaded)."""

    profile_id: str
    commit: str
    path: Path


class BaselineStore:
    """The baseline directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, profile_id: str, commit: str) -> Path:
        return self.root / profile_id / f"{commit}.json"

    def entries(self, profile_id: str | None = None) -> list[Entry]:
        """Every <profile>/<commit>.json file, by profile then commit (nothing is parsed)."""
        if not self.root.is_dir():
            return []
        dirs = [self.root / profile_id] if profile_id else sorted(self.root.iterdir())
        out = []
        for d in dirs:
            if not d.is_dir() or d.name.startswith("."):
                continue
            for f in sorted(d.glob("*.json")):
                if not f.name.startswith("."):
                    out.append(Entry(d.name, f.stem, f))
        return out

    def commits(self, profile_id: str) -> set[str]:
        return {e.commit for e in self.entries(profile_id)}

    def profiles_at(self, commit: str) -> list[Entry]:
        return [e for e in self.entries() if e.commit == commit]

    def all_commits(self) -> set[str]:
        return {e.commit for e in self.entries()}

    def load(self, profile_id: str, commit: str) -> Baseline:
        return load(self.path_for(profile_id, commit))

    def load_all(self, profile_id: str | None = None) -> tuple[list[Baseline], list[str]]:
        """Every readable baseline, and one error message per file that is not."""
        good, errors = [], []
        for e in self.entries(profile_id):
            try:
                good.append(load(e.path))
            except BaselineError as exc:
                errors.append(str(exc))
        return good, errors

    def iter_loaded(self, profile_id: str, commits: Iterable[str]) -> Iterator[Baseline]:
        """Baselines of the profile for these commits, in the order given; broken ones skip."""
        have = self.commits(profile_id)
        for c in commits:
            if c in have:
                try:
                    yield self.load(profile_id, c)
                except BaselineError:
                    continue

    def save(
        self,
        *,
        profile_id: str,
        profile: Mapping[str, Any],
        commit: str,
        branch: str | None,
        dirty: bool,
        committed_at: str,
        tests: Mapping[str, Sequence[Mapping[str, Any]]],
        outcomes: Mapping[str, str] | None = None,
    ) -> Path:
        """Append the runs (per test nodeid) to the commit's file; return its path.

        An existing file that cannot be read is left untouched and BaselineError is raised, so
        no earlier result is ever lost.
        """
        if not _SHA.match(commit):
            raise BaselineError(f"{commit!r} is not a commit id")
        path = self.path_for(profile_id, commit)
        if path.exists():
            current = load(path)
            if current.profile != dict(profile):
                raise BaselineError(
                    f"{path}: holds a different profile under the same id; move it away")
        else:
            current = Baseline(path=path, profile_id=profile_id, profile=dict(profile),
                               commit=commit, branch=branch, dirty=dirty,
                               committed_at=committed_at, saved_at="")
        current.saved_at = now_iso()
        current.dirty = current.dirty or dirty
        if branch:
            current.branch = branch
        for nodeid, runs in tests.items():
            entry = current.tests.setdefault(nodeid, {"runs": []})
            entry.setdefault("runs", []).extend(dict(r) for r in runs)
            if outcomes and nodeid in outcomes:
                entry["outcome"] = outcomes[nodeid]
        atomic_write_text(path, dumps(current.to_dict()))
        return path

    def prune(self, keep: int, order: Mapping[str, int] | None = None,
              dry_run: bool = False) -> tuple[list[Path], list[str]]:
        """Keep the ``keep`` newest commits per profile; remove the older files.

        Newest is by ``order`` (commit -> rank, 0 the newest, e.g. git log order) when it knows
        the commit, else by the commit date stored in the file. Broken files are never removed:
        they are reported in the second list.
        """
        if keep < 1:
            raise ValueError("keep must be >= 1")
        removed: list[Path] = []
        errors: list[str] = []
        by_profile: dict[str, list[Baseline]] = {}
        for e in self.entries():
            try:
                by_profile.setdefault(e.profile_id, []).append(load(e.path))
            except BaselineError as exc:
                errors.append(str(exc))
        big = 1 << 60
        for baselines in by_profile.values():
            def rank(b: Baseline) -> tuple[int, str]:
                pos = order.get(b.commit, big) if order else big
                return (pos, _neg(b.committed_at or b.saved_at))

            baselines.sort(key=rank)
            for b in baselines[keep:]:
                removed.append(b.path)
                if not dry_run:
                    b.path.unlink(missing_ok=True)
        return removed, errors


def _neg(iso: str) -> str:
    """A key that sorts ISO dates newest first."""
    return "".join(chr(0x10FFFF - ord(ch)) for ch in iso)


def run_value(run: Mapping[str, Any], metric: str) -> float | None:
    value = run.get("summary", {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
