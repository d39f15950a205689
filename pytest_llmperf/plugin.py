"""pytest hooks and fixtures. Thin: the work happens in the modules they call."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import config as cfg
from .bench import run_benchmark, run_benchmark_interleaved
from .engines import Engine, EngineError, create_engine
from .failures import call_or_fail
from .gate import Gate, GateConfigError, GateUsageError
from .gate import failure_message as gate_failure_message
from .gate import summary_lines as gate_summary_lines
from .metrics import RunResult
from .model_fixtures import (  # noqa: F401 - fixtures and a hook, exposed by this plugin
    check_accuracy,
    llmperf_accuracy,
    pytest_generate_tests,
    quantized_engine,
    quantized_model,
)
from .report.json_report import write_json
from .report.junit import failure_text
from .report.progress import ProgressLine
from .report.publish import ReportPathError, check_report_paths, publish_session
from .report.terminal import render_summary
from .server_fixtures import llm_server, llm_server_engine  # noqa: F401 - served-engine fixtures
from .session import SessionState
from .shard import ShardError, parse_shard, split
from .store import BaselineError
from .thresholds import MarkerError, evaluate, failure_message, validate_marker
from .workload import Workload, WorkloadError

MARKER = "llmperf"
STATE = pytest.StashKey[SessionState]()
ITEM_RUNS = pytest.StashKey[list[RunResult]]()
ITEM_THRESHOLDS = pytest.StashKey[dict[str, Any]]()
GATE = pytest.StashKey[Gate]()
ITEM_COMPARISON = pytest.StashKey[dict[str, Any]]()
ITEM_AB = pytest.StashKey[list[Any]]()
SAVE_LINES = pytest.StashKey[list[str]]()
REPORT_LINES = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    group.addoption("--llmperf", action="store_true", default=False,
                    help="run tests marked @llmperf (skipped otherwise)")
    for spec in cfg.OPTIONS:
        kwargs: dict[str, Any] = {"default": None, "dest": "llmperf_" + spec.name,
                                  "help": f"{spec.help} (ini {spec.ini}, env {spec.env})"}
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.kind is bool:  # a flag: present means True; absent falls to ini/env/default
            kwargs.update(action="store_const", const=True)
        group.addoption(spec.flag, **kwargs)
        parser.addini(spec.ini, f"{spec.help} (pytest-llmperf)", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**thresholds): an LLM performance test; keyword arguments are thresholds "
        "such as ttft_p95_ms=500, min_tps=2000, max_regression_pct=5 (run with --llmperf)",
    )
    try:
        settings = cfg.resolve(
            cli=lambda spec: config.getoption("llmperf_" + spec.name),
            ini=lambda spec: config.getini(spec.ini),
        )
    except cfg.ConfigError as exc:
        raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
    state = SessionState(settings=settings, enabled=config.getoption("llmperf"))
    config.stash[STATE] = state
    try:
        check_report_paths(settings)  # fail now, not after an hour of benchmarks
    except ReportPathError as exc:
        raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
    if state.enabled:
        try:
            config.stash[GATE] = Gate.from_settings(settings, config.rootpath)
        except GateUsageError as exc:
            raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
    # The state gathers results from test reports (on the xdist controller too).
    config.pluginmanager.register(state, "llmperf-session-state")


def _state(config: pytest.Config) -> SessionState:
    return config.stash[STATE]


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
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
        for mark in reversed(marks):  # closest marker wins
            try:
                merged.update(validate_marker(mark.args, mark.kwargs))
            except MarkerError as exc:
                raise collector.CollectError(f"{item.nodeid}: {exc}") from None
        item.stash[ITEM_THRESHOLDS] = merged
    return result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    if state.settings.shard:
        try:
            index, count = parse_shard(state.settings.shard)
        except ShardError as exc:
            raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
        keep, drop = split([item.nodeid for item in items], index, count)
        if drop:
            config.hook.pytest_deselected(items=[items[i] for i in drop])
            items[:] = [items[i] for i in keep]
    if state.enabled:
        return
    skip = pytest.mark.skip(reason="llmperf: performance test, run with --llmperf")
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def llmperf_settings(request: pytest.FixtureRequest) -> cfg.Settings:
    """The resolved pytest-llmperf settings (options, ini, environment)."""
    return _state(request.config).settings


@pytest.fixture(scope="session")
def llm_engine(request: pytest.FixtureRequest) -> Engine:
    """The engine under test, loaded once per session from the llmperf settings."""
    state = _state(request.config)
    return get_engine(state, state.settings)


def get_engine(state: SessionState, settings: cfg.Settings) -> Engine:
    key = settings.engine_key()
    if key in state.engine_errors:
        pytest.fail(state.engine_errors[key], pytrace=False)
    if key not in state.engines:
        try:
            state.engines[key] = create_engine(settings)
        except EngineError as exc:
            state.engine_errors[key] = f"llmperf: {exc}"
        if key in state.engine_errors:
            pytest.fail(state.engine_errors[key], pytrace=False)
    return state.engines[key]


class LLMPerfBench:
    """The ``llmperf_bench`` fixture: ``llmperf_bench(engine, Workload(...)) -> RunResult``.

    One call runs the workload ``repeats`` times (the marker's ``repeats=N``, else
    --llmperf-repeats); each run is one data point for the regression gate, and each run is
    checked against the thresholds. The call returns the last run's RunResult; every run of
    the test is in ``llmperf_bench.runs``. ``llmperf_bench.compare(a, b, workload)`` runs a
    paired A/B comparison (see ab.py).
    """

    def __init__(self, item: pytest.Item, state: SessionState, progress: ProgressLine) -> None:
        self._item = item
        self._state = state
        self._progress = progress

    @property
    def runs(self) -> list[RunResult]:
        return self._item.stash.setdefault(ITEM_RUNS, [])

    def __call__(
        self, engine: Engine, workload: Workload | None = None, **kwargs: Any
    ) -> RunResult:
        if workload is None:
            workload = call_or_fail(lambda: Workload(**kwargs), (TypeError, WorkloadError),
                                    prefix="llmperf: bad workload: ")
        elif kwargs:
            raise TypeError("give either a Workload or its keyword arguments, not both")
        if not isinstance(engine, Engine):
            pytest.fail(f"llmperf: {engine!r} is not an engine (use the llm_engine fixture)",
                        pytrace=False)
        n = self.repeats
        result = None
        for i in range(n):
            label = self._item.nodeid + (f" (run {i + 1}/{n})" if n > 1 else "")
            result = self._record(self._run_once(engine, workload, label))
        assert result is not None
        return result

    @property
    def repeats(self) -> int:
        """Runs per call: the marker's ``repeats``, else --llmperf-repeats (default 1)."""
        marked = self._item.stash.get(ITEM_THRESHOLDS, {}).get("repeats")
        return int(marked or self._state.settings.repeats or 1)

    def _run_once(self, engine: Engine, workload: Workload, label: str) -> RunResult:
        def run() -> RunResult:
            with self._progress.track(label, workload.requests) as tick:
                return run_benchmark(engine, workload, progress=tick)

        return call_or_fail(run, (WorkloadError, EngineError))

    def _record(self, result: RunResult) -> RunResult:
        runs = self.runs
        prefix = "" if not runs else f"run{len(runs)}."
        runs.append(result)
        for key, value in sorted(result.summary.items()):
            if value is not None:
                self._item.user_properties.append((prefix + key, value))
        for warning in result.warnings:
            self._item.warn(pytest.PytestWarning(f"llmperf: {warning}"))
        return result

    def compare(
        self,
        engine_a: Engine,
        engine_b: Engine,
        workload: Workload,
        *,
        alpha: float | None = None,
        stage1: int = 5,
        stage2: int = 5,
        labels: tuple[str, str] = ("A", "B"),
        fail: bool = True,
        interleave: str = "auto",
    ) -> Any:
        """Paired A/B: is engine_b slower than engine_a? Returns an ``ab.ABVerdict``.

        Each pair is one run of A and one of B, ``stage1`` pairs first and ``stage2`` more
        only while the answer is unclear; the gated metrics and tolerances come from the
        marker (``gate``, ``max_regression_pct``). ``interleave``: "requests" makes a pair's
        two runs together, request by request (A B B A ...), so both see the machine in the
        same state (the default, "auto", for sequential workloads); "runs" runs them one after
        the other, alternating which goes first (the only way for concurrent or open-loop
        load). With ``fail`` (the default) a regression fails the test at its end, in the
        same message as the thresholds. These runs are never saved as baselines.
        """
        from .ab import run_ab, run_paired
        from .loadgen import interleave_problem

        for e in (engine_a, engine_b):
            if not isinstance(e, Engine):
                pytest.fail(f"llmperf: {e!r} is not an engine", pytrace=False)
        thresholds = self._item.stash.get(ITEM_THRESHOLDS, {})
        gate = self._item.config.stash.get(GATE, None)
        level = alpha if alpha is not None else (gate.alpha if gate else self._state.settings.alpha)
        base = self._item.nodeid

        if interleave not in ("auto", "requests", "runs"):
            pytest.fail(f"llmperf: interleave={interleave!r}: use 'auto', 'requests' or 'runs'",
                        pytrace=False)
        problem = interleave_problem(workload)
        if interleave == "requests" and problem:
            pytest.fail(f"llmperf: {problem}", pytrace=False)
        by_request = interleave == "requests" or (interleave == "auto" and problem is None)

        def runner(engine: Engine, label: str) -> Any:
            return lambda: self._run_once(engine, workload, f"{base} [{label}]")

        def pair(i: int) -> tuple[RunResult, RunResult]:
            def run() -> tuple[RunResult, RunResult]:
                with self._progress.track(f"{base} [{labels[0]}|{labels[1]} pair {i + 1}]",
                                          workload.requests) as tick:
                    return run_benchmark_interleaved(engine_a, engine_b, workload,
                                                     b_first=i % 2 == 1, progress=tick)

            return call_or_fail(run, (WorkloadError, EngineError))

        def compare() -> Any:
            common = {"alpha": level, "stage1": stage1, "stage2": stage2,
                      "label_a": labels[0], "label_b": labels[1]}
            if by_request:
                return run_paired(pair, thresholds, **common)
            return run_ab(runner(engine_a, labels[0]), runner(engine_b, labels[1]), thresholds,
                          **common)

        verdict = call_or_fail(compare, (GateConfigError, ValueError))
        self._item.stash.setdefault(ITEM_AB, []).append((verdict, fail))
        return verdict


