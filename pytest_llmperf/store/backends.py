"""Baseline stores that outlive a CI runner or a Kubernetes Job: push the local baseline
directory to a store, pull the store into it.

A store is named by one string (``--llmperf-store STORE``, ``llmperf baselines push STORE``):

- a directory path or ``file://PATH``: the local layout itself (``<profile>/<commit>.json``),
  written under the directory's save lock (``store.LOCK_NAME``), so a store on a shared
  volume is also a ``--llmperf-baseline-dir``;
- any other fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``): fsspec and
  the backend (s3fs, gcsfs, ...) are imported when the store is opened. Object stores have no
  lock nor a portable conditional write, so a push never overwrites: it adds one new object
  per changed file, ``<profile>/<commit>[.dirty]/<time>-<random>.json``, holding only the runs
  the store lacks, and a pull merges every object of a file (plain ``<profile>/<commit>.json``
  files, e.g. from ``aws s3 sync baselines/ s3://...``, are read too). Two jobs pushing at once
  both land. ``compact`` (``llmperf baselines compact STORE``) folds a file's objects into one:
  it writes the merged object first, then deletes only the objects it read, so a push made
  meanwhile survives and two compactions at once leave duplicates that the merge removes;
- ``git:BRANCH`` or ``git:REMOTE/BRANCH`` (default remote ``origin``; ``REMOTE/`` counts only
  when REMOTE is a remote of the repository; BRANCH as ``git check-ref-format --branch``
  accepts it, and neither ``HEAD``, ``-...`` nor ``refs/...``, see ``branch_problem``): a
  dedicated branch holding the local layout.
  A push fetches the branch, merges each file with the branch's copy, writes blobs, a tree
  (through a temporary index file) and a commit with git's plumbing, and pushes it without
  force; a push rejected because another job pushed first starts again from the fetch, at
  most ``GIT_ATTEMPTS`` times. The working tree, the index and the current branch are never
  touched; the branch is created (without history) when the remote lacks it.

The store is a trust boundary, read one file at a time (``Source``, ``merge_file``): memory
is that of the largest file, never of the store; a file whose destination already holds the
same bytes (the same git blob id) is not read at all; only regular files are read, and no
file or object larger than ``LLMPERF_MAX_FILE_MB`` (its size is checked before it is read). An
empty (0-byte) file or object, the leftover of a write interrupted where writes are not
atomic, holds no run: it is skipped with a warning (not an error), and ``compact`` removes
the empty objects older than ``EMPTY_STALE_S``. ``memory://`` lives only inside one process:
the ``llmperf`` commands refuse it (sessions and tests use it).

Merging (``merge_baselines``) is the union of the runs per test, deduplicated by the run's
identity (the hash of its canonical JSON, which includes ``started_at``) and sorted by
(started_at, identity), so a push or pull repeated, or two merges in either order, give the
same file, and no run is ever dropped.

Errors are ``StoreUsageError`` (a store string that names nothing usable: exit 2) or
``StoreIOError`` (the store cannot be read or written: exit 1), one line each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import socket
import stat
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text
from ..reading import MAX_FILE_ENV, max_file_bytes
from . import gitinfo
from .baselines import (
    DIRTY_SUFFIX,
    Baseline,
    BaselineError,
    BaselineStore,
    EmptyBaselineError,
    decode,
    encode_json,
    is_empty,
    load,
    now_iso,
    parse,
    read_file,
    text_of,
    write_json,
)

if TYPE_CHECKING:
    import git

GIT_PREFIX = "git:"
DEFAULT_REMOTE = "origin"
GIT_ATTEMPTS = 6  # pushes rejected by a concurrent push: fetch, merge and push again


class StoreError(Exception):
    """A store that cannot be used; one line."""


class StoreUsageError(StoreError):
    """The store string names nothing usable (a bad URL, a missing package): exit 2."""


class StoreIOError(StoreError):
    """The store cannot be read or written (unreachable, refused, rejected): exit 1."""


# ------------------------------------------------------------------------------- merging


def run_identity(run: Mapping[str, Any]) -> str:
    """A run's stable identity: the SHA-256 of its canonical JSON (started_at included)."""
    text = json.dumps(run, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _run_key(run: Mapping[str, Any]) -> tuple[str, str]:
    started = run.get("started_at")
    return (started if isinstance(started, str) else "", run_identity(run))


def _union(*groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for runs in groups:
        for run in runs:
            seen.setdefault(_run_key(run), dict(run))
    return [seen[k] for k in sorted(seen)]


def merge_baselines(a: Baseline, b: Baseline) -> Baseline:
    """The runs of two copies of one baseline file (same profile, commit and dirtiness) as
    one: every test's runs united, deduplicated by ``run_identity`` and sorted; the newer
    copy's (by saved_at) outcome, branch and extra fields win. Pure: neither argument changes;
    the result has ``a``'s path. BaselineError naming both when they do not belong together.
    """
    both = f"{a.path} and {b.path}"
    if a.profile_id != b.profile_id or a.profile != b.profile:
        raise BaselineError(f"{both} hold different profiles ({a.profile_id!r} and "
                            f"{b.profile_id!r}); they cannot be merged: move one away")
    if a.commit != b.commit or a.dirty != b.dirty:
        raise BaselineError(
            f"{both} are baselines of different commits ({a.commit[:12]}"
            f"{' dirty' if a.dirty else ''} and {b.commit[:12]}{' dirty' if b.dirty else ''});"
            " they cannot be merged: move one away")
    older, newer = sorted((a, b), key=lambda x: x.saved_at)
    tests: dict[str, dict[str, Any]] = {}
    for nodeid in sorted(set(a.tests) | set(b.tests)):
        entry = {**older.tests.get(nodeid, {}), **newer.tests.get(nodeid, {})}
        entry["runs"] = _union(a.runs(nodeid), b.runs(nodeid))
        tests[nodeid] = entry
    return Baseline(
        path=a.path, profile_id=a.profile_id, profile=dict(a.profile), commit=a.commit,
        branch=newer.branch or older.branch, dirty=a.dirty,
        committed_at=a.committed_at or b.committed_at,
        saved_at=max(a.saved_at, b.saved_at), tests=tests,
        extra={**older.extra, **newer.extra})


def _normal(b: Baseline) -> Baseline:
    """``b`` with its runs deduplicated and sorted (the form a merge writes: what
    ``merge_baselines(b, b)`` gives, each run's identity computed once)."""
    tests = {nodeid: {**entry, "runs": _union(b.runs(nodeid))}
             for nodeid, entry in sorted(b.tests.items())}
    return replace(b, profile=dict(b.profile), tests=tests, extra=dict(b.extra))


def relpath(b: Baseline) -> str:
    """Where a baseline lies in a store: ``<profile>/<commit>[.dirty].json``."""
    return f"{b.profile_id}/{b.commit}{DIRTY_SUFFIX if b.dirty else ''}.json"


def _new_runs(have: Baseline | None, b: Baseline) -> Baseline | None:
    """The runs of ``b`` that ``have`` lacks, as a baseline (None when there are none)."""
    known = {nodeid: {_run_key(r) for r in have.runs(nodeid)} for nodeid in have.tests} \
        if have is not None else {}
    tests: dict[str, dict[str, Any]] = {}
    for nodeid, entry in b.tests.items():
        runs = [r for r in b.runs(nodeid) if _run_key(r) not in known.get(nodeid, set())]
        if runs:
            tests[nodeid] = {**entry, "runs": _union(runs)}
    if not tests:
        return None
    return replace(b, tests=tests)


# ------------------------------------------------------------------------------ transfers


@dataclass
class Transfer:
    """What a push, pull or compaction did: files changed (store-relative path, runs added;
    objects folded, for a compaction), one message per file that could not be read (left as it
    was; ``errors`` make a command exit 1), one per empty object or file (``warnings``: the
    leftover of an interrupted write, holding no run: named, not a failure); a compaction also
    lists the empty objects it removed and the files it left as they were."""

    files: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1  # git: pushes tried (rejected ones included)
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(n for _, n in self.files)

    def lines(self, verb: str, where: str) -> list[str]:
        if not self.files:
            return [f"{verb} nothing {where}: no new run"]
        out = [f"{verb} {self.runs} run(s) in {len(self.files)} file(s) {where}"]
        out += [f"  {path}: +{n} run(s)" for path, n in self.files]
        return out


@dataclass
class Loaded:
    """One baseline file of a store, read: its baseline (its objects merged; None when none
    could be used), its text when it is the file as it is (one copy of it), and what went
    wrong (``errors``: unreadable, ``warnings``: empty)."""

    baseline: Baseline | None
    raw: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _unknown() -> str | None:
    return None


@dataclass
class Source:
    """One baseline file (``<profile>/<commit>[.dirty].json``) of a store or directory, read
    only when a merge needs it: ``read`` reads and checks it; ``digest`` is the git blob id of
    its bytes when that is cheap to know (None otherwise), so that a file whose destination
    holds the very same bytes is not read at all."""

    rel: str
    read: Callable[[], Loaded]
    digest: Callable[[], str | None] = _unknown


def blob_id(data: bytes) -> str:
    """The git blob id of ``data`` (what ``git hash-object`` prints for a file holding it)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def file_digest(path: Path) -> str | None:
    """The git blob id of a regular file's bytes, read in pieces; None for a missing, empty or
    non-regular file (opened without blocking: a FIFO is never waited on) or one larger than
    the size limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= max_file_bytes():
            return None
        digest = hashlib.sha1(b"blob %d\0" % st.st_size, usedforsecurity=False)
        done = 0
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
            done += len(chunk)
        return digest.hexdigest() if done == st.st_size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_local(path: Path) -> Loaded:
    try:
        text = read_file(path)
        return Loaded(load(path, text), text)
    except EmptyBaselineError as exc:
        return Loaded(None, warnings=[str(exc)])
    except BaselineError as exc:
        return Loaded(None, errors=[str(exc)])


def dir_sources(root: Path) -> list[Source]:
    """The baseline files of a directory (clean and dirty), each read when asked."""
    return [Source(f"{e.profile_id}/{e.path.name}", partial(_read_local, e.path),
                   partial(file_digest, e.path))
            for e in BaselineStore(root).entries(dirty=None)]


@contextlib.contextmanager
def _holding(local: BaselineStore) -> Iterator[None]:
    """The directory's save lock; StoreIOError when it cannot be had."""
    lock = local.locked()
    try:
        lock.__enter__()
    except BaselineError as exc:  # not had in time, or not writable
        raise StoreIOError(str(exc)) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def merge_file(local: BaselineStore, src: Source, out: Transfer) -> None:
    """Merge one baseline file into the baseline directory ``local`` under its save lock (the
    one ``BaselineStore.save`` holds), reading only what it needs: nothing when the local file
    holds the very same bytes; into a missing (or empty) local file, the source's bytes as they
    are (or its runs deduplicated, when it repeats one); else the two files' runs merged and
    written streamed. A local file that cannot be read is left untouched and named in
    ``out.errors``. Memory: the two files parsed, never a third copy as text."""
    path = local.root / src.rel
    have = file_digest(path)  # None when there is no such file: the source's is not needed
    if have is not None and src.digest() == have:
        return
    got = src.read()
    out.errors += got.errors
    out.warnings += got.warnings
    if got.baseline is None:
        return
    with _holding(local):
        try:
            if path.exists() and not is_empty(path):  # an empty file holds no run
                try:
                    current = load(path)
                    merged = merge_baselines(current, got.baseline)
                except BaselineError as exc:
                    out.errors.append(str(exc))
                    return
                added = merged.n_runs - current.n_runs
                if added == 0:
                    return
                write_json(path, merged.to_dict())
            else:
                merged = _normal(got.baseline)
                added = merged.n_runs
                if got.raw is not None and added == got.baseline.n_runs:
                    atomic_write_text(path, got.raw)
                else:
                    write_json(path, merged.to_dict())
        except OSError as exc:
            raise StoreIOError(f"cannot write {path}: {exc.strerror or exc}") from None
    out.files.append((src.rel, added))


def _parse_doc(name: str, text: str, profile_dir: str, stem: str, empty_fix: str
               ) -> Baseline:
    """A baseline from a store object's text, checked against where it lies (``name``);
    EmptyBaselineError (saying ``empty_fix``) for an empty object."""
    where = Path(name)
    doc = decode(name, text, empty_fix if not text else "repair or remove it in the store")
    try:
        b = parse(where, doc)
    except BaselineError as exc:  # parse names the file as a path: name the object
        raise BaselineError(str(exc).replace(str(where), name)) from None
    expected = b.commit + (DIRTY_SUFFIX if b.dirty else "")
    if b.profile_id != profile_dir or stem != expected:
        raise BaselineError(f"{name}: its contents say profile {b.profile_id!r} and commit "
                            f"{b.commit[:12]!r}, which does not match where it lies")
    return b


def _too_large(name: str, size: int, limit: int) -> BaselineError:
    return BaselineError(f"{name}: {size / 2**20:.1f} MiB is larger than the "
                         f"{limit / 2**20:g} MiB limit for a file this tool reads (raise "
                         f"{MAX_FILE_ENV} if it is genuine); not read")


_FILE = re.compile(r"^(?P<stem>[0-9a-f]{7,64}(?:\.dirty)?)\.json$")


# --------------------------------------------------------------------------------- stores


class Store(ABC):
    """A place baselines are kept besides the local directory. Pulls, pushes and
    compactions go one file at a time: memory is that of the largest file, not of the store."""

    name: str  # the store string, for messages

    @abstractmethod
    def sources(self) -> list[Source]:
        """The store's baseline files, each read when asked."""

    @abstractmethod
    def merge_in(self, sources: Callable[[], Iterable[Source]]) -> Transfer:
        """Add the runs of ``sources()`` the store lacks; never drop one it has. ``sources`` is
        called again for each attempt (a git push beaten by another job's)."""

    def read_all(self) -> tuple[list[Baseline], list[str]]:
        """Every baseline file of the store (copies merged), and one message per object that
        cannot be read or is empty: the whole store in memory at once, for tests and small
        stores (pull, push and compact read one file at a time)."""
        found: list[Baseline] = []
        problems: list[str] = []
        for src in self.sources():
            got = src.read()
            problems += got.errors + got.warnings
            if got.baseline is not None:
                found.append(got.baseline)
        return found, problems

    def pull(self, local_dir: str | Path) -> Transfer:
        """Merge the store into the local baseline directory, file by file."""
        local, out = BaselineStore(local_dir), Transfer()
        for src in self.sources():
            merge_file(local, src, out)
        return out

    def push(self, local_dir: str | Path) -> Transfer:
        """Merge the local baseline directory into the store, file by file (unreadable local
        files are skipped and named)."""
        root = Path(local_dir)
        if not BaselineStore(root).entries(dirty=None):
            return Transfer()
        return self.merge_in(lambda: dir_sources(root))


class DirectoryStore(Store):
    """A baseline directory (a shared volume, a mounted bucket): the local layout, written
    under its save lock."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.root = Path(path).expanduser()
        self.name = name or str(self.root)

    def sources(self) -> list[Source]:
        if self.root.exists() and not self.root.is_dir():
            raise StoreUsageError(f"{self.name} is a file, not a baseline directory")
        return dir_sources(self.root)

    def merge_in(self, sources: Callable[[], Iterable[Source]]) -> Transfer:
        store, out = BaselineStore(self.root), Transfer()
        for src in sources():
            merge_file(store, src, out)
        return out


#: fsspec protocols whose store lives only inside the process that opened it.
PROCESS_LOCAL = frozenset({"memory"})
#: How old an empty object must be before ``compact`` removes it: no write of one object (at
#: most LLMPERF_MAX_FILE_MB) lasts that long, so it is not one still being filled.
EMPTY_STALE_S = 3600.0
_TIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "created", "modified")


def _age_s(info: Mapping[str, Any]) -> float | None:
    """Seconds since an object was last written, from what its backend reports (fsspec
    backends name it differently); None when it reports nothing usable."""
    for key in _TIME_KEYS:
        value = info.get(key)
        when: float | None = None
        if isinstance(value, datetime):
            when = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            when = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        if when is not None:
            return max(0.0, time.time() - when)
    return None


@dataclass
class _Objects:
    """The objects of one store file, read: the readable ones parsed (full path, baseline),
    the empty ones (full path, info), and the file as one ``Loaded``."""

    pieces: list[tuple[str, Baseline]]
    empty: list[tuple[str, Mapping[str, Any]]]
    loaded: Loaded


class FsspecStore(Store):
    """An fsspec URL (s3://, gs://, memory://, ...): append-only objects, merged on read."""

    def __init__(self, url: str) -> None:
        self.name = url
        try:
            import fsspec
        except ImportError:
            raise StoreUsageError(f"{url}: URL stores need fsspec: pip install fsspec"
                                  ) from None
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except ImportError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else "missing backend"
            package = re.search(r"install (\S+)", text, re.IGNORECASE)
            hint = f" (pip install {package.group(1)})" if package else ""
            raise StoreUsageError(f"{url}: {text}{hint}") from None
        except ValueError as exc:
            raise StoreUsageError(f"{url}: {str(exc).splitlines()[0]} (give a directory, "
                                  "file://, an fsspec URL such as s3://bucket/prefix, or "
                                  "git:BRANCH)") from None
        except Exception as exc:  # a backend refusing its options, credentials, ...
            raise StoreIOError(f"{url}: cannot open ({_one_line(exc)})") from None
        self.fs = fs
        self.root = str(root).rstrip("/")

    @property
    def process_local(self) -> bool:
        """Whether the store lives only inside this process (``memory://``): what a command
        writes there is gone when it exits."""
        protocol = self.fs.protocol
        names = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return any(p in PROCESS_LOCAL for p in names)

    def _rel(self, path: str) -> str:
        path = path.rstrip("/")
        root = self.root.lstrip("/")
        rel = path.lstrip("/")
        return rel[len(root):].lstrip("/") if rel.startswith(root) else rel

    def _name(self, full: str) -> str:
        return f"{self.name.rstrip('/')}/{self._rel(full)}"

    def _listing(self) -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
        """The objects that hold baselines, by file (``<profile>/<stem>.json``), each as (full
        path, what the backend says of it), in name order; nothing is read."""
        try:
            found = self.fs.find(self.root, detail=True) if self.fs.exists(self.root) else {}
        except Exception as exc:
            raise StoreIOError(f"{self.name}: cannot list ({_one_line(exc)})") from None
        out: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for full in sorted(found):
            parts = self._rel(full).split("/")
            if any(p.startswith(".") for p in parts) or not parts[-1].endswith(".json"):
                continue
            if len(parts) == 2 and _FILE.match(parts[1]):  # plain <profile>/<commit>.json
                pdir, stem = parts[0], parts[1][: -len(".json")]
            elif len(parts) == 3 and _FILE.match(parts[1] + ".json"):  # a pushed object
                pdir, stem = parts[0], parts[1]
            else:
                continue
            info = found[full] if isinstance(found[full], Mapping) else {}
            out.setdefault(f"{pdir}/{stem}.json", []).append((full, info))
        return dict(sorted(out.items()))

    def _read_object(self, full: str, info: Mapping[str, Any]) -> bytes:
        """An object's bytes, at most the size limit (``LLMPERF_MAX_FILE_MB``): its listed
        size is checked first, and no more than the limit is read whatever it said."""
        name, limit = self._name(full), max_file_bytes()
        size = info.get("size")
        if isinstance(size, int) and size > limit:
            raise _too_large(name, size, limit)
        try:
            with self.fs.open(full, "rb") as fh:
                data = fh.read(limit + 1)
        except Exception as exc:
            raise StoreIOError(f"{name}: cannot read ({_one_line(exc)})") from None
        if len(data) > limit:
            raise _too_large(name, len(data), limit)
        return bytes(data)

    def _empty_fix(self) -> str:
        return (f"llmperf baselines compact {self.name} removes it once it is "
                f"{EMPTY_STALE_S / 3600:g} h old")

    def _text_of(self, full: str, data: bytes) -> str:
        return text_of(self._name(full), data, "repair or remove it in the store")

    def _text(self, full: str, info: Mapping[str, Any]) -> str:
        return self._text_of(full, self._read_object(full, info))

    def _read_file(self, rel: str, objects: Sequence[tuple[str, Mapping[str, Any]]],
                   text: str | None = None) -> _Objects:
        """One file's objects read and merged (``text``: that of its only object, when
        already read). An unreadable object is named and the others still count; objects that
        do not belong together leave the file out, named."""
        pdir, fname = rel.split("/")
        stem = fname[: -len(".json")]
        got = Loaded(None)
        pieces: list[tuple[str, Baseline]] = []
        empty: list[tuple[str, Mapping[str, Any]]] = []
        for full, info in objects:
            try:
                raw = text if text is not None else self._text(full, info)
                pieces.append((full, _parse_doc(self._name(full), raw, pdir, stem,
                                                self._empty_fix())))
            except EmptyBaselineError as exc:
                got.warnings.append(str(exc))
                empty.append((full, info))
                continue
            except BaselineError as exc:
                got.errors.append(str(exc))
                continue
            if len(objects) == 1:
                got.raw = raw
            del raw
        try:
            for _, b in pieces:
                got.baseline = b if got.baseline is None else merge_baselines(got.baseline, b)
        except BaselineError as exc:
            got.errors.append(str(exc))
            got.baseline, got.raw = None, None
        return _Objects(pieces, empty, got)

    def _source(self, rel: str, objects: list[tuple[str, Mapping[str, Any]]]) -> Source:
        if len(objects) != 1:
            return Source(rel, lambda: self._read_file(rel, objects).loaded)
        held: dict[str, Any] = {}  # the only object, read once for its digest and its text

        def fetch() -> None:
            if held:
                return
            held["digest"] = None
            try:
                data = self._read_object(*objects[0])
                held["digest"] = blob_id(data) if data else None
                held["text"] = self._text_of(objects[0][0], data)
            except BaselineError as exc:
                held["error"] = str(exc)

        def digest() -> str | None:
            fetch()
            return held["digest"] if "error" not in held else None

        def read() -> Loaded:
            fetch()
            if "error" in held:
                return Loaded(None, errors=[held["error"]])
            return self._read_file(rel, objects, held.pop("text", None)).loaded

        return Source(rel, read, digest)

    def sources(self) -> list[Source]:
        return [self._source(rel, objects) for rel, objects in self._listing().items()]

    def _put(self, b: Baseline, rel: str) -> None:
        """One new object of ``rel``'s file, never over an existing one."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = (f"{self.root}/{b.profile_id}/{rel[len(b.profile_id) + 1: -len('.json')]}"
                  f"/{stamp}-{uuid.uuid4().hex[:12]}.json")
        b.saved_at = now_iso()
        try:
            self.fs.pipe_file(target, encode_json(b.to_dict()))
        except Exception as exc:
            raise StoreIOError(f"{self.name}: cannot write {rel} ({_one_line(exc)}); "
                               "nothing was deleted") from None

    def compact(self) -> Transfer:
        """Each file held in several objects rewritten as one, file by file; ``files``: (file,
        objects folded). A file with an unreadable or conflicting object is left as it is
        (``left``). Empty objects hold no run: they do not stop a compaction, and those older
        than EMPTY_STALE_S (not a write still under way) are removed (``removed``)."""
        out = Transfer()
        for rel, objects in self._listing().items():
            read = self._read_file(rel, objects)
            out.errors += read.loaded.errors  # its warnings are the empty objects: below
            for full, info in read.empty:
                self._remove_empty(full, info, out)
            readable = len(objects) - len(read.empty)
            if read.loaded.errors:  # a file with an unreadable or conflicting object
                if readable > 1:
                    reason = ("an object of it is unreadable" if len(read.pieces) < readable
                              else "its objects do not belong together")
                    out.left.append(rel)
                    out.errors.append(f"{self.name}/{rel}: not compacted ({reason})")
                continue
            merged = read.loaded.baseline
            if merged is None or len(read.pieces) < 2:
                continue
            self._put(merged, rel)  # first the whole, then the pieces go
            for full, _ in read.pieces:
                try:
                    self.fs.rm_file(full)
                except FileNotFoundError:
                    pass  # compacted by someone else meanwhile: their whole holds it
                except Exception as exc:
                    raise StoreIOError(f"{self.name}: cannot delete {self._rel(full)} "
                                       f"({_one_line(exc)}); its runs are also in the new "
                                       "compacted object, so nothing is lost") from None
            out.files.append((rel, len(read.pieces)))
        return out

    def _remove_empty(self, full: str, info: Mapping[str, Any], out: Transfer) -> None:
        """Remove an empty object that no write is filling (older than EMPTY_STALE_S, and
        still empty now); else say why it stays."""
        name, age = self._name(full), _age_s(info)
        if age is None or age < EMPTY_STALE_S:
            when = "its age is unknown" if age is None else f"it is {age / 60:.0f} min old"
            out.warnings.append(f"{name}: empty object kept ({when}; a write may still be "
                                f"filling it): compact removes it once it is "
                                f"{EMPTY_STALE_S / 3600:g} h old, or remove it yourself when "
                                "no push or compaction is running")
            return
        try:
            if self.fs.info(full).get("size") != 0:
                return  # written meanwhile: a pull reads it
            self.fs.rm_file(full)
        except FileNotFoundError:
            return
        except Exception as exc:
            out.errors.append(f"{name}: cannot remove this empty object ({_one_line(exc)})")
            return
        out.removed.append(name)

    def merge_in(self, sources: Callable[[], Iterable[Source]]) -> Transfer:
        listing = self._listing()
        out = Transfer()
        for src in sources():
            got = src.read()
            out.errors += got.errors
            out.warnings += got.warnings
            if got.baseline is None:
                continue
            have = (self._read_file(src.rel, listing[src.rel]).loaded.baseline
                    if src.rel in listing else None)
            try:
                if have is not None:
                    merge_baselines(have, got.baseline)  # refuse a foreign profile early
                piece = _new_runs(have, got.baseline)
            except BaselineError as exc:
                out.errors.append(str(exc))
                continue
            if piece is None:
                continue
            self._put(piece, src.rel)
            out.files.append((src.rel, piece.n_runs))
        return out


def branch_problem(name: str) -> str | None:
    """Why ``name`` cannot be a store's branch (None when it can): the rules of ``git
    check-ref-format --branch``, and also no name git reads as something else: one that
    starts with ``-`` (an option), ``HEAD`` or ``@`` (the current commit), or ``refs/`` (a
    full reference: ``refs/heads/HEAD`` on the remote would shadow ``origin/HEAD`` in every
    clone)."""
    if not name:
        return "an empty branch name"
    if name.startswith("-"):
        return "a branch name cannot start with '-' (git would read it as an option)"
    if name in ("HEAD", "@"):
        return f"{name!r} names the current commit, not a branch"
    if name.startswith("refs/"):
        return ("give the branch's short name, not a reference under refs/ "
                "(refs/heads/HEAD would shadow origin/HEAD in every clone)")
    bad = sorted({c for c in name if ord(c) < 32 or ord(c) == 127 or c in " ~^:?*[\\"})
    if bad:
        return f"a branch name cannot contain {', '.join(repr(c) for c in bad)}"
    for needle in ("..", "@{", "//"):
        if needle in name:
            return f"a branch name cannot contain {needle!r}"
    if name.startswith("/") or name.endswith(("/", ".")):
        return "a branch name cannot start with '/' nor end with '/' or '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"no part of a branch name can start with '.' ({part!r})"
        if part.endswith(".lock"):
            return f"no part of a branch name can end with '.lock' ({part!r})"
    return None


class GitBranchStore(Store):
    """A dedicated branch of the repository's remote (see the module docstring)."""

    def __init__(self, spec: str, repo_path: str | Path, *, attempts: int = GIT_ATTEMPTS,
                 before_push: Callable[[], None] | None = None) -> None:
        """``spec``: the store string (``git:[REMOTE/]BRANCH``); ``repo_path``: a directory
        inside the repository. ``before_push``: called after the commit is made and before
        each push (tests use it to make two pushes race)."""
        self.name = spec
        target = spec[len(GIT_PREFIX):].strip()
        if not target:
            raise StoreUsageError(f"{spec!r} names no branch: write git:BRANCH or "
                                  "git:REMOTE/BRANCH, e.g. git:llmperf-baselines")
        try:
            self.repo = gitinfo.open_repo(repo_path)
        except gitinfo.GitError as exc:
            raise StoreUsageError(
                f"{spec}: {exc}; without a git checkout use a directory or an fsspec URL "
                "store (s3://bucket/prefix)") from None
        remotes = [r.name for r in self.repo.remotes]
        first, slash, rest = target.partition("/")
        if slash and first in remotes and rest:
            self.remote, self.branch = first, rest
        else:
            self.remote, self.branch = DEFAULT_REMOTE, target
        problem = branch_problem(self.branch)
        if problem:
            raise StoreUsageError(f"{spec}: {self.branch!r} is not a valid branch name: "
                                  f"{problem}")
        if self.remote not in remotes:
            raise StoreUsageError(
                f"{spec}: the repository at {self.repo.working_tree_dir or self.repo.git_dir} "
                f"has no remote {self.remote!r} (remotes: {', '.join(remotes) or 'none'}); "
                "add it (git remote add) or write git:REMOTE/BRANCH")
        self.tracking = f"refs/remotes/{self.remote}/{self.branch}"
        self.attempts = attempts
        self.before_push = before_push

    # -- plumbing --------------------------------------------------------------------------

    def _git_error(self, what: str, exc: git.GitCommandError) -> StoreIOError:
        text = _one_line(exc.stderr or exc) if exc.stderr else _one_line(exc)
        return StoreIOError(f"{self.name}: {what} failed: {text}")

    def fetch(self) -> str | None:
        """Fetch the branch into its remote-tracking ref; its commit, None when the remote has
        no such branch yet."""
        import git as gitmodule

        for attempt in range(self.attempts):
            try:
                self.repo.git.fetch("--quiet", "--no-tags", self.remote,
                                    f"+refs/heads/{self.branch}:{self.tracking}")
                return str(self.repo.git.rev_parse("--verify", f"{self.tracking}^{{commit}}"))
            except gitmodule.GitCommandError as exc:
                err = str(exc.stderr or "")
                if "couldn't find remote ref" in err or "no such ref" in err.lower():
                    return None
                if _ref_race(err) and attempt + 1 < self.attempts:
                    time.sleep(random.uniform(0.05, 0.3))
                    continue
                raise self._git_error(f"git fetch {self.remote} {self.branch}", exc) from None
        return None  # pragma: no cover (the loop returns or raises)

    def _tree(self, commit: str | None) -> dict[str, Any]:
        """``<profile>/<file>.json`` -> its blob, at ``commit`` (nothing is read)."""
        if commit is None:
            return {}
        import git as gitmodule

        out: dict[str, Any] = {}
        for item in self.repo.commit(commit).tree.traverse():
            if not isinstance(item, gitmodule.Blob):
                continue
            parts = str(item.path).split("/")
            if len(parts) == 2 and not parts[0].startswith(".") and _FILE.match(parts[1]):
                out[str(item.path)] = item
        return dict(sorted(out.items()))

    def _read_blob(self, rel: str, blob: Any) -> Loaded:
        """A file of the branch, read: its size is checked against the limit
        (``LLMPERF_MAX_FILE_MB``) before a byte of it is read."""
        name, limit = f"{self.name}:{rel}", max_file_bytes()
        pdir, fname = rel.split("/")
        try:
            size = int(blob.size)
            if size > limit:
                raise _too_large(name, size, limit)
            text = text_of(name, blob.data_stream.read(), "repair or remove it on the branch")
            return Loaded(_parse_doc(name, text, pdir, fname[: -len(".json")],
                                     "a push to the branch writes over it"), text)
        except EmptyBaselineError as exc:
            return Loaded(None, warnings=[str(exc)])
        except BaselineError as exc:
            return Loaded(None, errors=[str(exc)])
        except Exception as exc:  # git could not give the object
            raise StoreIOError(f"{name}: cannot read ({_one_line(exc)})") from None

    def sources(self) -> list[Source]:
        return [Source(rel, partial(self._read_blob, rel, blob), partial(str, blob.hexsha))
                for rel, blob in self._tree(self.fetch()).items()]

    def _identity_env(self) -> dict[str, str]:
        """Author and committer for the branch's commits: git's configuration, else
        pytest-llmperf (a CI runner often has no user.name)."""
        reader = self.repo.config_reader()
        name = reader.get_value("user", "name", "") or ""
        email = reader.get_value("user", "email", "") or ""
        env: dict[str, str] = {}
        if not (name and email):
            for who in ("AUTHOR", "COMMITTER"):
                env.setdefault(f"GIT_{who}_NAME",
                               os.environ.get(f"GIT_{who}_NAME") or "pytest-llmperf")
                env.setdefault(f"GIT_{who}_EMAIL",
                               os.environ.get(f"GIT_{who}_EMAIL") or "pytest-llmperf@localhost")
        return env

    def _commit(self, parent: str | None, files: Mapping[str, Path], message: str,
                tmp: Path) -> str:
        """A commit of ``parent``'s tree with ``files`` (path in the branch -> a file holding
        its new contents) written over it, through a temporary index in ``tmp``: the user's
        index and working tree are not touched."""
        env = {"GIT_INDEX_FILE": str(tmp / "index"), **self._identity_env()}
        files = dict(files)
        if parent is None:
            self.repo.git.read_tree("--empty", env=env)
            readme = tmp / "README.md"
            readme.write_text(README, encoding="utf-8")
            files["README.md"] = readme
        else:
            self.repo.git.read_tree(parent, env=env)
        names = sorted(files)
        paths = tmp / "paths"
        paths.write_text("".join(f"{files[rel]}\n" for rel in names), encoding="utf-8")
        with paths.open("rb") as fh:
            shas = str(self.repo.git.execute(
                ["git", "hash-object", "-w", "--no-filters", "--stdin-paths"], istream=fh)
            ).split()
        info = tmp / "index-info"
        info.write_text("".join(f"100644 {sha}\t{rel}\n"
                                for sha, rel in zip(shas, names, strict=True)),
                        encoding="utf-8")
        with info.open("rb") as fh:
            self.repo.git.execute(["git", "update-index", "--index-info"], istream=fh, env=env)
        tree = str(self.repo.git.write_tree(env=env))
        args = [tree, "-m", message] + (["-p", parent] if parent else [])
        return str(self.repo.git.commit_tree(*args, env=env))

    def _merge_one(self, src: Source, blob: Any, target: Path, out: Transfer) -> bool:
        """Merge one local file with the branch's copy (``blob``, None when the branch lacks
        it) into ``target``; whether it gained runs."""
        if blob is not None and src.digest() == blob.hexsha:
            return False  # the branch holds these very bytes
        got = src.read()
        out.errors += got.errors
        out.warnings += got.warnings
        if got.baseline is None:
            return False
        have: Baseline | None = None
        if blob is not None:
            stored = self._read_blob(src.rel, blob)
            out.warnings += stored.warnings  # an empty file holds no run: written over
            if stored.errors:
                out.errors += stored.errors
                out.errors.append(f"{self.name}:{src.rel} is unreadable on the branch; its "
                                  "runs were not pushed (repair or remove it there)")
                return False
            have = _normal(stored.baseline) if stored.baseline is not None else None
        try:
            merged = merge_baselines(have, got.baseline) if have else _normal(got.baseline)
        except BaselineError as exc:
            out.errors.append(str(exc))
            return False
        added = merged.n_runs - (have.n_runs if have else 0)
        if added == 0:
            return False
        if have is None and got.raw is not None and merged.n_runs == got.baseline.n_runs:
            atomic_write_text(target, got.raw)
        else:
            write_json(target, merged.to_dict())
        out.files.append((src.rel, added))
        return True

    def merge_in(self, sources: Callable[[], Iterable[Source]]) -> Transfer:
        import git as gitmodule

        for attempt in range(1, self.attempts + 1):
            parent = self.fetch()
            tree = self._tree(parent)
            out = Transfer(attempts=attempt)
            with tempfile.TemporaryDirectory(prefix="llmperf-store-") as name:
                tmp = Path(name)
                files: dict[str, Path] = {}
                for src in sources():  # one file in memory at a time; the merged ones on disk
                    target = tmp / f"file{len(files)}.json"
                    if self._merge_one(src, tree.get(src.rel), target, out):
                        files[src.rel] = target
                if not files:
                    return out
                message = (f"llmperf: +{out.runs} run(s) in {len(out.files)} file(s) from "
                           f"{socket.gethostname()}")
                try:
                    new = self._commit(parent, files, message, tmp)
                except gitmodule.GitCommandError as exc:
                    raise self._git_error("writing the baseline commit", exc) from None
            if self.before_push is not None:
                self.before_push()
            try:
                self.repo.git.push("--quiet", "--no-verify", self.remote,
                                   f"{new}:refs/heads/{self.branch}")
            except gitmodule.GitCommandError as exc:
                if _rejected(str(exc.stderr or "")) and attempt < self.attempts:
                    time.sleep(random.uniform(0.05, 0.2) * attempt)
                    continue
                if _rejected(str(exc.stderr or "")):
                    raise StoreIOError(
                        f"{self.name}: the push was rejected {attempt} times (other jobs "
                        "pushed to the branch meanwhile); push again with llmperf baselines "
                        "push") from None
                raise self._git_error(f"git push {self.remote} {self.branch}", exc) from None
            with contextlib.suppress(gitmodule.GitCommandError):  # the next fetch sets it
                self.repo.git.update_ref(self.tracking, new)
            return out
        raise StoreIOError(f"{self.name}: no attempt left")  # pragma: no cover


README = """# pytest-llmperf baselines

Written by `llmperf baselines push` and `pytest --llmperf --llmperf-save --llmperf-store git:...`:
one file per profile and commit, `<profile>/<commit>.json`. Fetch them into a baseline directory
with `llmperf baselines pull git:BRANCH`; do not edit this branch by hand.
"""


def _ref_race(stderr: str) -> bool:
    low = stderr.lower()
    return "cannot lock ref" in low or ("unable to create" in low and ".lock" in low)


def _rejected(stderr: str) -> bool:
    """Whether git push failed because the branch moved (another job pushed first)."""
    low = stderr.lower()
    return any(s in low for s in ("non-fast-forward", "fetch first", "[rejected]",
                                  "cannot lock ref", "failed to update ref",
                                  "incorrect old value", "stale info")) or _ref_race(stderr)


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.lower().startswith(("cmdline:", "stderr: '"))]
    chosen = (meaningful or lines or [type(exc).__name__])[0]
    chosen = chosen.removeprefix("stderr: ").strip("'\" ")
    for ln in lines:  # git's own reason line when there is one
        if ln.lower().startswith(("fatal:", "error:", "! [")) or "error:" in ln.lower():
            chosen = ln.removeprefix("stderr: ").strip("'\" ")
            break
    return chosen if len(chosen) <= 300 else chosen[:297] + "..."


def open_store(spec: str, repo_path: str | Path | None = None) -> Store:
    """The store a STORE string names (no I/O beyond opening the repository or fsspec).

    StoreUsageError, one line, for a string that names nothing usable.
    """
    text = spec.strip()
    if not text:
        raise StoreUsageError("an empty store: give a directory, file://PATH, an fsspec URL "
                              "(s3://bucket/prefix) or git:BRANCH")
    if text.startswith(GIT_PREFIX):
        return GitBranchStore(text, repo_path if repo_path is not None else Path.cwd())
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme in ("file", "local"):
            if not rest.startswith("/"):
                raise StoreUsageError(f"{text}: a file:// URL needs an absolute path "
                                      "(file:///srv/baselines)")
            return DirectoryStore(rest, name=text)
        return FsspecStore(text)
    return DirectoryStore(text)


# -------------------------------------------------------------------- pytest sessions


def pull_for_gate(spec: str, baseline_dir: Path, repo_root: Path | None) -> list[str]:
    """``--llmperf-store``: pull into the session's baseline directory before the gate looks
    up baselines; the lines for the terminal. StoreError when it cannot."""
    st = open_store(spec, repo_root)
    moved = st.pull(baseline_dir)
    lines = moved.lines("pulled", f"from {st.name} into {baseline_dir}")
    return lines[:1] + [f"WARNING: {e}" for e in moved.errors + moved.warnings]


def push_after_save(spec: str, baseline_dir: Path, repo_root: Path | None) -> list[str]:
    """``--llmperf-store``: push the baseline directory after ``--llmperf-save``; the lines
    for the terminal, an ``ERROR:`` line (the local baselines are kept) when it fails."""
    try:
        st = open_store(spec, repo_root)
        moved = st.push(baseline_dir)
    except (StoreError, BaselineError) as exc:
        return [f"ERROR: baselines not pushed: {exc}; they are kept in "
                f"{baseline_dir}: push them with llmperf baselines push {spec} --dir "
                f"{baseline_dir}"]
    lines = moved.lines("pushed", f"to {st.name}")
    return lines[:1] + [f"WARNING: {e}" for e in moved.errors + moved.warnings]
