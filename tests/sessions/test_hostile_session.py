"""Careless and hostile runs at the session level (issue #15): output paths checked before any
benchmark, an interrupted session never saves, failed requests fail a test unless allowed,
oversubscribed CPUs are named on the result, and xdist workers share the cores.

Split by tier from tests/test_hostile_session.py: these are its sessions tests; the others are
in tests/unit/run/test_cpu_contention.py.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import no_internal_traceback

from pytest_llmperf.run.cpu import OVERSUBSCRIBED, CPUContention, usable_cores

# A test oracle engine, added the way a plugin would: requests whose prompt index is odd fail
# (RequestError of kind "oracle"), the others stream 3 tokens 1 ms apart.
FAILING_ENGINE = """
import asyncio, time

from pytest_llmperf.engines import Engine, Generation, RequestError
from pytest_llmperf.testing.oracle import WordTokenizer


class HalfFailing(Engine):
    kind = "half_failing"
    max_concurrency = 1
    stamps_on_loop = False

    def __init__(self):
        self._tok = WordTokenizer()
        self.calls = 0

    @property
    def tokenizer(self):
        return self._tok

    def info(self):
        return {"kind": self.kind, "model": "oracle"}

    async def generate(self, prompt, params, on_chunk):
        self.calls += 1
        if self.calls % 2 == 0:
            raise RequestError("oracle", "the oracle refused request %d" % self.calls)
        for _ in range(params.max_tokens):
            await asyncio.sleep(0.001)
            on_chunk(time.perf_counter_ns(), 1)
        return Generation(output_tokens=params.max_tokens, source="engine")


def pytest_llmperf_engine_names():
    return ["half_failing"]


def pytest_llmperf_make_engine(settings):
    return HalfFailing() if settings.engine == "half_failing" else None
"""


def test_unusable_json_path_stops_the_session_before_any_benchmark(
    llmperf_pytester: pytest.Pytester,
) -> None:
    pt = llmperf_pytester
    (pt.path / "out").mkdir()
    pt.makepyfile(
        """
        from pytest_llmperf import llmperf

        @llmperf(max_errors=0)
        def test_x(llmperf_bench, llm_engine):
            raise AssertionError("no benchmark may run")
        """
    )
    res = pt.runpytest("--llmperf", "--llmperf-json=out")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--llmperf-json out: is a directory; give a file name*"])
    no_internal_traceback(res.stdout.str() + res.stderr.str())


def test_failed_requests_fail_the_test_unless_allowed(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makeconftest(FAILING_ENGINE)
    pt.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        W = Workload(input_tokens=4, output_tokens=3, requests=4, warmup=0)

        @llmperf(ttft_p50_ms=60000)
        def test_not_allowed(llmperf_bench, llmperf_engine_factory):
            llmperf_bench(llmperf_engine_factory(), W)

        @llmperf(max_errors=2)
        def test_allowed(llmperf_bench, llmperf_engine_factory):
            r = llmperf_bench(llmperf_engine_factory(), W)
            assert r.errors == 2
        """
    )
    res = pt.runpytest("--llmperf", "--llmperf-engine=half_failing", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines([
        "*llmperf: 2 of 4 request(s) failed*",
        "*first error: the oracle refused request*",
        "*allow them with @llmperf(max_errors=N)*",
    ])
    no_internal_traceback(res.stdout.str())


def test_an_interrupted_session_does_not_save(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    subprocess.run(["git", "init", "-q"], cwd=pt.path, check=True)
    pt.makeconftest(FAILING_ENGINE)
    pt.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        W = Workload(input_tokens=4, output_tokens=3, requests=2, warmup=0)

        @llmperf(max_errors=10)
        def test_a_finished(llmperf_bench, llmperf_engine_factory):
            llmperf_bench(llmperf_engine_factory(), W)

        def test_b_ctrl_c():
            raise KeyboardInterrupt
        """
    )
    for args in (["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm",
                                 "x"]):
        subprocess.run(["git", *args], cwd=pt.path, check=True)
    res = pt.runpytest("--llmperf", "--llmperf-engine=half_failing", "--llmperf-save",
                       "--llmperf-json=r.json", "-p", "no:cacheprovider", no_reraise_ctrlc=True)
    assert res.ret == pytest.ExitCode.INTERRUPTED
    res.stdout.fnmatch_lines(["*baselines not saved: the session was interrupted*"])
    assert not list((pt.path / "baselines").rglob("*.json"))
    # The finished test is still in the results file.
    data = json.loads((pt.path / "r.json").read_text())
    assert [t["nodeid"] for t in data["tests"]] == ["test_an_interrupted_session_does_not_save"
                                                    ".py::test_a_finished"]


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux's /proc/stat")
def test_real_contention_is_named() -> None:
    """Three busy processes per core compete with nothing else of ours: the sampler must see
    the machine oversubscribed (an absolute condition, not a timing)."""
    ctx = multiprocessing.get_context("spawn")
    hogs = [ctx.Process(target=_spin, args=(6.0,)) for _ in range(3 * usable_cores())]
    for h in hogs:
        h.start()
    try:
        time.sleep(1.0)  # the hogs are running
        with CPUContention(interval_s=0.05) as c:
            time.sleep(1.5)
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    assert c.mean_runnable is not None and c.mean_runnable > OVERSUBSCRIBED * c.cores
    assert "oversubscribed" in (c.warning() or "")


def test_xdist_workers_share_the_cores(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        f"""
        import os

        def test_a(llmperf_settings):
            assert llmperf_settings.threads == max(1, {usable_cores()} // 2)

        def test_b(llmperf_settings):
            assert llmperf_settings.threads == max(1, {usable_cores()} // 2)
        """
    )
    res = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2)
    # An explicit thread count wins.
    pytester.makepyfile(test_explicit="def test_c(llmperf_settings):\n"
                                      "    assert llmperf_settings.threads == 3\n")
    res = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "no:cacheprovider",
                                        "--llmperf-threads=3", "test_explicit.py")
    res.assert_outcomes(passed=1)
    assert sys.executable  # the subprocess ran with this interpreter


def test_a_managed_servers_temporary_log_is_kept_only_when_it_failed() -> None:
    from pytest_llmperf.engines.servers import ManagedServer, ServerError, free_port

    ok_script = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    port = free_port()
    server = ManagedServer([sys.executable, "-c", ok_script, str(port)], port=port)
    with server.start(timeout_s=30):
        log = server.log_path
        assert log.exists()
    assert not log.exists(), "a clean start and stop left its log behind"

    port = free_port()
    broken = ManagedServer([sys.executable, "-c", "print('bad flag'); raise SystemExit(3)"],
                           port=port)
    with pytest.raises(ServerError) as err:
        broken.start(timeout_s=30)
    broken.stop()
    assert broken.log_path.exists() and str(broken.log_path) in str(err.value)
    assert "bad flag" in broken.log_path.read_text()
    broken.log_path.unlink()
