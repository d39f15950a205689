"""Engines as users get them: ``llm_engine``, ``llmperf_engine_factory(**overrides)`` (cached per
engine settings, closed at the end), and engines another package adds through the
``pytest_llmperf_engine_names`` / ``pytest_llmperf_make_engine`` hooks."""

from __future__ import annotations

import json

import pytest

# A conftest that adds an engine the way a third-party plugin would. The engine is a test
# oracle with a known schedule: every token 2 ms after the previous one, first after 20 ms.
SCHEDULE_ENGINE = """
import json, os

from pytest_llmperf.engines import EngineError
from pytest_llmperf.testing.schedule_engine import ScheduleEngine

CLOSED = os.environ["CLOSED_LOG"]


def closed(first_ms):
    with open(CLOSED, "a") as fh:
        fh.write(json.dumps(first_ms) + "\\n")


def pytest_llmperf_engine_names():
    return ["schedule"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "schedule":
        return None
    if settings.model == "broken":
        raise EngineError("the schedule engine cannot load 'broken'")
    first_ms = float(settings.model)
    return ScheduleEngine(first_ms, on_close=lambda: closed(first_ms))
"""


@pytest.fixture
def schedule_pytester(llmperf_pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    closed = tmp_path_factory.mktemp("closed") / "closed.jsonl"
    monkeypatch.setenv("CLOSED_LOG", str(closed))
    llmperf_pytester.makeconftest(SCHEDULE_ENGINE)
    return llmperf_pytester


def closed_engines(pt: pytest.Pytester) -> list[float]:
    import os

    path = os.environ["CLOSED_LOG"]
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh]
    except FileNotFoundError:
        return []


def test_a_plugin_engine_is_chosen_by_name_and_measured(schedule_pytester: pytest.Pytester
                                                          ) -> None:
    pt = schedule_pytester
    pt.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(ttft_p50_ms=10000)
        def test_ttft(llmperf_bench, llm_engine):
            assert llm_engine.kind == "schedule"
            r = llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=4, requests=3))
            # The oracle's known schedule: the first token 30 ms after the send.
            assert 30 <= r.summary["ttft_p50_ms"] < 30 + 25
            assert r.errors == 0 and r.summary["output_tokens"] == 12
        """
    )
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=30",
                       "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    assert closed_engines(pt) == [30.0]  # closed once, at the end of the session


def test_an_unknown_engine_name_is_a_usage_error(schedule_pytester: pytest.Pytester) -> None:
    schedule_pytester.makepyfile("def test_x():\n    pass\n")
    res = schedule_pytester.runpytest("--llmperf", "--llmperf-engine=nope")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(
        ["*--llmperf-engine: 'nope' is not one of llama_cpp, openai, vllm, trtllm, schedule*"])


def test_factory_shares_engines_per_settings_and_closes_them(
    schedule_pytester: pytest.Pytester,
) -> None:
    pt = schedule_pytester
    pt.makepyfile(
        """
        import pytest
        from pytest_llmperf import Workload, llmperf

        W = Workload(input_tokens=8, output_tokens=3, requests=2, warmup=0)

        @llmperf(max_regression_pct=10000)
        def test_ab(llmperf_bench, llmperf_engine_factory):
            fast = llmperf_engine_factory()
            assert llmperf_engine_factory() is fast  # shared per engine settings
            slow = llmperf_engine_factory(model="60")
            assert slow is not fast
            assert llmperf_engine_factory.settings(model="60").model == "60"
            llmperf_bench(fast, W)
            v = llmperf_bench.compare(fast, slow, W, stage1=2, stage2=0, fail=False)
            ttft = v.metric("ttft_p50_ms")
            assert ttft.change_pct > 50  # 20 ms -> 60 ms

        def test_release_closes_now(llmperf_engine_factory):
            engine = llmperf_engine_factory(model="70")
            llmperf_engine_factory.release(engine)
            assert llmperf_engine_factory(model="70") is not engine

        def test_bad_override(llmperf_engine_factory):
            llmperf_engine_factory(treads=1)

        def test_engine_error_is_one_line(llmperf_engine_factory):
            llmperf_engine_factory(model="broken")
        """
    )
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=20",
                       "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines([
        "*llmperf: unknown engine setting(s) treads; valid: *threads*",
        "*llmperf: the schedule engine cannot load 'broken'*",
    ])
    assert "Traceback" not in res.stdout.str()
    # 20 and 60 at the end of the session; the released 70 at once, its reload at the end.
    assert sorted(closed_engines(pt)) == [20.0, 60.0, 70.0, 70.0]


def test_a_test_that_only_compares_is_measured_and_its_limits_are_not_silently_skipped(
    schedule_pytester: pytest.Pytester,
) -> None:
    # A paired comparison is a measurement: a marked test that only calls compare() is judged
    # by its verdict (not "never measured"); a limit it carries has no run to apply to, which
    # fails the test in one line instead of passing unchecked.
    schedule_pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        W = Workload(input_tokens=8, output_tokens=3, requests=2, warmup=0)

        @llmperf
        def test_compare_only(llmperf_bench, llmperf_engine_factory):
            fast, slow = llmperf_engine_factory(), llmperf_engine_factory(model="60")
            v = llmperf_bench.compare(fast, slow, W, stage1=2, stage2=0, fail=False)
            assert v.metric("ttft_p50_ms").change_pct > 50

        @llmperf(ttft_p50_ms=1000)
        def test_compare_with_a_limit(llmperf_bench, llmperf_engine_factory):
            fast, slow = llmperf_engine_factory(), llmperf_engine_factory(model="60")
            llmperf_bench.compare(fast, slow, W, stage1=2, stage2=0, fail=False)
        """
    )
    res = schedule_pytester.runpytest("--llmperf", "--llmperf-engine=schedule",
                                      "--llmperf-model=20", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*thresholds ttft_p50_ms were never checked: the test only ran "
                              "llmperf_bench.compare(...)*"])
    assert "never called llmperf_bench" not in res.stdout.str()


