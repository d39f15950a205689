"""The session: one object, registered as a plugin in ``pytest_configure``, that holds what a
pytest session shares (settings, loaded engines, the baseline gate, every test's results,
report lines) and implements the hooks that need it.

Imports nothing heavy at module level: without ``--llmperf`` a session only validates markers
and skips the marked tests; engines, statistics and reports are imported when first used.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import reading
from .engines.base import EngineError
from .files import ReportPathError, check_report_paths
from .reading import ReadLimitError
from .report.junit import failure_text
from .report.progress import ProgressLine
from .results import TestRecord
from .run.ab_flag import close_b_engines
from .settings import Settings

if TYPE_CHECKING:
    from .engines.base import Engine
    from .models.spec import ModelSpec
    from .quality.accuracy import AccuracyRecord, AccuracyResult
    from .report.progress import ProgressLine
    from .run.metrics import RunResult
    from .verdict.ab import ABVerdict
    from .verdict.gate import Gate
    from .verdict.thresholds import Thresholds

MARKER = "llmperf"
PLUGIN_NAME = "llmperf-session"


@dataclass
class ItemRecord:
    """Everything pytest-llmperf knows about one test item while it runs (one StashKey)."""

    thresholds: dict[str, Any] | None = None  # None: the test is not marked @llmperf
    parsed: Thresholds | None = None  # the same keywords, parsed (verdict.thresholds)
    runs: list[RunResult] = field(default_factory=list)
    comparison: dict[str, Any] | None = None  # against the baseline (gate.py's shape)
    ab: list[tuple[ABVerdict, bool]] = field(default_factory=list)  # (verdict, fail on it)
    capacity: list[dict[str, Any]] = field(default_factory=list)  # CapacityResult.to_dict()s
    accuracy: list[AccuracyRecord] = field(default_factory=list)
    spec: ModelSpec | None = None  # the quantized_model the test runs
    # Per run, the thresholds checked against it (outcome.Judgement.checks).
    checks: list[list[dict[str, Any]]] = field(default_factory=list)
    # The marker's engine_args: the test's llm_engine is the session's with these on top.
    engine_args: dict[str, Any] | None = None


ITEM = pytest.StashKey[ItemRecord]()


def run_document(run: RunResult, checks: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One run as the results document holds it: the run, with the thresholds checked
    against it as ``client.checks`` (when the test was judged)."""
    data = run.to_dict()
    if checks is not None:
        data["client"] = {**(data.get("client") or {}), "checks": checks}
    return data


def item_record(item: pytest.Item) -> ItemRecord:
    """The item's record (made on first use)."""
    return item.stash.setdefault(ITEM, ItemRecord())


