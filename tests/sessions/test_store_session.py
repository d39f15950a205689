"""Baseline files, git state (real repositories in temporary directories) and profiles.

Split by tier from tests/test_store.py: these are its sessions tests; the others are in
tests/unit/store/test_store.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import commit, git, make_repo

from pytest_llmperf.store import gitinfo

# --------------------------------------------------------------------------------- git


def test_repo_info_commit_branch_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    info = gitinfo.repo_info(repo)
    assert info.commit == git(repo, "rev-parse", "HEAD")
    assert info.branch == "main" and not info.dirty
    assert info.committed_at.endswith("+00:00")
    (repo / "new.txt").write_text("untracked")  # untracked files do not make it dirty
    assert not gitinfo.repo_info(repo).dirty
    (repo / "code.py").write_text("x = 2\n")
    info = gitinfo.repo_info(repo / ".")
    assert info.dirty and info.dirty_files == ("code.py",)
    git(repo, "checkout", "-q", "--", "code.py")
    # Changes under the baseline directory are excluded.
    (repo / "baselines").mkdir()
    (repo / "baselines" / "b.json").write_text("{}")
    git(repo, "add", "baselines")
    git(repo, "commit", "-q", "-m", "baseline")
    (repo / "baselines" / "b.json").write_text('{"more": 1}')
    assert gitinfo.repo_info(repo).dirty
    assert not gitinfo.repo_info(repo, exclude=repo / "baselines").dirty
    git(repo, "checkout", "-q", "--detach")
    assert gitinfo.repo_info(repo).branch is None


def test_no_repository_and_no_commits(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(gitinfo.GitError, match="not inside a git repository"):
        gitinfo.repo_info(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(gitinfo.GitError, match="no commits yet"):
        gitinfo.repo_info(empty)


def test_nearest_ancestor_with_a_baseline_and_refs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    c1 = git(repo, "rev-parse", "HEAD")
    c2 = commit(repo, "x = 2\n", "second")
    git(repo, "checkout", "-q", "-b", "feature")
    c3 = commit(repo, "x = 3\n", "third")
    git(repo, "checkout", "-q", "main")
    c4 = commit(repo, "x = 4\n", "fourth")
    assert gitinfo.nearest_with(repo, {c1}) == c1
    assert gitinfo.nearest_with(repo, {c1, c2}) == c2
    assert gitinfo.nearest_with(repo, {c4, c2}) == c4  # HEAD itself counts
    assert gitinfo.nearest_with(repo, {c3}) is None  # on another branch: not an ancestor
    assert gitinfo.nearest_with(repo, {c3, c2}, start="feature") == c3
    assert gitinfo.resolve_ref(repo, "feature") == c3
    git(repo, "tag", "v1", c2)
    assert gitinfo.resolve_ref(repo, "v1") == c2
    assert gitinfo.resolve_ref(repo, c1[:8]) == c1
    with pytest.raises(gitinfo.GitError, match="not a commit, branch or tag"):
        gitinfo.resolve_ref(repo, "nope")
