"""The session's results as one plain, sorted, versioned JSON file (written atomically)."""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..session import LLMPerfSession

SCHEMA = "pytest-llmperf/results"
# 2: the top-level "provenance" object (report/provenance.py); version 1 files are still read.
SCHEMA_VERSION = 2

# The run id generated for a session without LLMPERF_RUN_ID: one per session, however many
# documents (JSON, HTML) it writes.
_RUN_IDS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target.

    The file gets the permissions of any file the user creates (mkstemp's are 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=1, allow_nan=False) + "\n"


def _started_at() -> str:
    """When this process (the pytest session, or the xdist controller) started, UTC ISO."""
    try:
        import psutil

        started = datetime.fromtimestamp(psutil.Process().create_time(), UTC)
    except Exception:  # psutil missing or the process table unreadable
        started = datetime.now(UTC)
    return started.isoformat(timespec="seconds")


def _profiles(state: LLMPerfSession) -> list[str]:
    """The profile id of every run's engine, as the gate computes it."""
    from ..verdict.profile import make_profile, profile_id

    return sorted({profile_id(make_profile(run.engine)) for t in state.tests for run in t.runs})


def session_provenance(state: LLMPerfSession,
                       env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The session's provenance: git (or LLMPERF_COMMIT / LLMPERF_BRANCH), profiles, shard,
    run id (LLMPERF_RUN_ID, else a new one), host and start time."""
    from ..shard import ShardError, parse_shard
    from .provenance import RUN_ID_ENV, make_provenance

    env = os.environ if env is None else env
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    try:
        from ..verdict import gitinfo
    except ImportError:  # gitpython without a git executable
        commit = env.get("LLMPERF_COMMIT", "").strip() or None
        branch = env.get("LLMPERF_BRANCH", "").strip() or None
    else:
        git = state.gate.git if state.gate is not None else None
        commit, branch, dirty = gitinfo.origin(git.root if git else state.config.rootpath, env)
    shard: tuple[int, int] | None = None
    if state.settings.shard:
        try:
            shard = parse_shard(state.settings.shard)
        except ShardError:  # refused at collection already
            shard = None
    run_id = env.get(RUN_ID_ENV, "").strip() or _RUN_IDS.setdefault(state, uuid.uuid4().hex[:16])
    return make_provenance(
        commit=commit, branch=branch, dirty=dirty, profiles=_profiles(state), shard=shard,
        run_id=run_id,
        host=socket.gethostname() or platform.node() or "unknown", started_at=_started_at(),
    )


def results_document(state: LLMPerfSession) -> dict[str, Any]:
    return {
        "provenance": session_provenance(state),
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "tests": [t.to_dict() for t in state.tests],
    }


def write_json(path: str | Path, state: LLMPerfSession) -> None:
    atomic_write_text(path, dumps(results_document(state)))