class LLMPerfSession:
    """The pytest-llmperf plugin object of one pytest process (see the module docstring)."""

    def __init__(self, config: pytest.Config, settings: Settings, enabled: bool,
                 engine_names: tuple[str, ...] = ()) -> None:
        self.config = config
        self.settings = settings
        self.enabled = enabled
        self.engine_names = engine_names or (settings.engine,)
        self.gate: Gate | None = None
        self.engines: dict[tuple[Any, ...], Engine] = {}
        self.engine_errors: dict[tuple[Any, ...], str] = {}
        self.tests: list[TestRecord] = []
        self.document: dict[str, Any] | None = None  # the results, made at session finish
        self.save_lines: list[str] = []
        self.report_lines: list[str] = []
        self.empty_shard = ""  # the line that says this shard selected nothing
        # Session caches of the quality fixtures: model specs and accuracy scores.
        self.specs: dict[tuple[str, str], ModelSpec | str] = {}
        self.accuracy_results: dict[tuple[Any, ...], AccuracyResult] = {}
        self._progress: ProgressLine | None = None

    @classmethod
    def of(cls, config: pytest.Config) -> LLMPerfSession:
        """The session object registered for ``config``."""
        plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
        assert isinstance(plugin, cls), "pytest-llmperf is not configured"
        return plugin

    def start(self) -> None:
        """Fail now, not after an hour of benchmarks: report paths and the gate's options.

        The gate itself (git, the baseline store, the statistics) is made when the first
        marked test is collected, so ``--llmperf`` on a suite with no marked test stays cheap;
        on a pytest-xdist controller, which collects nothing, it is made here.
        """
        try:
            check_report_paths(self.settings)
        except ReportPathError as exc:
            raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
        if self.settings.ab and self.settings.save:
            raise pytest.UsageError("pytest-llmperf: --llmperf-ab runs A/B pairs, which are "
                                    "not baselines: drop --llmperf-save or --llmperf-ab")
        if not self.enabled:
            return
        if getattr(self.config.option, "dist", "no") != "no":
            self.make_gate()

    def make_gate(self) -> Gate:
        """The baseline gate (made once); pytest.UsageError when its options cannot work."""
        if self.gate is None:
            from .verdict.gate import Gate, GateUsageError

            try:
                self.gate = Gate.from_settings(self.settings, self.config.rootpath,
                                               self.config.args,
                                               self.config.invocation_params.dir)
            except GateUsageError as exc:
                raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
            if self.settings.store and not hasattr(self.config, "workerinput"):
                from .store.backends import StoreError, pull_for_gate

                try:  # before the gate looks up a baseline; xdist workers read what came
                    self.save_lines += pull_for_gate(self.settings.store, self.gate.dir,
                                                     self.gate.git.root if self.gate.git
                                                     else self.config.rootpath)
                except StoreError as exc:
                    raise pytest.UsageError(f"pytest-llmperf: --llmperf-store: {exc}"
                                            ) from None
        return self.gate

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.enabled and any(item.get_closest_marker(MARKER) for item in session.items):
            self.make_gate()

    @property
    def progress(self) -> ProgressLine:
        if self._progress is None:
            self._progress = ProgressLine(self.config)
        return self._progress

    # -- engines ---------------------------------------------------------------------------

    def get_engine(self, settings: Settings | None = None) -> Engine:
        """The engine for ``settings`` (default: the session's), loaded once per engine key
        and closed at the end of the session; a failure to load fails the calling test (and
        every later one that asks) with the same one line."""
        settings = self.settings if settings is None else settings
        key = settings.engine_key()
        if key not in self.engines and key not in self.engine_errors:
            try:
                engine = self.config.hook.pytest_llmperf_make_engine(settings=settings)
                if engine is None:
                    raise EngineError(f"no plugin makes engine {settings.engine!r}")
                self.engines[key] = engine
            except EngineError as exc:
                self.engine_errors[key] = f"llmperf: {exc}"
        if key in self.engine_errors:
            pytest.fail(self.engine_errors[key], pytrace=False)
        return self.engines[key]

    def release_engine(self, engine: Engine) -> None:
        """Close ``engine`` and drop it from the cache (to measure the next model's memory
        without this one resident); a later request for it loads it again."""
        for key, cached in list(self.engines.items()):
            if cached is engine:
                del self.engines[key]
        engine.close()

    def close(self) -> None:
        close_b_engines(self.config)  # --llmperf-ab's B engines
        for engine in self.engines.values():
            with contextlib.suppress(Exception):  # closing must not mask the outcome
                engine.close()
        self.engines.clear()

    # -- collection ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_pycollect_makeitem(
        self, collector: pytest.Collector, name: str, obj: object
    ) -> Generator[None, Any, Any]:
        result = yield
        items = result if isinstance(result, list) else [result]
        for item in items:
            if not isinstance(item, pytest.Function):
                continue
            marks = list(item.iter_markers(MARKER))
            if not marks:
                continue
            merged: dict[str, Any] = {}
            engine_args: dict[str, Any] = {}
            from .verdict.thresholds import (  # only for a test marked @llmperf
                MarkerError,
                Thresholds,
                validate_marker,
            )

            for mark in reversed(marks):  # closest marker wins (engine_args: key by key)
                try:
                    valid = validate_marker(mark.args, mark.kwargs)
                except MarkerError as exc:
                    raise collector.CollectError(f"{item.nodeid}: {exc}") from None
                engine_args.update(valid.pop("engine_args", {}))
                merged.update(valid)
            if engine_args and "llm_engine" not in item.fixturenames:
                raise collector.CollectError(
                    f"{item.nodeid}: @llmperf(engine_args=...) chooses the llm_engine fixture, "
                    "which this test does not use; ask llmperf_engine_factory(engine_args=...) "
                    "for an engine instead")
            record = item_record(item)
            record.thresholds = merged
            record.parsed = Thresholds.of(merged)
            record.engine_args = engine_args or None
        return result

    @pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: shard what they left
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if self.settings.shard:
            from .shard import ShardError, empty_line, parse_shard, split  # only when sharded

            try:
                index, count = parse_shard(self.settings.shard)
            except ShardError as exc:
                raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
            durations = self.shard_durations() if self.settings.shard_durations else None
            keep, drop = split([item.nodeid for item in items], index, count, durations)
            if drop:
                config.hook.pytest_deselected(items=[items[i] for i in drop])
                items[:] = [items[i] for i in keep]
            if drop and not keep:  # more shards than tests: nothing to do is not a failure
                self.empty_shard = empty_line(index, count, len(drop))
                workeroutput = getattr(config, "workeroutput", None)
                if workeroutput is not None:  # an xdist worker: tell the controller
                    workeroutput["llmperf_empty_shard"] = self.empty_shard
        if self.enabled:
            return
        skip = pytest.mark.skip(reason="llmperf: performance test, run with --llmperf")
        for item in items:
            if item.get_closest_marker(MARKER) is not None:
                item.add_marker(skip)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        # pytest-xdist's controller collects nothing: its workers say the shard was empty.
        line = (getattr(node, "workeroutput", None) or {}).get("llmperf_empty_shard")
        if line:
            self.empty_shard = str(line)

    def shard_durations(self) -> dict[str, float]:
        """Seconds per node id from the ``--llmperf-shard-durations`` results file."""
        from .shard import ShardError, durations_from_results

        path = self.settings.shard_durations
        try:  # the bounded reader: a regular file, size and nesting limited, no NaN
            return durations_from_results(reading.read_json(str(path)))
        except OSError as exc:
            reason = exc.strerror or str(exc)
        except ReadLimitError as exc:  # its message starts with the path, given below
            reason = str(exc).removeprefix(f"{path}: ")
        except (ValueError, ShardError) as exc:
            reason = str(exc).splitlines()[0]
        raise pytest.UsageError(f"pytest-llmperf: --llmperf-shard-durations {path}: {reason}")

    # -- running ---------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        result = yield
        record = item.stash.get(ITEM, None)
        if record is None or record.thresholds is None or not self.enabled:
            return result
        from .verdict.outcome import judge

        verdict = judge(item.nodeid, record.thresholds, record.runs, accuracy=record.accuracy,
                        ab=record.ab, gate=self.gate, path=item.path,
                        inconclusive=self.settings.inconclusive)
        if not verdict.measured:
            pytest.fail(
                f"{item.nodeid} is marked @llmperf but never called llmperf_bench(...): "
                "nothing was measured, so no threshold was checked",
                pytrace=False,
            )
        record.checks = verdict.checks
        if verdict.comparison is not None:
            record.comparison = verdict.comparison
            for warning in [*(verdict.comparison.get("warnings") or []),  # JUnit <property>
                            *(verdict.comparison.get("blind") or [])]:
                item.user_properties.append(("llmperf_warning", warning))
        if verdict.failures:
            pytest.fail(failure_text(verdict.failures), pytrace=False)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        line = bad_workload_line(item, call)
        if line is not None:
            report.longrepr = line
        record = item.stash.get(ITEM, None)
        if call.when == "call" and record is not None and record.runs:
            # Results travel on the report: plain data, so pytest-xdist carries them too.
            report.llmperf = {  # type: ignore[attr-defined]
                "thresholds": record.thresholds or {},
                "runs": [run_document(r, checks) for r, checks in
                         itertools.zip_longest(record.runs, record.checks[:len(record.runs)])],
                "comparison": record.comparison,
                "ab": [v.to_dict() for v, _ in record.ab],
                "capacity": list(record.capacity),
            }
            if self.gate is not None:  # the baseline key: stable where pytest's rootdir moves
                report.llmperf["key"] = self.gate.test_key(item.nodeid, item.path).key
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Also runs on the pytest-xdist controller, where the reports of every worker arrive.
        data = getattr(report, "llmperf", None)
        if data is None or report.when != "call":
            return
        from .run.metrics import RunResult

        message = ""
        if not report.passed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = (crash.message if crash is not None else str(report.longrepr)).strip()
        self.tests.append(
            TestRecord(
                nodeid=report.nodeid,
                outcome=report.outcome,
                thresholds=dict(data.get("thresholds", {})),
                runs=[RunResult.from_dict(r) for r in data.get("runs", [])],
                message=message,
                comparison=data.get("comparison"),
                ab=list(data.get("ab") or []),
                capacity=list(data.get("capacity") or []),
                key=data.get("key"),
            )
        )

    # -- the end ---------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Every test has run (and every fixture is torn down): the engines are closed now,
        # before pytest's terminal summary, so what they print when they stop (vLLM's
        # shutdown lines) does not come after it. The results already hold their records.
        self.close()
        if self.empty_shard and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a Kubernetes Job index must not fail
        if hasattr(session.config, "workerinput"):
            return  # an xdist worker: the controller saves and reports
        if self.enabled and self.gate is None and (
                self.tests or self.settings.save or self.settings.html or self.settings.markdown):
            try:  # results from pytest-xdist workers, or reports that show the stored trends
                self.make_gate()
            except pytest.UsageError as exc:
                self.save_lines.append(f"ERROR: {exc}")
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        saving = self.gate is not None and self.gate.save_requested
        if not (saving or self.tests or self.settings.json or self.settings.html
                or self.settings.markdown):
            return  # nothing measured, nothing asked for: a plain pytest run stays light
        from .finish import finish  # jinja2, rich, gitpython

        ending = finish(self.settings, self.tests, self.gate,
                        rootpath=self.config.rootpath,
                        args=self.config.invocation_params.args,
                        invocation_dir=self.config.invocation_params.dir,
                        interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED,
                        session_key=self)
        self.save_lines += ending.save_lines
        self.report_lines += ending.report_lines
        self.document = ending.document
        if ending.failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if self.empty_shard:
            terminalreporter.write_line(self.empty_shard)
        # The document written at the end of the session (sessionfinish runs first).
        tests = (self.document["tests"] if self.document is not None
                 else [t.to_dict() for t in self.tests])
        if not (tests or self.save_lines or self.report_lines):
            return
        from .finish import terminal_summary

        terminal_summary(terminalreporter, tests, ab=bool(self.settings.ab),
                         save_lines=self.save_lines, report_lines=self.report_lines)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()  # a session that ended before sessionfinish (a usage error)


_PACKAGE_DIR = Path(__file__).resolve().parent


def bad_workload_line(item: pytest.Item, call: pytest.CallInfo[None]) -> str | None:
    """A ``Workload(...)`` the test (or a fixture) built with a bad value, as one line: where
    in the user's code, and the value refused (``test_x.py:7: llmperf: bad workload:
    Workload.requests=... is above the limit: ...``), instead of a traceback through the
    dataclass's checks. None for any other outcome."""
    # A WorkloadError can only have been raised once its module is loaded: looked up there,
    # so the plugin's load path does not import it (and numpy).
    module = sys.modules.get("pytest_llmperf.run.workload")
    if call.excinfo is None or module is None or not call.excinfo.errisinstance(
            module.WorkloadError):
        return None
    where = ""
    for entry in reversed(call.excinfo.traceback):
        path = Path(str(entry.path))
        if path.is_absolute() and not path.resolve().is_relative_to(_PACKAGE_DIR):
            with contextlib.suppress(ValueError):
                path = path.relative_to(item.config.rootpath)
            where = f"{path}:{entry.lineno + 1}: "
            break
    return f"{where}llmperf: bad workload: {call.excinfo.value}"
