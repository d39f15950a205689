"""Baselines per commit and profile: ``<dir>/<profile_id>/<commit>.json``.

File format (plain, sorted, versioned JSON; indent 1 so it diffs well in git)::

    {"schema": "pytest-llmperf/baseline", "schema_version": 1,
     "profile_id": str, "profile": {...}, "commit": sha, "branch": str | null,
     "dirty": bool, "committed_at": iso8601, "saved_at": iso8601,
     "tests": {"<nodeid>": {"runs": [{"summary": {...}, "started_at": iso,
                                     "workload": {...}, "engine": {...},
                                     "samples": [...], ...}],
                             "outcome": "passed", "gate": "ok"}}}

A test's key in ``tests`` is its baseline key (``store/keys.py``): the test file's path
relative to the git repository plus pytest's ``::`` rest, which is pytest's node id when the
rootdir is the repository's root; older files may hold pytest's node id relative to another
rootdir, which readers still find (``keys.TestKey.find``).

``gate`` (optional, older files lack it) is the gate verdict the test got when it was saved
(``ok``, ``no baseline``, ``regression``, ``undecided``): a later commit whose nearest
baseline was a regression or undecided is also compared with the last clean one.

Saving appends runs to the commit's file, never replaces them, and writes atomically (a
temporary file ``.<name>.*.tmp`` renamed over the old one), so a crash mid-write leaves the
previous file intact. Every save holds a file lock on the directory (``.llmperf-save.lock``
at its top, shared by every process and machine that sees the directory), so concurrent
sessions saving to the same file all land; a save that cannot get the lock within
``LOCK_TIMEOUT_S`` fails with BaselineError. The next save to a profile directory removes
temporary files older than that, left by an interrupted save; they are never read.

Runs saved from a dirty tree (``--llmperf-save-dirty``) go to ``<commit>.dirty.json`` beside
the clean ``<commit>.json``: the gate compares only with clean files when it looks for the
nearest ancestor, and uses a commit's dirty file only when ``--llmperf-compare`` names that
commit and it has no clean file.

Reading validates every field the plugin uses (types, finite numbers): a corrupt, foreign or
mistyped file is a BaselineError that names the file and the field; the other files still
load. A file is read through ``reading.read_bytes`` (regular files only, at most
``LLMPERF_MAX_FILE_MB``) and may nest at most ``MAX_DEPTH`` levels. An empty file (0 bytes, the
leftover of a write interrupted where writes are not atomic) holds no run: it is an
``EmptyBaselineError``, and a save writes over it.

Files are written streamed (``write_json``, ``encode_json``): the text of a large baseline is
never built in memory as a whole (``json.dumps`` with ``indent`` keeps a list of every token,
several times the file's size).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, dumps_pieces
from ..reading import ReadLimitError, is_regular_file, read_bytes
from ..values import is_finite_number

SCHEMA = "pytest-llmperf/baseline"
SCHEMA_VERSION = 1
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
DIRTY_SUFFIX = ".dirty"
LOCK_NAME = ".llmperf-save.lock"
LOCK_TIMEOUT_S = 60.0  # how long a save waits for another one; also when a .tmp is stale
_GITIGNORE = "# written by pytest-llmperf: its save lock and interrupted saves\n.*.lock\n.*.tmp\n"
MAX_DEPTH = 64  # nesting of a baseline document (its own is under 10 levels)


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and the fix."""


class EmptyBaselineError(BaselineError):
    """An empty (0-byte) baseline file or store object: the leftover of a write interrupted
    on storage without atomic writes. It holds no run; readers skip it with a warning."""


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