# An engine with a record like vLLM's (version, dtype, context, engine arguments) whose close
# prints a line, as vLLM's shutdown logs do.
DESCRIBED_ENGINE = """
import sys

from pytest_llmperf.testing.schedule_engine import ScheduleEngine


def pytest_llmperf_engine_names():
    return ["schedule"]


def pytest_llmperf_make_engine(settings):
    if settings.engine != "schedule":
        return None
    info = {"version": "1.2", "model": "m" + settings.model,
            "settings": {"dtype": "bfloat16", "max_model_len": 512,
                         "engine_args": settings.engine_args()}}

    def closed():
        sys.stdout.write("SHUTDOWN of the engine with %s\\n" % settings.engine_args())
        sys.stdout.flush()

    return ScheduleEngine(float(settings.model), info=info, on_close=closed)
"""


def test_the_session_lists_its_engines_once_and_closes_them_before_the_summary(
        llmperf_pytester: pytest.Pytester) -> None:
    """Issue 27, points 5 and 6: one "llmperf engines" line per distinct engine (kind and
    version, model, dtype, context, engine arguments), however many runs used it; and the
    engines are closed before pytest's terminal summary, so their shutdown output (vLLM's
    INFO lines) does not come after it."""
    pt = llmperf_pytester
    pt.makeconftest(DESCRIBED_ENGINE)
    pt.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        W = Workload(input_tokens=8, output_tokens=3, requests=2)

        @llmperf(max_errors=0)
        def test_one(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, W)

        @llmperf(max_errors=0, repeats=2)
        def test_two(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, W)

        @llmperf(max_errors=0, engine_args={"max_num_seqs": 1})
        def test_other(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, W)
        """
    )
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=5",
                       "-p", "no:cacheprovider")
    res.assert_outcomes(passed=3)
    lines = res.stdout.lines
    start = next(i for i, line in enumerate(lines) if "llmperf engines" in line)
    section = []
    for line in lines[start + 1:]:
        if line.startswith("="):
            break
        if line.strip():
            section.append(line)
    assert section == [
        "schedule 1.2: model m5; dtype bfloat16; context 512; engine args none",
        'schedule 1.2: model m5; dtype bfloat16; context 512; engine args {"max_num_seqs": 1}',
    ], section
    shutdowns = [i for i, line in enumerate(lines) if "SHUTDOWN of the engine" in line]
    results = next(i for i, line in enumerate(lines) if "llmperf results" in line)
    assert len(shutdowns) == 2 and max(shutdowns) < results, lines


def test_the_ab_flags_second_engine_is_closed_before_the_summary(
        llmperf_pytester: pytest.Pytester) -> None:
    """Issue 27, point 6: --llmperf-ab's B engine is closed at the end of the session with
    the others, so its shutdown output does not come after pytest's summary either."""
    pt = llmperf_pytester
    pt.makeconftest(DESCRIBED_ENGINE)
    pt.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_errors=0)
        def test_one(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=3, requests=2))
        """
    )
    res = pt.runpytest("--llmperf", "--llmperf-engine=schedule", "--llmperf-model=5",
                       "--llmperf-ab", "engine_arg.max_num_seqs=1", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    lines = res.stdout.lines
    shutdowns = [i for i, line in enumerate(lines) if "SHUTDOWN of the engine" in line]
    results = next(i for i, line in enumerate(lines) if "llmperf results" in line)
    assert any("max_num_seqs" in lines[i] for i in shutdowns), lines  # B's was printed
    assert len(shutdowns) == 2 and max(shutdowns) < results, lines
