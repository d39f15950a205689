"""``llmperf baselines push STORE`` and ``llmperf baselines pull STORE``: merge the local
baseline directory into a store, or the store into the directory (``store/backends.py``);
``llmperf baselines compact STORE`` folds an object store's pushed objects together.

Exit 0 when the transfer is done (also when there was nothing to move, and when an empty
file or object, the leftover of an interrupted write that holds no run, was skipped: named in a
warning); 1 when the store cannot be read or written, or a baseline file could not be read
(named, left as it was, the other files moved); 2 for a store string that names nothing usable,
a missing directory, or a ``memory://`` store (it lives only inside one process: what a
command wrote there would be gone when it exits).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..store import gitinfo
from ..store.backends import (
    FsspecStore,
    Store,
    StoreIOError,
    StoreUsageError,
    Transfer,
    open_store,
)
from ..store.baselines import BaselineError

STORE_HELP = ("a directory, file://PATH, an fsspec URL (s3://bucket/prefix, gs://..., "
              "memory://...) or git:[REMOTE/]BRANCH (a dedicated branch of this repository's "
              "remote, default origin)")


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else gitinfo.default_baselines_dir()


def _open(spec: str) -> Store:
    """The store a command works on; StoreUsageError for one that dies with the command."""
    store = open_store(spec, Path.cwd())
    if isinstance(store, FsspecStore) and store.process_local:
        raise StoreUsageError(f"{spec}: memory:// lives only inside one process (what this "
                              "command wrote would be gone when it exits); use it in a "
                              "session or in tests, and a directory, an object store or "
                              "git:BRANCH here")
    return store


def _warn(moved: Transfer) -> None:
    for problem in moved.errors + moved.warnings:
        print(f"llmperf: warning: {problem}", file=sys.stderr)


def _finish(moved: Transfer, verb: str, where: str) -> int:
    for line in moved.lines(verb, where):
        print(line)
    _warn(moved)
    return 1 if moved.errors else 0


def _run(args: argparse.Namespace, push: bool) -> int:
    local = _dir(args)
    try:
        if push and not local.is_dir():
            raise StoreUsageError(f"no baseline directory at {local}: save baselines with "
                                  "pytest --llmperf --llmperf-save, or give --dir")
        if not push and local.exists() and not local.is_dir():
            raise StoreUsageError(f"{local} is not a directory; give --dir")
        store = _open(args.store)
        if push:
            return _finish(store.push(local), "pushed", f"from {local} to {store.name}")
        return _finish(store.pull(local), "pulled", f"from {store.name} into {local}")
    except StoreUsageError as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 2
    except (StoreIOError, BaselineError) as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 1


def cmd_push(args: argparse.Namespace) -> int:
    return _run(args, push=True)


def cmd_pull(args: argparse.Namespace) -> int:
    return _run(args, push=False)


def cmd_compact(args: argparse.Namespace) -> int:
    """Fold each file's pushed objects into one (object stores; the others hold one file per
    commit already)."""
    try:
        store = _open(args.store)
        if not isinstance(store, FsspecStore):
            print(f"nothing to compact in {store.name}: it holds one file per commit")
            return 0
        done = store.compact()
    except StoreUsageError as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 2
    except StoreIOError as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 1
    for line in compact_lines(done, store.name):
        print(line)
    _warn(done)
    return 1 if done.errors else 0


def compact_lines(done: Transfer, name: str) -> list[str]:
    """What ``compact`` did, for stdout; "every file is one object" only when it is true."""
    out: list[str] = []
    if done.files:
        out.append(f"compacted {len(done.files)} file(s) in {name}")
        out += [f"  {rel}: {n} objects -> 1" for rel, n in done.files]
    if done.removed:
        out.append(f"removed {len(done.removed)} empty object(s) left by interrupted writes "
                   "(they held no run)")
        out += [f"  {obj}" for obj in done.removed]
    if out:
        return out
    if done.left:
        return [f"nothing compacted in {name}: {len(done.left)} file(s) left as they are "
                "(see the warnings)"]
    if done.errors or done.warnings:
        return [f"nothing compacted in {name} (see the warnings)"]
    return [f"nothing to compact in {name}: every file is one object"]


def add_parsers(bsub: Any) -> None:
    """``push`` and ``pull`` under ``llmperf baselines``."""
    for name, func, text in (
            ("push", cmd_push, "merge the local baseline directory into a store (runs of the "
                               "same commit file are merged, none lost)"),
            ("pull", cmd_pull, "merge a store into the local baseline directory"),
            ("compact", cmd_compact, "fold the objects that pushes added to an object store "
                                     "into one object per file (no run lost)")):
        p = bsub.add_parser(name, help=text, description=text + ". STORE: " + STORE_HELP + ".")
        p.add_argument("store", metavar="STORE", help=STORE_HELP)
        if name != "compact":
            p.add_argument("--dir", help="baseline directory (default: baselines/ at the "
                           "repository root)")
        p.set_defaults(func=func)
