"""The pytest entry point (``pytest11``): options, the marker, and the session object.

Mostly declarations. ``pytest_configure`` resolves the settings and registers one
``session.LLMPerfSession``, whose methods are the hooks that do the work; fixtures live in
``fixtures/``. Nothing heavy is imported here: a plain ``pytest`` run pays only for option
parsing and marker checks (see benchmarks/plugin_overhead.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .engines.registry import create_engine, engine_names
from .fixtures.bench import llmperf_bench  # noqa: F401 - fixtures this plugin provides
from .fixtures.engines import llm_engine, llmperf_engine_factory, llmperf_settings  # noqa: F401
from .fixtures.quality import (  # noqa: F401
    llmperf_accuracy,
    pytest_generate_tests,
    quantized_engine,
    quantized_model,
)
from .fixtures.servers import llm_server, llm_server_engine  # noqa: F401
from .session import MARKER, PLUGIN_NAME, LLMPerfSession
from .settings import OPTIONS, ConfigError, resolve

if TYPE_CHECKING:
    from .engines.base import Engine
    from .settings import Settings


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    group.addoption("--llmperf", action="store_true", default=False,
                    help="run tests marked @llmperf (skipped otherwise)")
    for spec in OPTIONS:
        kwargs: dict[str, Any] = {"default": None, "dest": "llmperf_" + spec.name,
                                  "help": f"{spec.help} (ini {spec.ini}, env {spec.env})"}
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.kind is bool:  # a flag: present means True; absent falls to ini/env/default
            kwargs.update(action="store_const", const=True)
        elif spec.repeat:  # --llmperf-engine-arg a=1 --llmperf-engine-arg b=2: a list
            kwargs.update(action="append", metavar="KEY=VALUE")
        group.addoption(spec.flag, **kwargs)
        parser.addini(spec.ini, f"{spec.help} (pytest-llmperf)", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**thresholds): an LLM performance test; keyword arguments are thresholds "
        "such as ttft_p95_ms=500, min_tps=2000, max_regression_pct=5, and engine_args={...} "
        "for the llm_engine it gets (run with --llmperf)",
    )
    extra = [n for names in config.hook.pytest_llmperf_engine_names() for n in names]
    engines = tuple(dict.fromkeys([*engine_names(), *extra]))
    try:
        settings = resolve(
            cli=lambda spec: config.getoption("llmperf_" + spec.name),
            ini=lambda spec: config.getini(spec.ini),
            engines=engines,
        )
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-llmperf: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    if settings.threads is None and workerinput and workerinput.get("workercount"):
        # pytest-xdist: every worker running an engine on all cores would oversubscribe the
        # machine; each gets its share unless --llmperf-threads says otherwise.
        from .run.cpu import usable_cores  # only under pytest-xdist

        share = max(1, usable_cores() // int(workerinput["workercount"]))
        settings = dataclasses.replace(settings, threads=share)
    if config.getoption("llmperf"):
        _one_gpu_per_worker(config, workerinput)
    session = LLMPerfSession(config, settings, enabled=config.getoption("llmperf"),
                             engine_names=engines)
    session.start()
    config.pluginmanager.register(session, PLUGIN_NAME)


def _one_gpu_per_worker(config: pytest.Config, workerinput: dict[str, Any] | None) -> None:
    """pytest-xdist on a multi-GPU machine: worker gwN sees only the N-th visible GPU (set
    here, before any engine is made); the controller warns when workers outnumber GPUs."""
    import os

    from .run.devices import device_for_worker, oversubscribed_line, visible_devices

    if workerinput:
        device = device_for_worker(str(workerinput.get("workerid", "")),
                                   visible_devices(os.environ))
        if device is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = device
        return
    workers = config.getoption("numprocesses", None)  # pytest-xdist's -n, resolved by now
    if isinstance(workers, int) and workers > 1:
        line = oversubscribed_line(workers, visible_devices(os.environ))
        if line is not None:
            config.issue_config_time_warning(pytest.PytestWarning(line), stacklevel=2)


@pytest.hookimpl(trylast=True)
def pytest_llmperf_make_engine(settings: Settings) -> Engine:
    """The built-in engines, by name (the last word: other plugins answer first)."""
    return create_engine(settings)
