"""Where a results file comes from, and whether several of them belong to one run.

Every ``--llmperf-json`` file (schema version 2 on) carries a top-level ``provenance`` object::

    {"commit": sha | null, "branch": str | null, "dirty": bool | null,
     "profiles": [profile id, ...], "shard": "INDEX/COUNT" | null,
     "run_id": str, "host": str, "started_at": ISO 8601 UTC}

``llmperf report --json F1 F2 ...`` merges the shards of ONE run: ``check_merge`` refuses files
of different commits, profiles or runs, the same shard twice and shard counts that disagree,
and names the missing shards; ``check_disjoint`` refuses two files holding the same test (each
test of a run is in one shard: merged, it would count twice). Pure logic: no pytest, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import limits
from ..shard import ShardError, parse_shard

RUN_ID_ENV = "LLMPERF_RUN_ID"
COMMIT_ENV = "LLMPERF_COMMIT"
BRANCH_ENV = "LLMPERF_BRANCH"
MISSING_SHOWN = 10  # missing shards named in the refusal or the warning at most
FIELDS = ("branch", "commit", "dirty", "host", "profiles", "run_id", "shard", "started_at")


# What a CI system calls the run every job of one workflow or pipeline shares (matrix shards
# included), in the order looked at: (prefix, variable, the variable of the attempt or None).
CI_RUN_IDS: tuple[tuple[str, str, str | None], ...] = (
    ("gh", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT"),  # GitHub Actions: a re-run is a new attempt
    ("gl", "CI_PIPELINE_ID", None),  # GitLab CI
    ("bk", "BUILDKITE_BUILD_ID", "BUILDKITE_RETRY_COUNT"),  # Buildkite
    ("circle", "CIRCLE_WORKFLOW_ID", None),  # CircleCI
)


def ci_run_id(env: Mapping[str, str]) -> str | None:
    """The run id a CI system gives every job of one run (``gh-<run>-<attempt>`` on GitHub
    Actions, ``gl-<pipeline>`` on GitLab, ...), so that the shards of a matrix merge without
    ``LLMPERF_RUN_ID``; None outside CI. Only letters, digits and ``-`` are kept."""
    for prefix, name, attempt in CI_RUN_IDS:
        value = env.get(name, "").strip()
        if not value:
            continue
        parts = [prefix, value]
        if attempt and env.get(attempt, "").strip():
            parts.append(env[attempt].strip())
        cleaned = "-".join("".join(c for c in p if c.isascii() and (c.isalnum() or c == "-"))
                           for p in parts)
        if cleaned.strip("-") and cleaned != prefix + "-":
            return cleaned[:100]
    return None


class ProvenanceError(ValueError):
    """Results files that must not be merged; the one-line message names the files."""


class BadProvenance(ValueError):
    """A provenance object whose values do not fit the schema; the message says which."""


def make_provenance(*, commit: str | None, branch: str | None, dirty: bool | None,
                    profiles: Sequence[str], shard: tuple[int, int] | None, run_id: str,
                    host: str, started_at: str) -> dict[str, Any]:
    return {
        "commit": commit, "branch": branch, "dirty": dirty,
        "profiles": sorted(set(profiles)),
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "run_id": run_id, "host": host, "started_at": started_at,
    }


def check_provenance(value: Any) -> None:
    """BadProvenance naming the field (``provenance.shard='x'``) when a value is wrong."""
    if not isinstance(value, Mapping):
        raise BadProvenance(f"provenance must be an object, not {type(value).__name__}")
    missing = [k for k in FIELDS if k not in value]
    if missing:
        raise BadProvenance(f"provenance lacks {', '.join(missing)}")

    def bad(key: str, what: str) -> BadProvenance:
        shown = repr(value[key])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return BadProvenance(f"provenance.{key}={shown} {what}")

    for key in ("commit", "branch"):
        if value[key] is not None and not (isinstance(value[key], str) and value[key]):
            raise bad(key, "must be a non-empty string or null")
    for key in ("run_id", "host", "started_at"):
        if not isinstance(value[key], str) or not value[key]:
            raise bad(key, "must be a non-empty string")
    if value["dirty"] is not None and not isinstance(value["dirty"], bool):
        raise bad("dirty", "must be true, false or null")
    profiles = value["profiles"]
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise bad("profiles", "must be a list of profile ids")
    if value["shard"] is not None:
        if not isinstance(value["shard"], str):
            raise bad("shard", "must be 'INDEX/COUNT' or null")
        try:
            parse_shard(value["shard"])
        except ShardError:
            raise bad("shard", "must be 'INDEX/COUNT' with 0 <= INDEX < COUNT, COUNT "
                               f"{limits.SHARDS.words()}") from None


@dataclass
class MergeCheck:
    """What the merge may go on with: warnings to print, and the merged provenance."""

    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None


def _slot(pid: str) -> str:
    """The engine kind and model of a profile id (``<kind>-<model>-<hash>``), hash dropped."""
    return pid.rsplit("-", 1)[0]


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def _groups(items: Sequence[tuple[str, str]]) -> str:
    """``A, B (x); C (y)``: files grouped by the value they disagree on."""
    by: dict[str, list[str]] = {}
    for name, value in items:
        by.setdefault(value, []).append(name)
    return "; ".join(f"{_names(files)} ({value})" for value, files in by.items())


def check_merge(files: Sequence[tuple[str, Mapping[str, Any] | None]],
                allow_partial: bool = False) -> MergeCheck:
    """The files (name, provenance or None for an older file) as ONE run, or ProvenanceError.

    Refused: different commits, different run ids, different profiles (the same engine and
    model measured with another configuration or on other hardware: a shard may hold only
    some of a multi-engine suite's profiles, so only profiles that share engine and model are
    compared), the same shard twice, shard counts that disagree (or shards mixed with a
    whole-suite file), and, unless ``allow_partial``, missing shards.
    """
    out = MergeCheck()
    old = [name for name, prov in files if prov is None]
    if old and len(files) > 1:
        out.warnings.append(
            f"{_names(old)}: no provenance (written by an older pytest-llmperf): merged "
            "without checking commits, profiles and shards")
    have = [(name, prov) for name, prov in files if prov is not None]
    if not have:
        return out
    if len(have) > 1:
        _check_same(have)
    shards = [(name, prov["shard"]) for name, prov in have]
    sharded = [(name, parse_shard(s)) for name, s in shards if s is not None]
    missing: list[str] = []
    if sharded:
        whole = [name for name, s in shards if s is None]
        counts = {count for _, (_, count) in sharded}
        if whole or len(counts) > 1:
            items = [(name, f"of {parse_shard(s)[1]}" if s else "not a shard")
                     for name, s in shards]
            raise ProvenanceError(f"shard counts disagree: {_groups(items)}")
        count = counts.pop()
        seen: dict[int, list[str]] = {}
        for name, (index, _) in sharded:
            seen.setdefault(index, []).append(name)
        for index, names in sorted(seen.items()):
            if len(names) > 1:
                raise ProvenanceError(f"shard {index}/{count} given twice: {_names(names)}")
        # count <= limits.SHARDS (parse_shard): the list is bounded; the line names a few.
        missing = [f"{i}/{count}" for i in range(count) if i not in seen]
        if missing:
            which = ", ".join(missing[:MISSING_SHOWN])
            if len(missing) > MISSING_SHOWN:
                which += f" and {len(missing) - MISSING_SHOWN} more"
            line = (f"missing shard(s) {which}: the files given ({_names([n for n, _ in have])})"
                    f" hold {len(seen)} of {count} shards")
            if not allow_partial:
                raise ProvenanceError(f"{line}; give every shard's file, or --allow-partial "
                                      "to merge what is there")
            out.warnings.append(f"partial merge: {line}")
    first = have[0][1]
    out.provenance = {
        "commit": first["commit"], "branch": first["branch"], "run_id": first["run_id"],
        "dirty": any(bool(p["dirty"]) for _, p in have),
        "profiles": sorted({pid for _, p in have for pid in p["profiles"]}),
        "shards": sorted((s for _, s in shards if s is not None), key=parse_shard),
        "missing_shards": missing,
        "hosts": sorted({p["host"] for _, p in have}),
        "started_at": min(p["started_at"] for _, p in have),
    }
    return out


def check_disjoint(files: Sequence[tuple[str, Sequence[str]]]) -> None:
    """ProvenanceError when two of the files (name, the node ids of its tests) hold the same
    test: every test of a run is in one shard, and merged it would be counted twice."""
    seen: dict[str, str] = {}
    for name, nodeids in files:
        for nodeid in dict.fromkeys(nodeids):
            if nodeid in seen:
                raise ProvenanceError(
                    f"test {nodeid} is in two files: {seen[nodeid]} and {name}; each test of "
                    "a run is in one shard (was a shard run twice, or the suite split two "
                    "ways?)")
            seen[nodeid] = name


def _check_same(have: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    commits = [(name, str(p["commit"])[:12] if p["commit"] else "no commit") for name, p in have]
    if len({c for _, c in commits}) > 1 or len({p["commit"] for _, p in have}) > 1:
        raise ProvenanceError(f"results of different commits: {_groups(commits)}")
    runs = [(name, str(p["run_id"])) for name, p in have]
    if len({r for _, r in runs}) > 1:
        raise ProvenanceError(
            f"results of different runs: {_groups(runs)}; give every shard of one run the "
            f"same {RUN_ID_ENV}")
    by_slot: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for name, p in have:
        slots: dict[str, set[str]] = {}
        for pid in p["profiles"]:
            slots.setdefault(_slot(pid), set()).add(pid)
        for slot, pids in slots.items():
            by_slot.setdefault(slot, []).append((name, frozenset(pids)))
    for entries in by_slot.values():
        common = frozenset.intersection(*(pids for _, pids in entries))
        if not common:
            items = [(name, ", ".join(sorted(pids))) for name, pids in entries]
            raise ProvenanceError(f"results of different profiles: {_groups(items)}")