@pytest.fixture
def llmperf_bench(request: pytest.FixtureRequest) -> LLMPerfBench:
    """Runs a Workload against an engine and records the result for thresholds and reports."""
    state = _state(request.config)
    return LLMPerfBench(request.node, state, state.progress(request.config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    thresholds = item.stash.get(ITEM_THRESHOLDS, None)
    runs = item.stash.get(ITEM_RUNS, [])
    if thresholds is None or not _state(item.config).enabled:
        return result
    accuracy_messages = check_accuracy(item, thresholds, runs)  # also fills summary accuracy
    if not runs and accuracy_messages is None:
        pytest.fail(
            f"{item.nodeid} is marked @llmperf but never called llmperf_bench(...): "
            "nothing was measured, so no threshold was checked",
            pytrace=False,
        )
    messages = list(accuracy_messages or [])
    for i, run in enumerate(runs):
        checks = evaluate(thresholds, run.summary)
        run.client["checks"] = [c.to_dict() for c in checks]
        label = f"(run {i + 1} of {len(runs)})" if len(runs) > 1 else ""
        msg = failure_message(checks, label=label)
        if msg:
            messages.append(msg)
    messages += _gate_messages(item, runs, thresholds)
    if messages:
        pytest.fail(failure_text(messages, item.stash.get(ITEM_COMPARISON, None)),
                    pytrace=False)
    return result


def _gate_messages(
    item: pytest.Item, runs: list[RunResult], thresholds: dict[str, Any]
) -> list[str]:
    """Compare the runs with the baseline (stored on the item) and A/B verdicts; failures."""
    out: list[str] = []
    gate = item.config.stash.get(GATE, None)
    if gate is not None and runs:
        try:
            comparison = gate.compare_test(item.nodeid, runs, thresholds)
        except GateConfigError as exc:
            out.append(f"llmperf: {exc}")
        else:
            if comparison is not None:
                item.stash[ITEM_COMPARISON] = comparison
                msg = gate_failure_message(comparison)
                if msg:
                    out.append(msg)
    for verdict, fail in item.stash.get(ITEM_AB, []):
        if fail and not verdict.passed:
            out.append(verdict.failure_message())
    return out


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        runs = item.stash.get(ITEM_RUNS, [])
        if runs:
            report.llmperf = {  # type: ignore[attr-defined]
                "thresholds": item.stash.get(ITEM_THRESHOLDS, {}),
                "runs": [r.to_dict() for r in runs],
                "comparison": item.stash.get(ITEM_COMPARISON, None),
                "ab": [v.to_dict() for v, _ in item.stash.get(ITEM_AB, [])],
            }
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = _state(config)
    if state.tests:
        render_summary(terminalreporter, state.tests)
    gate_lines = gate_summary_lines(state.tests) + config.stash.get(SAVE_LINES, [])
    if gate_lines:
        terminalreporter.section("llmperf baselines")
        for line in gate_lines:
            terminalreporter.write_line(line)
    report_lines = config.stash.get(REPORT_LINES, [])
    if report_lines:
        terminalreporter.section("llmperf reports")
        for line in report_lines:
            terminalreporter.write_line(line, red=line.startswith("ERROR"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None or hasattr(session.config, "workerinput"):
        return
    gate = session.config.stash.get(GATE, None)
    if gate is not None and gate.save_requested:
        lines = session.config.stash.setdefault(SAVE_LINES, [])
        try:
            lines += gate.save(state.tests)
        except BaselineError as exc:
            lines.append(f"ERROR: baselines not saved: {exc}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.settings.json:
        write_json(state.settings.json, state)
    done, errors = publish_session(state, gate.dir if gate is not None else None)
    session.config.stash[REPORT_LINES] = done + [f"ERROR: {e}" for e in errors]
    if errors:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()
