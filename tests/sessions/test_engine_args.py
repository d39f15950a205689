"""Engine arguments as users give them: ``--llmperf-engine-arg KEY=VALUE`` (repeatable), the
ini key and the environment variable, ``@llmperf(engine_args={...})`` (the test's
``llm_engine``, a separately cached engine) and ``llmperf_engine_factory(engine_args={...})``.

The engine is a test oracle added the way a third-party plugin adds one: its first token comes
``first_ms`` (an engine argument) after the send, then one token every 2 ms, so the measured
TTFT shows which arguments the engine that served a test was made with; it logs the arguments
of every engine made and closed.
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import no_internal_traceback

ARGS_ORACLE = """
import json, os

from pytest_llmperf.testing.schedule_engine import ScheduleEngine

LOG = os.environ["ENGINE_ARGS_LOG"]


def log(event, args):
    with open(LOG, "a") as fh:
        fh.write(json.dumps([event, args]) + "\\n")


def pytest_llmperf_engine_names():
    return ["args_oracle"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "args_oracle":
        return None
    args = settings.engine_args()
    log("made", args)
    engine = ScheduleEngine(float(args.get("first_ms", 1)), kind="args_oracle",
                            info={"model": "oracle", "settings": {"engine_args": args}},
                            on_close=lambda: log("closed", args))
    engine.args = args  # what the tests read back
    return engine
"""


@pytest.fixture
def args_pytester(llmperf_pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    log = tmp_path_factory.mktemp("engine_args") / "log.jsonl"
    monkeypatch.setenv("ENGINE_ARGS_LOG", str(log))
    monkeypatch.delenv("LLMPERF_ENGINE_ARG", raising=False)
    llmperf_pytester.makeconftest(ARGS_ORACLE)
    return llmperf_pytester


def canonical(args: object) -> str:
    return json.dumps(args, sort_keys=True)


def engine_log() -> list[tuple[str, dict[str, object]]]:
    try:
        with open(os.environ["ENGINE_ARGS_LOG"]) as fh:
            return [(event, args) for event, args in map(json.loads, fh)]
    except FileNotFoundError:
        return []


MEASURE = """
from pytest_llmperf import Workload, llmperf

W = Workload(input_tokens=6, output_tokens=3, requests=2)


def ttft(llmperf_bench, engine):
    return llmperf_bench(engine, W).summary["ttft_p50_ms"]
"""


@pytest.mark.parametrize("source", ["cli", "ini", "env"])
def test_engine_args_reach_the_engine_from_every_source(args_pytester: pytest.Pytester,
                                                        source: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pt = args_pytester
    pt.makepyfile(MEASURE + """
@llmperf()
def test_args(llmperf_bench, llm_engine, llmperf_settings):
    assert llm_engine.args == {"first_ms": 40, "speculative_config": {"method": "ngram"},
                               "label": "a;b", "enforce_eager": True}
    assert llmperf_settings.engine_args() == llm_engine.args
    assert ttft(llmperf_bench, llm_engine) >= 40
""")
    items = ["first-ms=40", 'speculative_config={"method": "ngram"}', 'label="a;b"',
             "enforce_eager=true"]
    args = ["--llmperf", "--llmperf-engine=args_oracle", "-p", "no:cacheprovider"]
    if source == "cli":
        args += [f"--llmperf-engine-arg={item}" for item in items]
    elif source == "ini":
        ini = (pt.path / "tox.ini").read_text()
        lines = "\n    ".join(items)
        (pt.path / "tox.ini").write_text(ini.rstrip() + f"\nllmperf_engine_arg =\n    {lines}\n")
    else:
        monkeypatch.setenv("LLMPERF_ENGINE_ARG", "\n".join(items))
    res = pt.runpytest(*args)
    res.assert_outcomes(passed=1)
    assert [event for event, _ in engine_log()] == ["made", "closed"]


def test_the_marker_and_the_factory_choose_separately_cached_engines(
    args_pytester: pytest.Pytester,
) -> None:
    pt = args_pytester
    pt.makepyfile(MEASURE + """
import pytest

ENGINES = {}


@llmperf()
def test_session_args(llmperf_bench, llm_engine):
    ENGINES["session"] = llm_engine
    assert llm_engine.args == {"first_ms": 10, "label": "session"}
    assert 10 <= ttft(llmperf_bench, llm_engine) < 10 + 40


@llmperf(engine_args={"first-ms": 60})
def test_marker_args(llmperf_bench, llm_engine):
    # The marker's arguments go over the session's, key by key: another engine.
    assert llm_engine.args == {"first_ms": 60, "label": "session"}
    assert llm_engine is not ENGINES["session"]
    ENGINES["marker"] = llm_engine
    assert ttft(llmperf_bench, llm_engine) >= 60


@llmperf(engine_args={"first_ms": 60})
def test_same_marker_args_share_the_engine(llmperf_bench, llm_engine, llmperf_engine_factory):
    assert llm_engine is ENGINES["marker"]
    assert llmperf_engine_factory(engine_args={"first_ms": 60}) is llm_engine
    assert llmperf_engine_factory() is ENGINES["session"]  # the factory ignores the marker
    llmperf_bench(llm_engine, W)


@pytest.mark.llmperf(engine_args={"label": "class"})
class TestClassArgs:
    @llmperf(engine_args={"first_ms": 20})
    def test_merged_key_by_key(self, llmperf_bench, llm_engine):
        assert llm_engine.args == {"first_ms": 20, "label": "class"}
        llmperf_bench(llm_engine, W)


def test_factory_args(llmperf_engine_factory):
    engine = llmperf_engine_factory(engine_args={"first_ms": 30, "extra": [1, 2]})
    assert engine.args == {"first_ms": 30, "extra": [1, 2], "label": "session"}
    assert llmperf_engine_factory(engine_arg=None).args == {}  # drops the session's
    assert llmperf_engine_factory(engine_arg="a=1;b=x").args == {"a": 1, "b": "x"}


def test_bad_factory_args(llmperf_engine_factory):
    llmperf_engine_factory(engine_args={"max num seqs": 8})


def test_factory_args_not_a_dict(llmperf_engine_factory):
    llmperf_engine_factory(engine_args=["first_ms=3"])
""")
    res = pt.runpytest("--llmperf", "--llmperf-engine=args_oracle",
                       "--llmperf-engine-arg=first_ms=10", "--llmperf-engine-arg=label=session",
                       "-p", "no:cacheprovider")
    res.assert_outcomes(passed=5, failed=2)
    lines = res.stdout.lines
    assert ("llmperf: engine_args: engine argument 'max num seqs' is not a name such as "
            "max_num_seqs (a-z, 0-9, _)") in lines
    assert "llmperf: engine_args=['first_ms=3'] must be a dict such as {'max_num_seqs': 8}" in lines
    no_internal_traceback(res.stdout.str())
    assert "During handling" not in res.stdout.str()
    made = [args for event, args in engine_log() if event == "made"]
    # One engine per distinct set of arguments, each made once and closed at the end.
    assert sorted(made, key=canonical) == sorted([
        {"first_ms": 10, "label": "session"}, {"first_ms": 60, "label": "session"},
        {"first_ms": 20, "label": "class"}, {"first_ms": 30, "extra": [1, 2], "label": "session"},
        {}, {"a": 1, "b": "x"}], key=canonical)
    closed = [args for event, args in engine_log() if event == "closed"]
    assert sorted(closed, key=canonical) == sorted(made, key=canonical)


@pytest.mark.parametrize(("item", "message"), [
    ("foo", "--llmperf-engine-arg: 'foo' is not KEY=VALUE"),
    ("=3", "--llmperf-engine-arg: '=3' is not KEY=VALUE with KEY a name such as max_num_seqs"),
])
def test_a_bad_item_is_a_one_line_usage_error(args_pytester: pytest.Pytester, item: str,
                                              message: str) -> None:
    args_pytester.makepyfile("def test_x():\n    pass\n")
    res = args_pytester.runpytest("--llmperf", "--llmperf-engine=args_oracle",
                                  "--llmperf-engine-arg=ok=1", f"--llmperf-engine-arg={item}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*pytest-llmperf: {message}*"])
    no_internal_traceback(res.stdout.str() + res.stderr.str())


@pytest.mark.parametrize(("marker", "fixture", "message"), [
    ("engine_args=['a=1']", "llm_engine",
     "engine_args=['a=1'] must be a dict such as {'max_num_seqs': 8}"),
    ("engine_args={'Bad': 1}", "llm_engine", "engine_args: engine argument 'Bad' is not a name"),
    ("engine_args={'x': float('nan')}", "llm_engine",
     "engine_args: engine argument x=nan is not a JSON value"),
    ("engine_args={'x': 1}", "llmperf_engine_factory",
     "@llmperf(engine_args=...) chooses the llm_engine fixture, which this test does not use; "
     "ask llmperf_engine_factory(engine_args=...) for an engine instead"),
])
def test_a_bad_marker_is_a_collection_error(args_pytester: pytest.Pytester, marker: str,
                                            fixture: str, message: str) -> None:
    args_pytester.makepyfile(f"""
from pytest_llmperf import llmperf

@llmperf({marker})
def test_x({fixture}):
    pass
""")
    res = args_pytester.runpytest("--llmperf", "--llmperf-engine=args_oracle")
    assert res.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the session
    assert f"test_a_bad_marker_is_a_collection_error.py::test_x: {message}" in res.stdout.str()
    assert engine_log() == []  # nothing was loaded


def test_a_server_we_did_not_start_refuses_engine_args(pytester: pytest.Pytester,
                                                        llmperf_oracle: object) -> None:
    server = llmperf_oracle()  # type: ignore[operator]
    pytester.makepyfile("""
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_served(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=2, requests=1))

@llmperf(engine_args={"max_num_seqs": 8})
def test_marked(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=2, requests=1))
""")
    res = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}",
                             "-p", "no:cacheprovider")
    # Without engine arguments the server is benchmarked; with them, one line says why not.
    res.assert_outcomes(passed=1, errors=1)
    res.stdout.fnmatch_lines([
        f"*llmperf: --llmperf-engine-arg cannot change the server at {server.url}, which "
        "pytest-llmperf did not start: give them to that server's own command line, or let "
        "pytest-llmperf start it (--llmperf-server RECIPE)"])
    no_internal_traceback(res.stdout.str())
    res = pytester.runpytest("--llmperf", f"--llmperf-url={server.url}",
                             "--llmperf-context-len=4096", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(["*llmperf: --llmperf-context-len cannot change the server at *"])
