"""The end of a session (on the pytest-xdist controller, or the only process): the baselines
saved (and pushed to the store), the results document built once, and from it the JSON file,
the HTML page, the Markdown summary and the terminal sections.

``session.py`` calls ``finish`` from ``pytest_sessionfinish`` and ``terminal_summary`` from
``pytest_terminal_summary``; this module needs jinja2, rich and gitpython, so the session
imports it there, never when the plugin loads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engines.auth import auth_headers
from .engines.base import EngineError
from .files import os_reason
from .redact import Redactor, env_secrets, header_secrets
from .report.json_report import session_provenance, write_json
from .report.publish import publish
from .report.terminal import ab_lines, engine_lines, gate_lines, render_summary
from .results import TestRecord, results_document
from .settings import Settings
from .store.backends import push_after_save
from .store.baselines import BaselineError
from .store.profile import hardware

if TYPE_CHECKING:
    from .verdict.gate import Gate


@dataclass
class Ending:
    """What the end of a session did: lines for the terminal, the results document (None
    when there was nothing to write), and whether the session must fail for it."""

    save_lines: list[str] = field(default_factory=list)
    report_lines: list[str] = field(default_factory=list)
    document: dict[str, Any] | None = None
    failed: bool = False


def recorded_args(settings: Settings, args: Sequence[str]) -> list[str]:
    """The session's pytest arguments as baselines record them (for the nightly's bisect
    command), with every secret the session knows of (the API key, header values,
    credential-named environment variables, secret flags) replaced by ``***``."""
    try:  # what the engine sends: the header values and "Bearer <key>"
        sent = header_secrets(auth_headers(settings))
    except EngineError:
        sent = []
    redactor = Redactor([*sent, *env_secrets(os.environ)])
    return redactor.argv([str(a) for a in args])


def save_baselines(gate: Gate, settings: Settings, tests: Sequence[TestRecord],
                   args: Sequence[str], invocation_dir: Path, ending: Ending) -> None:
    """``--llmperf-save``: the runs saved under the commit, then pushed to ``--llmperf-store``."""
    try:
        ending.save_lines += gate.save(tests, recorded_args(settings, args), invocation_dir)
        if settings.store:
            pushed = push_after_save(settings.store, gate.dir,
                                     gate.git.root if gate.git else None)
            ending.save_lines += pushed
            if any(line.startswith("ERROR") for line in pushed):
                ending.failed = True
    except BaselineError as exc:
        ending.save_lines.append(f"ERROR: baselines not saved: {exc}")
        ending.failed = True


def finish(settings: Settings, tests: Sequence[TestRecord], gate: Gate | None, *,
           rootpath: Path, args: Sequence[str], invocation_dir: Path, interrupted: bool,
           session_key: object) -> Ending:
    """Save (unless interrupted), then write every report from one results document."""
    ending = Ending()
    if gate is not None and gate.save_requested and interrupted:
        # A session stopped half way is not a measurement of the commit: keep the store
        # as it was (the finished tests are still in the reports).
        ending.save_lines.append("baselines not saved: the session was interrupted")
    elif gate is not None and gate.save_requested:
        save_baselines(gate, settings, tests, args, invocation_dir, ending)
    if not (settings.json or tests or settings.html or settings.markdown):
        return ending
    git = gate.git if gate is not None else None
    provenance = session_provenance(tests, root=git.root if git else rootpath,
                                    shard=settings.shard, session_key=session_key)
    doc = ending.document = results_document(tests, provenance, hardware())
    errors: list[str] = []
    if settings.json:
        try:
            write_json(settings.json, doc)
            ending.report_lines.append(f"JSON results: {settings.json}")
        except OSError as exc:  # checked at the start; the disk can still fill up
            errors.append(f"cannot write the JSON results to {settings.json}: "
                          f"{os_reason(exc)}")
    done, publish_errors = publish(
        doc, html_path=settings.html, md_path=settings.markdown,
        baseline_dir=gate.dir if gate is not None else settings.baseline_dir)
    ending.report_lines += done
    errors += publish_errors
    ending.report_lines += [f"ERROR: {e}" for e in errors]
    if errors and not interrupted:
        ending.failed = True
    return ending


def terminal_summary(terminalreporter: Any, tests: Sequence[Mapping[str, Any]], *, ab: bool,
                     save_lines: Sequence[str], report_lines: Sequence[str]) -> None:
    """The results table, the engines the runs used (once each: their effective settings),
    and the A/B, capacity, baselines and reports sections."""
    if tests:
        render_summary(terminalreporter, tests, ab=ab)
    engines = engine_lines(tests)
    if engines:
        terminalreporter.section("llmperf engines")
        for line in engines:
            terminalreporter.write_line(line)
    ab_section = ab_lines(tests) if tests and ab else []
    if ab_section:
        terminalreporter.section("llmperf A/B (--llmperf-ab)")
        for line in ab_section:
            terminalreporter.write_line(line)
    capacity_lines = [f"{t['nodeid']}: {c.get('describe', '')}"
                      for t in tests for c in t.get("capacity") or []]
    if capacity_lines:  # llmperf_bench.capacity: the rate found and its interval
        terminalreporter.section("llmperf capacity")
        for line in capacity_lines:
            terminalreporter.write_line(line)
    root = getattr(getattr(terminalreporter, "config", None), "rootpath", None)
    gate_section = [*gate_lines(tests, ab=ab, root=root, saving=bool(save_lines)),
                    *save_lines]
    if gate_section:
        terminalreporter.section("llmperf baselines")
        for line in gate_section:
            terminalreporter.write_line(line)
    if report_lines:
        terminalreporter.section("llmperf reports")
        for line in report_lines:
            terminalreporter.write_line(line, red=line.startswith("ERROR"))