def _type_problem(data: Mapping[str, Any]) -> str | None:
    """The first field of a baseline document with the wrong type, as ``field is X, not Y``."""
    for key, kind in (("profile_id", str), ("commit", str), ("profile", dict), ("tests", dict)):
        if not isinstance(data.get(key), kind):
            return f"{key!r} missing or not a {_KIND[kind]}"
    for key, kinds in (("branch", (str, type(None))), ("dirty", (bool,)),
                       ("committed_at", (str,)), ("saved_at", (str,))):
        if key in data and not isinstance(data[key], kinds):
            return f"{key!r} is {_show(data[key])}, not a {_KIND[kinds[0]]}"
    for nodeid, entry in data["tests"].items():
        where = f"tests[{nodeid!r}]"
        if not isinstance(entry, Mapping):
            return f"{where} is {_show(entry)}, not an object"
        runs = entry.get("runs")
        if not isinstance(runs, list):
            return f"{where} has no valid 'runs' list ({where}.runs is {_show(runs)})"
        if "outcome" in entry and not isinstance(entry["outcome"], str):
            return f"{where}.outcome is {_show(entry['outcome'])}, not a string"
        if "gate" in entry and not isinstance(entry["gate"], str | None):
            return f"{where}.gate is {_show(entry['gate'])}, not a string"
        for i, run in enumerate(runs):
            at = f"{where}.runs[{i}]"
            if not isinstance(run, Mapping):
                return f"{at} is {_show(run)}, not an object"
            summary = run.get("summary")
            if not isinstance(summary, Mapping):
                return f"{at}.summary is {_show(summary)}, not an object"
            for metric, value in summary.items():
                if value is not None and not is_finite_number(value):
                    return f"{at}.summary[{metric!r}] is {_show(value)}, not a finite number"
            for field_name, field_kind in _RUN_FIELDS:
                if field_name in run and not isinstance(run[field_name], field_kind):
                    return (f"{at}.{field_name} is {_show(run[field_name])}, "
                            f"not a {_KIND[field_kind]}")
            for j, sample in enumerate(run.get("samples", ())):
                if not isinstance(sample, Mapping):
                    return f"{at}.samples[{j}] is {_show(sample)}, not an object"
    return None


_RUN_FIELDS: tuple[tuple[str, type], ...] = (
    ("workload", dict), ("engine", dict), ("client", dict), ("samples", list),
    ("warnings", list), ("started_at", str))
_KIND: dict[type, str] = {str: "string", dict: "object", list: "list", bool: "boolean",
                          type(None): "null"}


