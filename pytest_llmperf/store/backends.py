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
  when REMOTE is a remote of the repository): a dedicated branch holding the local layout.
  A push fetches the branch, merges each file with the branch's copy, writes blobs, a tree
  (through a temporary index file) and a commit with git's plumbing, and pushes it without
  force; a push rejected because another job pushed first starts again from the fetch, at
  most ``GIT_ATTEMPTS`` times. The working tree, the index and the current branch are never
  touched; the branch is created (without history) when the remote lacks it.

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
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text, dumps
from . import gitinfo
from .baselines import (
    DIRTY_SUFFIX,
    Baseline,
    BaselineError,
    BaselineStore,
    load,
    now_iso,
    parse,
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
    """``b`` with its runs deduplicated and sorted (the form a merge writes)."""
    return merge_baselines(b, b)


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
    """What a push or pull moved: files changed (store-relative path, runs added), and one
    message per file that could not be read (left as it was)."""

    files: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attempts: int = 1  # git: pushes tried (rejected ones included)

    @property
    def runs(self) -> int:
        return sum(n for _, n in self.files)

    def lines(self, verb: str, where: str) -> list[str]:
        if not self.files:
            return [f"{verb} nothing {where}: no new run"]
        out = [f"{verb} {self.runs} run(s) in {len(self.files)} file(s) {where}"]
        out += [f"  {path}: +{n} run(s)" for path, n in self.files]
        return out


def merge_into_dir(root: str | Path, baselines: Sequence[Baseline]) -> Transfer:
    """Merge baselines into a baseline directory, under its save lock (the one
    ``BaselineStore.save`` holds), writing atomically only the files that gain runs. A local
    file that cannot be read is left untouched and named in ``errors``."""
    local = BaselineStore(root)
    out = Transfer()
    if not baselines:
        return out
    with local.locked():
        for b in sorted(baselines, key=relpath):
            path = local.path_for(b.profile_id, b.commit, b.dirty)
            if path.exists():
                try:
                    current = load(path)
                    merged = merge_baselines(current, b)
                except BaselineError as exc:
                    out.errors.append(str(exc))
                    continue
                added = merged.n_runs - current.n_runs
                if added == 0:
                    continue
            else:
                merged = _normal(replace(b, path=path))
                added = merged.n_runs
            merged.path = path
            try:
                atomic_write_text(path, dumps(merged.to_dict()))
            except OSError as exc:
                raise StoreIOError(f"cannot write {path}: {exc.strerror or exc}") from None
            out.files.append((relpath(b), added))
    return out


def _group(found: Iterable[Baseline]) -> tuple[list[Baseline], list[str]]:
    """One baseline per store file, copies of the same file merged; a file whose copies do
    not belong together is left out and named."""
    by_file: dict[str, Baseline] = {}
    errors: dict[str, str] = {}
    for b in found:
        key = relpath(b)
        if key in errors:
            continue
        try:
            by_file[key] = merge_baselines(by_file[key], b) if key in by_file else b
        except BaselineError as exc:
            errors[key] = str(exc)
            del by_file[key]
    return [by_file[k] for k in sorted(by_file)], [errors[k] for k in sorted(errors)]


def _parse_doc(name: str, data: bytes, profile_dir: str, stem: str) -> Baseline:
    """A baseline from a store object's bytes, checked against where it lies (``name``)."""
    where = Path(name)
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BaselineError(f"{name}: corrupt baseline, not valid JSON ({exc})") from None
    try:
        b = parse(where, doc)
    except BaselineError as exc:  # parse names the file as a path: name the object
        raise BaselineError(str(exc).replace(str(where), name)) from None
    expected = b.commit + (DIRTY_SUFFIX if b.dirty else "")
    if b.profile_id != profile_dir or stem != expected:
        raise BaselineError(f"{name}: its contents say profile {b.profile_id!r} and commit "
                            f"{b.commit[:12]!r}, which does not match where it lies")
    return b


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_FILE = re.compile(r"^(?P<stem>[0-9a-f]{7,64}(?:\.dirty)?)\.json$")


# --------------------------------------------------------------------------------- stores


class Store(ABC):
    """A place baselines are kept besides the local directory."""

    name: str  # the store string, for messages

    @abstractmethod
    def read_all(self) -> tuple[list[Baseline], list[str]]:
        """Every baseline file of the store (copies merged), and one message per object that
        cannot be read."""

    @abstractmethod
    def merge_in(self, baselines: Sequence[Baseline]) -> Transfer:
        """Add the runs of ``baselines`` the store lacks; never drop one it has."""

    def pull(self, local_dir: str | Path) -> Transfer:
        """Merge the store into the local baseline directory."""
        found, errors = self.read_all()
        moved = merge_into_dir(local_dir, found)
        moved.errors = errors + moved.errors
        return moved

    def push(self, local_dir: str | Path) -> Transfer:
        """Merge the local baseline directory into the store (unreadable local files are
        skipped and named)."""
        found, errors = BaselineStore(local_dir).load_all(dirty=None)
        moved = self.merge_in(found) if found else Transfer()
        moved.errors = errors + moved.errors
        return moved


class DirectoryStore(Store):
    """A baseline directory (a shared volume, a mounted bucket): the local layout, written
    under its save lock."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.root = Path(path).expanduser()
        self.name = name or str(self.root)

    def read_all(self) -> tuple[list[Baseline], list[str]]:
        if self.root.exists() and not self.root.is_dir():
            raise StoreUsageError(f"{self.name} is a file, not a baseline directory")
        return BaselineStore(self.root).load_all(dirty=None)

    def merge_in(self, baselines: Sequence[Baseline]) -> Transfer:
        try:
            return merge_into_dir(self.root, baselines)
        except BaselineError as exc:  # the lock: not had in time, or not writable
            raise StoreIOError(str(exc)) from None


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

    def _rel(self, path: str) -> str:
        path = path.rstrip("/")
        root = self.root.lstrip("/")
        rel = path.lstrip("/")
        return rel[len(root):].lstrip("/") if rel.startswith(root) else rel

    def _objects(self) -> tuple[list[tuple[str, Baseline]], list[str], set[str]]:
        """Every object of the store that holds a baseline, as (full path, baseline), one
        message per object that cannot be read, and the files (``<profile>/<stem>.json``)
        those belong to."""
        try:
            names = sorted(self.fs.find(self.root)) if self.fs.exists(self.root) else []
        except Exception as exc:
            raise StoreIOError(f"{self.name}: cannot list ({_one_line(exc)})") from None
        found: list[tuple[str, Baseline]] = []
        errors: list[str] = []
        bad: set[str] = set()
        for full in names:
            parts = self._rel(full).split("/")
            if any(p.startswith(".") for p in parts) or not parts[-1].endswith(".json"):
                continue
            if len(parts) == 2 and _FILE.match(parts[1]):  # plain <profile>/<commit>.json
                pdir, stem = parts[0], parts[1][: -len(".json")]
            elif len(parts) == 3 and _FILE.match(parts[1] + ".json"):  # a pushed object
                pdir, stem = parts[0], parts[1]
            else:
                continue
            name = f"{self.name.rstrip('/')}/{'/'.join(parts)}"
            try:
                data = self.fs.cat_file(full)
            except Exception as exc:
                raise StoreIOError(f"{name}: cannot read ({_one_line(exc)})") from None
            try:
                found.append((full, _parse_doc(name, data, pdir, stem)))
            except BaselineError as exc:
                errors.append(str(exc))
                bad.add(f"{pdir}/{stem}.json")
        return found, errors, bad

    def read_all(self) -> tuple[list[Baseline], list[str]]:
        found, errors, _ = self._objects()
        grouped, conflicts = _group(b for _, b in found)
        return grouped, errors + conflicts

    def _put(self, b: Baseline, rel: str) -> None:
        """One new object of ``rel``'s file, never over an existing one."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = (f"{self.root}/{b.profile_id}/{rel[len(b.profile_id) + 1: -len('.json')]}"
                  f"/{stamp}-{uuid.uuid4().hex[:12]}.json")
        b.saved_at = now_iso()
        try:
            self.fs.pipe_file(target, dumps(b.to_dict()).encode("utf-8"))
        except Exception as exc:
            raise StoreIOError(f"{self.name}: cannot write {rel} ({_one_line(exc)}); "
                               "nothing was deleted") from None

    def compact(self) -> Transfer:
        """Each file held in several objects rewritten as one; ``files``: (file, objects
        folded). A file with an unreadable or conflicting object is left as it is."""
        found, errors, bad = self._objects()
        by_file: dict[str, list[tuple[str, Baseline]]] = {}
        for full, b in found:
            by_file.setdefault(relpath(b), []).append((full, b))
        out = Transfer(errors=list(errors))
        for rel in sorted(by_file):
            pieces = by_file[rel]
            if len(pieces) < 2:
                continue
            if rel in bad:
                out.errors.append(f"{self.name}/{rel}: not compacted (an object of it is "
                                  "unreadable)")
                continue
            try:
                merged = pieces[0][1]
                for _, b in pieces[1:]:
                    merged = merge_baselines(merged, b)
            except BaselineError as exc:
                out.errors.append(f"{exc}; not compacted")
                continue
            self._put(merged, rel)  # first the whole, then the pieces go
            for full, _ in pieces:
                try:
                    self.fs.rm_file(full)
                except FileNotFoundError:
                    pass  # compacted by someone else meanwhile: their whole holds it
                except Exception as exc:
                    raise StoreIOError(f"{self.name}: cannot delete {self._rel(full)} "
                                       f"({_one_line(exc)}); its runs are also in the new "
                                       "compacted object, so nothing is lost") from None
            out.files.append((rel, len(pieces)))
        return out

    def merge_in(self, baselines: Sequence[Baseline]) -> Transfer:
        have, _ = self.read_all()
        by_file = {relpath(b): b for b in have}
        out = Transfer()
        for b in sorted(baselines, key=relpath):
            rel = relpath(b)
            try:
                if rel in by_file:
                    merge_baselines(by_file[rel], b)  # refuse a foreign profile early
                piece = _new_runs(by_file.get(rel), b)
            except BaselineError as exc:
                out.errors.append(str(exc))
                continue
            if piece is None:
                continue
            self._put(piece, rel)
            out.files.append((rel, piece.n_runs))
        return out


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
        if self.remote not in remotes:
            raise StoreUsageError(
                f"{spec}: the repository at {self.repo.working_tree_dir or self.repo.git_dir} "
                f"has no remote {self.remote!r} (remotes: {', '.join(remotes) or 'none'}); "
                "add it (git remote add) or write git:REMOTE/BRANCH")
        import git as gitmodule

        try:
            self.repo.git.check_ref_format(f"refs/heads/{self.branch}")
        except gitmodule.GitCommandError:
            raise StoreUsageError(f"{spec}: {self.branch!r} is not a valid branch name"
                                  ) from None
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

    def _files(self, commit: str | None) -> dict[str, bytes]:
        """``<profile>/<file>.json`` -> contents, at ``commit``."""
        if commit is None:
            return {}
        import git as gitmodule

        out: dict[str, bytes] = {}
        for item in self.repo.commit(commit).tree.traverse():
            if not isinstance(item, gitmodule.Blob):
                continue
            parts = str(item.path).split("/")
            if len(parts) == 2 and not parts[0].startswith(".") and _FILE.match(parts[1]):
                out[str(item.path)] = item.data_stream.read()
        return out

    def _parse_all(self, files: Mapping[str, bytes]
                   ) -> tuple[dict[str, Baseline], dict[str, str]]:
        """The branch's baselines by path, and the error of each file that cannot be read."""
        found: dict[str, Baseline] = {}
        errors: dict[str, str] = {}
        for rel, data in sorted(files.items()):
            pdir, fname = rel.split("/")
            try:
                found[rel] = _normal(_parse_doc(f"{self.name}:{rel}", data, pdir,
                                                fname[: -len(".json")]))
            except BaselineError as exc:
                errors[rel] = str(exc)
        return found, errors

    def read_all(self) -> tuple[list[Baseline], list[str]]:
        found, errors = self._parse_all(self._files(self.fetch()))
        return [found[k] for k in sorted(found)], [errors[k] for k in sorted(errors)]

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

    def _commit(self, parent: str | None, blobs: Mapping[str, bytes], message: str) -> str:
        """A commit of ``parent``'s tree with ``blobs`` written over it (a temporary index:
        the user's index and working tree are not touched)."""
        with tempfile.TemporaryDirectory(prefix="llmperf-store-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **self._identity_env()}
            if parent is None:
                self.repo.git.read_tree("--empty", env=env)
                blobs = {**blobs, "README.md": README.encode("utf-8")}
            else:
                self.repo.git.read_tree(parent, env=env)
            names = sorted(blobs)
            files = []
            for i, rel in enumerate(names):
                f = Path(tmp) / f"blob{i}"
                f.write_bytes(blobs[rel])
                files.append(str(f))
            shas = str(self.repo.git.hash_object("-w", "--no-filters", "--", *files)).split()
            info = Path(tmp) / "index-info"
            info.write_text("".join(f"100644 {sha}\t{rel}\n" for sha, rel in zip(shas, names,
                                                                                 strict=True)),
                            encoding="utf-8")
            with info.open("rb") as fh:
                self.repo.git.execute(["git", "update-index", "--index-info"], istream=fh,
                                      env=env)
            tree = str(self.repo.git.write_tree(env=env))
            args = [tree, "-m", message] + (["-p", parent] if parent else [])
            return str(self.repo.git.commit_tree(*args, env=env))

    def merge_in(self, baselines: Sequence[Baseline]) -> Transfer:
        import git as gitmodule

        for attempt in range(1, self.attempts + 1):
            parent = self.fetch()
            have, broken = self._parse_all(self._files(parent))
            out = Transfer(errors=[broken[k] for k in sorted(broken)], attempts=attempt)
            blobs: dict[str, bytes] = {}
            for b in sorted(baselines, key=relpath):
                rel = relpath(b)
                if rel in broken:
                    out.errors.append(f"{self.name}:{rel} is unreadable on the branch; its "
                                      "runs were not pushed (repair or remove it there)")
                    continue
                try:
                    merged = merge_baselines(have[rel], b) if rel in have else _normal(b)
                except BaselineError as exc:
                    out.errors.append(str(exc))
                    continue
                added = merged.n_runs - (have[rel].n_runs if rel in have else 0)
                if added == 0:
                    continue
                blobs[rel] = dumps(merged.to_dict()).encode("utf-8")
                out.files.append((rel, added))
            if not blobs:
                return out
            message = (f"llmperf: +{out.runs} run(s) in {len(out.files)} file(s) from "
                       f"{socket.gethostname()}")
            try:
                new = self._commit(parent, blobs, message)
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
    return lines[:1] + [f"WARNING: {e}" for e in moved.errors]


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
    return lines[:1] + [f"WARNING: {e}" for e in moved.errors]
