"""What a baseline run records of how it was made (``Gate.save`` adds it to the run's
``client`` object): the pytest arguments of the session, less the options that only name an
output or ask to save, with test paths made relative to the repository root (where
``llmperf bisect`` and the nightly replay run their sessions), and the metrics the marker
gated. The nightly report reads them back through ``run_args`` and ``run_gated``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..metric_table import SUMMARY_KEYS

# Options that only name an output or ask to save: not part of what was measured.
_VALUE_OPTIONS = ("--llmperf-json", "--llmperf-html", "--llmperf-markdown", "--junitxml",
                  "--junit-xml")
_FLAG_OPTIONS = ("--llmperf-save", "--llmperf-save-dirty")
_INI_DROPPED = ("llmperf_json", "llmperf_html", "llmperf_markdown", "llmperf_save",
                "llmperf_save_dirty")




def recorded_args(args: Sequence[str], invocation_dir: str | Path | None = None,
                  root: str | Path | None = None) -> list[str]:
    """The pytest arguments worth replaying: ``args`` less the options that only name outputs
    or saving (``--llmperf-json/-html/-markdown``, ``--junitxml``, ``--llmperf-save``,
    ``--llmperf-save-dirty``, their ``-o`` ini forms) and their values. A positional argument
    that names an existing path under ``root`` (relative to ``invocation_dir``) is rewritten
    relative to ``root``, where bisect runs each session."""
    out: list[str] = []
    skip_value = False
    for i, arg in enumerate(args):
        arg = str(arg)
        if skip_value:
            skip_value = False
            continue
        name = arg.split("=", 1)[0]
        if name in _VALUE_OPTIONS:
            skip_value = "=" not in arg
            continue
        if name in _FLAG_OPTIONS:
            continue
        if arg in ("-o", "--override-ini") and i + 1 < len(args):
            value = str(args[i + 1])
            if value.split("=", 1)[0].strip() in _INI_DROPPED:
                skip_value = True
                continue
        if (name == "--override-ini" and "=" in arg
                and arg.split("=", 1)[1].split("=", 1)[0].strip() in _INI_DROPPED):
            continue
        out.append(_rebase(arg, invocation_dir, root) if not arg.startswith("-") else arg)
    return out


def _rebase(arg: str, invocation_dir: str | Path | None, root: str | Path | None) -> str:
    if invocation_dir is None or root is None or not arg:
        return arg
    head, sep, rest = arg.partition("::")
    path = Path(head)
    full = path if path.is_absolute() else Path(invocation_dir) / path
    try:
        if not full.exists():
            return arg
        rel = Path(os.path.relpath(full.resolve(), Path(root).resolve()))
    except (OSError, ValueError):
        return arg
    if rel.parts and rel.parts[0] == "..":
        return arg  # outside the repository: as given
    return rel.as_posix() + sep + rest


def provenance(pytest_args: Sequence[str] | None, gated: Sequence[str]) -> dict[str, Any]:
    """What ``Gate.save`` adds to a run's ``client`` object."""
    out: dict[str, Any] = {"gated": list(gated)}
    if pytest_args is not None:
        out["pytest_args"] = list(pytest_args)
    return out


def run_args(run: Mapping[str, Any]) -> list[str] | None:
    args = (run.get("client") or {}).get("pytest_args")
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return list(args)
    return None


def run_gated(run: Mapping[str, Any]) -> list[str]:
    gated = (run.get("client") or {}).get("gated")
    if isinstance(gated, list):
        return [m for m in gated if isinstance(m, str) and m in SUMMARY_KEYS]
    return []