def _show(value: Any) -> str:
    """A JSON value in a few characters, for an error message."""
    text = json.dumps(value, default=str) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_deep(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists and objects more than ``limit`` levels (iteratively: a
    document too deep for recursion is the case it is for)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            if isinstance(item, dict | list):
                if depth >= limit:
                    return True
                stack.append((item, depth + 1))
    return False


def parse(path: Path, data: Any) -> Baseline:
    """Validate a decoded baseline document; BaselineError naming the file and the first bad
    field otherwise (a wrong type anywhere the plugin reads, a number that is not finite,
    nesting deeper than MAX_DEPTH)."""
    if isinstance(data, dict | list) and _too_deep(data, MAX_DEPTH):
        raise BaselineError(f"{path}: nested deeper than {MAX_DEPTH} levels (the limit for a "
                            f"baseline file); {_fix(path)}")
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise BaselineError(f"{path}: not a pytest-llmperf baseline file (no \"schema\": "
                            f"\"{SCHEMA}\"); move it out of the baseline directory")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BaselineError(f"{path}: baseline schema_version {version!r} is not supported "
                            f"(this pytest-llmperf reads {SCHEMA_VERSION}); upgrade "
                            "pytest-llmperf or move the file away")
    problem = _type_problem(data)
    if problem:
        raise BaselineError(f"{path}: malformed baseline ({problem}); {_fix(path)}")
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def empty_message(where: str | Path, remove: str) -> str:
    """The warning for an empty (0-byte) baseline file or store object; ``remove``: how."""
    return (f"{where}: empty (0 bytes), the leftover of an interrupted write; it holds no run "
            f"and was skipped: {remove}")


def text_of(where: str | Path, data: bytes, fix: str) -> str:
    """A baseline file's bytes as text; BaselineError when they are not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BaselineError(f"{where}: not a text file; {fix}") from None


def decode(where: str | Path, text: str, fix: str) -> Any:
    """The JSON document in a baseline file's text (``where`` names it in errors, ``fix``
    says what to do); EmptyBaselineError for an empty file, BaselineError for anything that
    is not JSON without NaN and with nesting Python can follow."""
    if not text:
        raise EmptyBaselineError(empty_message(where, fix))
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{where}: corrupt baseline, not valid JSON (line {exc.lineno}: "
                            f"{exc.msg}); {fix}") from None
    except RecursionError:
        raise BaselineError(f"{where}: corrupt baseline, JSON nested too deeply to read; "
                            f"{fix}") from None
    except ValueError as exc:
        raise BaselineError(f"{where}: corrupt baseline ({exc}); {fix}") from None


def read_file(path: str | Path) -> str:
    """The text of a baseline file: a regular file of at most ``LLMPERF_MAX_FILE_MB``
    (``reading.read_bytes``: a FIFO or a device is refused without blocking), UTF-8;
    BaselineError naming the file (and the limit it broke) otherwise. Only the text stays in
    memory, not the bytes it was decoded from."""
    try:
        data = read_bytes(path)
    except ReadLimitError as exc:
        raise BaselineError(str(exc)) from None
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return text_of(path, data, _fix(Path(path)))


def load(path: str | Path, text: str | None = None) -> Baseline:
    """Read and validate one baseline file (``text``: its contents, when already read);
    BaselineError naming the file otherwise (EmptyBaselineError for an empty one)."""
    path = Path(path)
    if text is None:
        text = read_file(path)
    fix = f"remove it (rm {path})" if not text else _fix(path)
    baseline = parse(path, decode(path, text, fix))
    expected = baseline.commit + (DIRTY_SUFFIX if baseline.dirty and
                                  path.name.endswith(DIRTY_SUFFIX + ".json") else "")
    if path.stem != expected or path.parent.name != baseline.profile_id:
        where = f"{baseline.commit}{DIRTY_SUFFIX if baseline.dirty else ''}.json"
        raise BaselineError(
            f"{path}: its contents say profile {baseline.profile_id!r} and commit "
            f"{baseline.commit[:12]!r}, which does not match where it lies; move it to "
            f"{baseline.profile_id}/{where}"
        )
    return baseline


@dataclass(frozen=True)
class Entry:
    """A baseline file found on disk (not yet loaded); ``dirty``: a ``<commit>.dirty.json``."""

    profile_id: str
    commit: str
    path: Path
    dirty: bool = False


class BaselineStore:
    """The baseline directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, profile_id: str, commit: str, dirty: bool = False) -> Path:
        return self.root / profile_id / f"{commit}{DIRTY_SUFFIX if dirty else ''}.json"

    def entries(self, profile_id: str | None = None,
                dirty: bool | None = False) -> list[Entry]:
        """Every <profile>/<commit>.json file, by profile then commit (nothing is parsed).

        ``dirty``: False, the clean files only (the default); True, only the
        ``<commit>.dirty.json`` files; None, both. Dot files (the lock, the temporary files
        of a save) are never entries.
        """
        if not self.root.is_dir():
            return []
        dirs = [self.root / profile_id] if profile_id else sorted(self.root.iterdir())
        out = []
        for d in dirs:
            if not d.is_dir() or d.name.startswith("."):
                continue
            for f in sorted(d.glob("*.json")):
                if f.name.startswith("."):
                    continue
                is_dirty = f.stem.endswith(DIRTY_SUFFIX)
                if dirty is None or dirty == is_dirty:
                    commit = f.stem[: -len(DIRTY_SUFFIX)] if is_dirty else f.stem
                    out.append(Entry(d.name, commit, f, is_dirty))
        return out

    def commits(self, profile_id: str, dirty: bool = False) -> set[str]:
        return {e.commit for e in self.entries(profile_id, dirty)}

    def profiles_at(self, commit: str, dirty: bool | None = False) -> list[Entry]:
        return [e for e in self.entries(dirty=dirty) if e.commit == commit]

    def all_commits(self, dirty: bool | None = False) -> set[str]:
        return {e.commit for e in self.entries(dirty=dirty)}

    def load(self, profile_id: str, commit: str, dirty: bool = False) -> Baseline:
        return load(self.path_for(profile_id, commit, dirty))

    def load_all(self, profile_id: str | None = None,
                 dirty: bool | None = False) -> tuple[list[Baseline], list[str]]:
        """Every readable baseline, and one error message per file that is not."""
        good, errors = [], []
        for e in self.entries(profile_id, dirty):
            try:
                good.append(load(e.path))
            except BaselineError as exc:
                errors.append(str(exc))
        return good, errors

    def iter_loaded(self, profile_id: str, commits: Iterable[str]) -> Iterator[Baseline]:
        """Clean baselines of the profile for these commits, in the order given; broken ones
        are skipped."""
        have = self.commits(profile_id)
        for c in commits:
            if c in have:
                try:
                    yield self.load(profile_id, c)
                except BaselineError:
                    continue

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's save lock (``.llmperf-save.lock``) across processes.

        BaselineError naming the lock file when it cannot be had within LOCK_TIMEOUT_S.
        """
        from filelock import FileLock, Timeout

        lock_path = self.root / LOCK_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                atomic_write_text(ignore, _GITIGNORE)
            lock = FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S)
            lock.acquire()
        except Timeout:
            raise BaselineError(
                f"{lock_path}: another session has been saving to {self.root} for over "
                f"{LOCK_TIMEOUT_S:g} s and still holds this lock; save again when it has "
                "finished"
            ) from None
        except OSError as exc:
            raise BaselineError(f"{lock_path}: cannot lock the baseline directory "
                                f"({exc.strerror or exc}); make it writable or give "
                                "another --llmperf-baseline-dir") from None
        try:
            yield
        finally:
            lock.release()

    def remove_stale_temporaries(self, directory: Path) -> list[Path]:
        """Delete the ``.<name>.*.tmp`` files of interrupted saves in ``directory`` that are
        older than LOCK_TIMEOUT_S (a live save finishes well within it); return them."""
        removed = []
        limit = time.time() - LOCK_TIMEOUT_S
        for f in directory.glob(".*.tmp"):
            try:
                if f.is_file() and f.stat().st_mtime < limit:
                    f.unlink()
                    removed.append(f)
            except OSError:
                continue
        return removed

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
        gates: Mapping[str, str] | None = None,
    ) -> Path:
        """Append the runs (per test nodeid) to the commit's file; return its path.

        A dirty tree's runs go to ``<commit>.dirty.json``, never into the clean file. The
        read-modify-write holds the directory's lock, so concurrent saves all land. An
        existing file that cannot be read is left untouched and BaselineError is raised, so
        no earlier result is ever lost.
        """
        if not _SHA.match(commit):
            raise BaselineError(f"{commit!r} is not a commit id")
        path = self.path_for(profile_id, commit, dirty)
        with self.locked():
            if path.parent.is_dir():
                self.remove_stale_temporaries(path.parent)
            if path.exists() and not is_empty(path):  # an empty file holds no run
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
                if gates and nodeid in gates:  # the gate verdict it got (gate.GATE_VERDICTS)
                    entry["gate"] = gates[nodeid]
            write_json(path, current.to_dict())
        return path

    def prune(self, keep: int, order: Mapping[str, int] | None = None,
              dry_run: bool = False) -> tuple[list[Path], list[str]]:
        """Keep the ``keep`` newest commits per profile; remove the older files (a commit's
        clean and dirty files go together).

        Newest is by ``order`` (commit -> rank, 0 the newest, e.g. git log order) when it knows
        the commit, else by the commit date stored in the file. Broken files are never removed:
        they are reported in the second list.
        """
        if keep < 1:
            raise ValueError("keep must be >= 1")
        removed: list[Path] = []
        errors: list[str] = []
        by_profile: dict[str, dict[str, list[Baseline]]] = {}
        for e in self.entries(dirty=None):
            try:
                b = load(e.path)
            except BaselineError as exc:
                errors.append(str(exc))
                continue
            by_profile.setdefault(e.profile_id, {}).setdefault(b.commit, []).append(b)
        big = 1 << 60

        def rank(files: list[Baseline]) -> tuple[int, str]:
            b = files[0]
            pos = order.get(b.commit, big) if order else big
            return (pos, _neg(max(f.committed_at or f.saved_at for f in files)))

        for commits in by_profile.values():
            ranked = sorted(commits.values(), key=rank)
            for files in ranked[keep:]:
                for b in files:
                    removed.append(b.path)
                    if not dry_run:
                        b.path.unlink(missing_ok=True)
        return removed, errors


def is_empty(path: Path) -> bool:
    """A regular file of 0 bytes (what an interrupted write leaves where writes are not
    atomic); never opens it."""
    try:
        return is_regular_file(path) and path.stat().st_size == 0
    except OSError:
        return False


def encode_json(data: Any) -> bytes:
    """``files.dumps(data)`` as UTF-8 bytes, without the token list ``json.dumps`` keeps."""
    buf = io.BytesIO()
    text = io.TextIOWrapper(buf, encoding="utf-8", newline="\n")
    for piece in dumps_pieces(data):
        text.write(piece)
    text.flush()
    out = buf.getvalue()
    text.detach()
    return out


def write_json(path: str | Path, data: Any) -> None:
    """``files.dumps(data)`` written atomically and streamed: memory stays that of ``data``."""
    atomic_write_text(path, dumps_pieces(data))


def _neg(iso: str) -> str:
    """A key that sorts ISO dates newest first."""
    return "".join(chr(0x10FFFF - ord(ch)) for ch in iso)


def run_value(run: Mapping[str, Any], metric: str) -> float | None:
    value = run.get("summary", {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
