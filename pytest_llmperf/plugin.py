"""pytest hooks and fixtures. Thin: the work happens in the modules they call."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import config as cfg
from .bench import run_benchmark
from .engines import Engine, EngineError, create_engine
from .metrics import RunResult
from .report.json_report import write_json
from .report.progress import ProgressLine
from .report.terminal import render_summary
from .session import SessionState
from .thresholds import MarkerError, evaluate, failure_message, validate_marker
from .workload import Workload, WorkloadError

MARKER = "llmperf"
STATE = pytest.StashKey[SessionState]()
ITEM_RUNS = pytest.StashKey[list[RunResult]]()
ITEM_THRESHOLDS = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    group.addoption("--llmperf", action="store_true", default=False,
                    help="run tests marked @llmperf (skipped otherwise)")
    for spec in cfg.OPTIONS:
        kwargs: dict[str, Any] = {"default": None, "dest": "llmperf_" + spec.name,
                                  "help": f"{spec.help} (ini {spec.ini}, env {spec.env})"}
        if spec.choices:
            kwargs["choices"] = spec.choices
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
    if _state(config).enabled:
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
    """The ``llmperf_bench`` fixture: ``llmperf_bench(engine, Workload(...)) -> RunResult``."""

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
            try:
                workload = Workload(**kwargs)
            except (TypeError, WorkloadError) as exc:
                problem = f"llmperf: bad workload: {exc}"
            else:
                problem = ""
            if problem:
                pytest.fail(problem, pytrace=False)
        elif kwargs:
            raise TypeError("give either a Workload or its keyword arguments, not both")
        if not isinstance(engine, Engine):
            pytest.fail(f"llmperf: {engine!r} is not an engine (use the llm_engine fixture)",
                        pytrace=False)
        label = self._item.nodeid
        try:
            with self._progress.track(label, workload.requests) as tick:
                result = run_benchmark(engine, workload, progress=tick)
        except (WorkloadError, EngineError) as exc:
            problem = f"llmperf: {exc}"
        else:
            problem = ""
        if problem:
            pytest.fail(problem, pytrace=False)
        runs = self.runs
        prefix = "" if not runs else f"run{len(runs)}."
        runs.append(result)
        for key, value in sorted(result.summary.items()):
            if value is not None:
                self._item.user_properties.append((prefix + key, value))
        for warning in result.warnings:
            self._item.warn(pytest.PytestWarning(f"llmperf: {warning}"))
        return result


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
    if not runs:
        pytest.fail(
            f"{item.nodeid} is marked @llmperf but never called llmperf_bench(...): "
            "nothing was measured, so no threshold was checked",
            pytrace=False,
        )
    messages = []
    for i, run in enumerate(runs):
        checks = evaluate(thresholds, run.summary)
        run.client["checks"] = [c.to_dict() for c in checks]
        label = f"(run {i + 1} of {len(runs)})" if len(runs) > 1 else ""
        msg = failure_message(checks, label=label)
        if msg:
            messages.append(msg)
    if messages:
        pytest.fail("\n".join(messages), pytrace=False)
    return result


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
            }
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = _state(config)
    if state.tests:
        render_summary(terminalreporter, state.tests)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None or hasattr(session.config, "workerinput"):
        return
    if state.settings.json:
        write_json(state.settings.json, state)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()
