"""The session's results document (``results.py``) as one plain, sorted, versioned JSON
file, written atomically, and the provenance it carries."""

from __future__ import annotations

import os
import platform
import socket
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text, dumps
from ..shard import ShardError, parse_shard
from ..store import gitinfo
from ..store.profile import make_profile, profile_id
from .provenance import RUN_ID_ENV, ci_run_id, make_provenance

if TYPE_CHECKING:
    from ..results import TestRecord

# The run id generated for a session without LLMPERF_RUN_ID: one per session, however many
# documents (JSON, HTML) it writes.
_RUN_IDS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _started_at() -> str:
    """When this process (the pytest session, or the xdist controller) started, UTC ISO."""
    try:
        import psutil

        started = datetime.fromtimestamp(psutil.Process().create_time(), UTC)
    except Exception:  # psutil missing or the process table unreadable
        started = datetime.now(UTC)
    return started.isoformat(timespec="seconds")


def _profiles(tests: Sequence[TestRecord]) -> list[str]:
    """The profile id of every run's engine, as the gate computes it."""
    return sorted({profile_id(make_profile(run.engine)) for t in tests for run in t.runs})


def session_provenance(tests: Sequence[TestRecord], *, root: str | Path,
                       shard: str | None = None, session_key: object,
                       env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A session's provenance: git at ``root`` (or LLMPERF_COMMIT / LLMPERF_BRANCH), the
    profiles of ``tests``' runs, the ``--llmperf-shard`` I/N, the run id (LLMPERF_RUN_ID, else
    the CI system's run: ``provenance.ci_run_id``, else one made once per ``session_key``, the
    session object), host and start time."""
    env = os.environ if env is None else env
    commit, branch, dirty = gitinfo.origin(root, env)
    parsed: tuple[int, int] | None = None
    if shard:
        try:
            parsed = parse_shard(shard)
        except ShardError:  # refused at collection already
            parsed = None
    run_id = (env.get(RUN_ID_ENV, "").strip() or ci_run_id(env)
              or _RUN_IDS.setdefault(session_key, uuid.uuid4().hex[:16]))
    return make_provenance(
        commit=commit, branch=branch, dirty=dirty, profiles=_profiles(tests), shard=parsed,
        run_id=run_id,
        host=socket.gethostname() or platform.node() or "unknown", started_at=_started_at(),
    )


def write_json(path: str | Path, doc: Mapping[str, Any]) -> None:
    """Write a results document (``results.results_document``) atomically."""
    atomic_write_text(path, dumps(doc))
