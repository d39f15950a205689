"""``llmperf baselines push STORE`` and ``llmperf baselines pull STORE``: merge the local
baseline directory into a store, or the store into the directory (``store/backends.py``);
``llmperf baselines compact STORE`` folds an object store's pushed objects together.

Exit 0 when the transfer is done (also when there was nothing to move); 1 when the store
cannot be read or written, or a baseline file could not be read (named, left as it was, the
other files moved); 2 for a store string that names nothing usable or a missing directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..store import gitinfo
from ..store.backends import (
    FsspecStore,
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


def _finish(moved: Transfer, verb: str, where: str) -> int:
    for line in moved.lines(verb, where):
        print(line)
    for error in moved.errors:
        print(f"llmperf: warning: {error}", file=sys.stderr)
    return 1 if moved.errors else 0


def _run(args: argparse.Namespace, push: bool) -> int:
    local = _dir(args)
    try:
        if push and not local.is_dir():
            raise StoreUsageError(f"no baseline directory at {local}: save baselines with "
                                  "pytest --llmperf --llmperf-save, or give --dir")
        if not push and local.exists() and not local.is_dir():
            raise StoreUsageError(f"{local} is not a directory; give --dir")
        store = open_store(args.store, Path.cwd())
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
        store = open_store(args.store, Path.cwd())
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
    if not done.files:
        print(f"nothing to compact in {store.name}: every file is one object")
    else:
        print(f"compacted {len(done.files)} file(s) in {store.name}")
        for rel, n in done.files:
            print(f"  {rel}: {n} objects -> 1")
    for error in done.errors:
        print(f"llmperf: warning: {error}", file=sys.stderr)
    return 1 if done.errors else 0


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
