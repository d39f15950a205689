"""The git state of the repository under test (gitpython): commit, branch, dirty, ancestry."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

try:
    import git
except ImportError as _exc:  # GitPython refuses to import where no git executable is found
    git = None  # type: ignore[assignment]
    _NO_GIT = "git is not usable here: " + (str(_exc).strip().splitlines() or [repr(_exc)])[0]
else:
    _NO_GIT = ""

GIT_HINT = "run inside a git checkout (or git init and commit first)"


class GitError(RuntimeError):
    """No usable git repository, or a reference that does not resolve. The message says why."""


@dataclass(frozen=True)
class GitInfo:
    root: Path
    commit: str
    branch: str | None  # None on a detached HEAD
    dirty: bool
    committed_at: str  # ISO 8601, UTC
    dirty_files: tuple[str, ...] = ()


def open_repo(path: str | Path) -> git.Repo:
    """The git.Repo containing path; GitError naming the path when there is none (or when
    git itself is missing)."""
    if git is None:
        raise GitError(_NO_GIT)
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{path} is not inside a git repository; {GIT_HINT}") from None


def repo_info(path: str | Path, exclude: str | Path | None = None) -> GitInfo:
    """Commit, branch and dirtiness of the repository containing path.

    Dirty means tracked files changed (staged or not); untracked files do not count, nor do
    changes under ``exclude`` (the baseline directory, which saving itself modifies).
    """
    repo = open_repo(path)
    root = Path(repo.working_tree_dir or path).resolve()
    try:
        head = repo.head.commit
    except ValueError:
        raise GitError(f"the git repository at {root} has no commits yet; commit first") from None
    try:
        branch: str | None = repo.active_branch.name
    except TypeError:
        branch = None
    args = ["--porcelain", "--untracked-files=no", "--", "."]
    if exclude is not None:
        ex = Path(exclude).resolve()
        try:
            rel = ex.relative_to(root)
        except ValueError:
            rel = None
        if rel is not None and str(rel) != ".":
            args.append(f":(exclude){rel.as_posix()}")
    try:
        status = repo.git.status(*args)
    except git.GitCommandError as exc:
        raise GitError(f"git status failed in {root}: {exc.stderr.strip()}") from None
    files = tuple(line[3:] for line in status.splitlines() if line.strip())
    committed = datetime.fromtimestamp(head.committed_date, UTC).isoformat(timespec="seconds")
    return GitInfo(root=root, commit=head.hexsha, branch=branch, dirty=bool(files),
                   committed_at=committed, dirty_files=files)


def default_baselines_dir(cwd: str | Path | None = None) -> Path:
    """``baselines/`` at the root of the git repository holding ``cwd`` (default: the working
    directory), or beside ``cwd`` outside a repository: where the ``llmperf`` commands look
    when no directory is given."""
    here = Path(cwd) if cwd is not None else Path.cwd()
    try:
        return repo_info(here).root / "baselines"
    except GitError:
        return here / "baselines"


def is_shallow(path: str | Path) -> bool:
    """Whether the repository containing path is a shallow clone (history cut off)."""
    repo = open_repo(path)
    try:
        return str(repo.git.rev_parse("--is-shallow-repository")).strip() == "true"
    except git.GitCommandError:
        return False


def resolve_ref(path: str | Path, ref: str) -> str:
    """The full commit id a commit, branch or tag names; GitError when it names nothing, or
    names a commit whose object this clone lacks (a shallow clone knows the id of its
    boundary's parents but not the commits). A shallow clone's message says how to fetch."""
    repo = open_repo(path)
    try:
        sha = str(repo.commit(ref).hexsha)
        repo.git.rev_parse("--verify", "--quiet", f"{sha}^{{commit}}")
        return sha
    except Exception:  # gitpython raises BadName, BadObject, ValueError, GitCommandError ...
        hint = ""
        if is_shallow(path):
            hint = ("; this is a shallow clone, which may lack it: fetch the history "
                    "(git fetch --unshallow, or git fetch --deepen N)")
        raise GitError(
            f"{ref!r} is not a commit, branch or tag of the repository at "
            f"{repo.working_tree_dir}{hint}"
        ) from None


def ancestors(path: str | Path, start: str = "HEAD", limit: int = 5000) -> list[str]:
    """start and its ancestors, newest first (git log order), at most ``limit``."""
    repo = open_repo(path)
    try:
        return [c.hexsha for c in repo.iter_commits(start, max_count=limit)]
    except Exception as exc:  # gitpython raises several kinds for a bad start
        raise GitError(f"cannot list the history of {start!r}: {exc}") from None


def nearest_with(path: str | Path, have: Container[str], start: str = "HEAD",
                 limit: int = 5000) -> str | None:
    """The nearest commit, start included, among start's ancestors that is in ``have``."""
    for sha in ancestors(path, start, limit):
        if sha in have:
            return sha
    return None



def origin(path: str | Path, env: Mapping[str, str]) -> tuple[str | None, str | None, bool | None]:
    """Commit, branch and dirtiness for a results file's provenance.

    ``LLMPERF_COMMIT`` and ``LLMPERF_BRANCH`` in ``env`` win (an image without ``.git`` knows
    its commit only from them); the dirty flag is git's when git's commit is the one recorded,
    else unknown (None). Without git and without the variables: (None, None, None).
    """
    try:
        info: GitInfo | None = repo_info(path)
    except GitError:
        info = None
    commit = env.get("LLMPERF_COMMIT", "").strip() or (info.commit if info else None)
    branch = env.get("LLMPERF_BRANCH", "").strip() or (info.branch if info else None)
    dirty = info.dirty if info is not None and info.commit == commit else None
    return commit, branch, dirty
