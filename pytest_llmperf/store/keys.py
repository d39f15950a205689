"""The key a test's runs are stored under in a baseline: a key that does not move with pytest.

pytest names a test by its file's path relative to pytest's rootdir (``tests/test_perf.py::
test_x``), and the rootdir moves: pytest takes every existing path on its command line,
option values included, when it picks it (``--llmperf-model /models/x`` with a space makes it
``/``, ``--llmperf-model=/models/x`` does not), and adding an ini file moves it too. A
baseline keyed by pytest's node id is then silently orphaned.

So a baseline key is the test file's path relative to the git repository's root (POSIX
separators) plus the node id's ``::`` rest: ``tests/test_perf.py::test_x`` wherever the
rootdir is (``stable_key``). Outside a git repository, or for a file outside it, the key is
pytest's node id, relative to the rootdir as before. Where the rootdir is the repository's
root, the usual case, the key *is* pytest's node id: baselines saved before keep their keys.

Reading also finds the older spellings of a test's key (``TestKey.find``): pytest's node id
as this session sees it (what earlier versions stored), and the file's path relative to any
other directory (a stored key with the same ``::`` rest whose path ends with the key's path,
``home/me/repo/tests/test_perf.py::test_x``, or is a trailing part of the file's absolute path,
``test_perf.py::test_x`` saved with the rootdir at ``tests/``). ``canonical_keys`` merges the
spellings of one test across several baselines for the readers that list stored tests.

Pure: no I/O beyond path arithmetic (``Path.resolve`` for symlinked roots).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEP = "::"


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """(file path, the rest from the first ``::`` on, ``''`` when there is none)."""
    path, sep, rest = nodeid.partition(SEP)
    return path, sep + rest


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))


def _ends_with(whole: Sequence[str], tail: Sequence[str]) -> bool:
    return 0 < len(tail) <= len(whole) and tuple(whole[len(whole) - len(tail):]) == tuple(tail)


def file_of(nodeid: str, rootdir: str | Path) -> Path:
    """The absolute (normalised, not resolved) path of the node id's file under ``rootdir``
    (a guess where pytest named the file relative to one of its initial paths instead:
    pass the item's own path where it is known)."""
    return Path(os.path.normpath(Path(rootdir) / split_nodeid(nodeid)[0]))


def stable_key(nodeid: str, rootdir: str | Path | None, repo_root: str | Path | None,
               path: str | Path | None = None) -> str:
    """The test's baseline key: its file's path relative to ``repo_root`` (POSIX) plus the
    node id's ``::`` rest; pytest's node id unchanged without a repository or for a file
    outside it. The file is ``path`` (the item's, absolute) or else the node id's path
    under ``rootdir`` (pytest's rootdir)."""
    rest = split_nodeid(nodeid)[1]
    if repo_root is None:
        return nodeid
    if path is not None:
        full = Path(os.path.normpath(path))
    elif rootdir is not None and split_nodeid(nodeid)[0]:
        full = file_of(nodeid, rootdir)
    else:
        return nodeid
    roots = list(dict.fromkeys([Path(repo_root), Path(repo_root).resolve()]))
    for candidate in dict.fromkeys([full, full.parent.resolve() / full.name]):
        for root in roots:
            try:
                rel = candidate.relative_to(root)
            except ValueError:
                continue
            if rel.parts:
                return rel.as_posix() + rest
    return nodeid


@dataclass(frozen=True)
class TestKey:
    """One test's baseline key (``key``), pytest's node id for it this session (``nodeid``)
    and its file's absolute path parts (``path``, empty when unknown), for older spellings."""

    key: str
    nodeid: str
    path: tuple[str, ...] = ()

    __test__ = False  # not a pytest test class

    @classmethod
    def of(cls, nodeid: str, rootdir: str | Path | None, repo_root: str | Path | None,
           path: str | Path | None = None) -> TestKey:
        """The key of pytest's ``nodeid`` in the repository at ``repo_root`` (None: none,
        the key is the node id); the file is ``path`` (the item's) or else the node id's
        path under ``rootdir``."""
        if path is not None:
            full: Path | None = Path(os.path.normpath(path))
        elif rootdir is not None and split_nodeid(nodeid)[0]:
            full = file_of(nodeid, rootdir)
        else:
            full = None
        parts = tuple(p for p in full.parts if p != full.anchor) if full is not None else ()
        return cls(stable_key(nodeid, rootdir, repo_root, path), nodeid, parts)

    @classmethod
    def stored(cls, key: str, nodeid: str | None = None) -> TestKey:
        """A key read from a results document or a baseline (no file path known)."""
        return cls(key, nodeid or key)

    def find(self, tests: Mapping[str, Any]) -> str | None:
        """The key ``tests`` (a baseline's tests) holds this test under, None when none:
        the key itself, else pytest's node id, else an older spelling of the same file
        (see the module docstring): one whose path ends with the key's path (the nearest,
        shortest, first), else the longest that is a trailing part of the file's path."""
        if self.key in tests:
            return self.key
        if self.nodeid in tests:
            return self.nodeid
        path, rest = split_nodeid(self.key)
        mine = _parts(path)
        whole = self.path or mine
        if not mine:
            return None
        longer: list[tuple[int, str]] = []
        shorter: list[tuple[int, str]] = []
        for stored in tests:
            spath, srest = split_nodeid(stored)
            if srest != rest:
                continue
            theirs = _parts(spath)
            if _ends_with(theirs, mine):
                longer.append((len(theirs), stored))
            elif _ends_with(whole, theirs):
                shorter.append((-len(theirs), stored))
        found = min(longer) if longer else min(shorter) if shorter else None
        return found[1] if found else None

    def older(self, stored: str | None) -> bool:
        """Whether ``stored`` (what ``find`` returned) is an older spelling of the key."""
        return stored is not None and stored != self.key


def canonical_keys(key_sets: Iterable[Iterable[str]]) -> dict[str, str]:
    """Stored key -> the one spelling to show it under, over several baselines' test keys
    given newest first: a key becomes the spelling of an older one when that older one is
    an older spelling of it (``TestKey.find``, unambiguous: one key of the newer ones
    matches) and is not itself a key of the same baseline."""
    out: dict[str, str] = {}
    chosen: list[str] = []
    for keys in key_sets:
        these = list(dict.fromkeys(keys))
        for k in these:
            if k in out:
                continue
            matches = [c for c in chosen if c not in these
                       and TestKey.stored(c).find({k: None}) == k]
            if len(matches) == 1:
                out[k] = matches[0]
            else:
                out[k] = k
                chosen.append(k)
    return out
