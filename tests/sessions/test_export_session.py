"""``llmperf export`` on a real session's results: Bencher and github-action-benchmark files,
and a push to a Pushgateway stand-in (a local HTTP server that keeps what it was sent, read
back with prometheus_client's own parser)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_llmperf.cli import main
from pytest_llmperf.testing.oracle import OracleServer

SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf(repeats=2)
def test_chat(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=4, requests=4, warmup=0))
"""


@pytest.fixture
def results(pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer]) -> Path:
    url = llmperf_oracle(ttft_ms=20, itl_ms=2).url
    pytester.makepyfile(test_suite=SUITE)
    out = pytester.path / "r.json"
    pytester.runpytest("--llmperf", f"--llmperf-url={url}",
                       f"--llmperf-json={out}").assert_outcomes(passed=1)
    return out


def test_bencher_and_github_benchmark_files(results: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(results.read_text())
    runs = [r["summary"]["ttft_p50_ms"] for r in doc["tests"][0]["runs"]]
    assert main(["export", "bencher", str(results), "--out", str(tmp_path / "b.json")]) == 0
    bmf = json.loads((tmp_path / "b.json").read_text())
    entry = bmf["test_suite.py::test_chat"]["ttft-p50-ms"]
    assert entry["lower_value"] == min(runs) and entry["upper_value"] == max(runs)
    assert entry["value"] == pytest.approx(sum(runs) / 2)  # the median of two
    assert 15 < entry["value"] < 200  # the oracle's 20 ms
    assert main(["export", "github-bigger", str(results)]) == 0
    bigger = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in bigger} >= {"test_suite.py::test_chat output_tps"}
    assert all(set(e) >= {"name", "unit", "value"} for e in bigger)


class Gateway(BaseHTTPRequestHandler):
    """Keeps every push (method, path, body) as a Pushgateway would take it."""

    pushes: ClassVar[list[tuple[str, str, str]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.pushes.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.pushes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_push_to_a_pushgateway(results: Path, gateway: str) -> None:
    assert main(["export", "pushgateway", str(results), "--url", gateway,
                 "--job", "nightly"]) == 0
    [(method, path, body)] = Gateway.pushes
    assert method == "PUT" and path == "/metrics/job/nightly"
    families = {f.name: f for f in text_string_to_metric_families(body)}
    doc = json.loads(results.read_text())
    runs = sorted(r["summary"]["output_tps"] for r in doc["tests"][0]["runs"])
    [sample] = families["llmperf_output_tps"].samples
    assert sample.labels["test"] == "test_suite.py::test_chat"
    assert sample.value == pytest.approx(sum(runs) / 2)


def test_a_dead_pushgateway_is_one_line(results: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "pushgateway", str(results), "--url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmperf: error: pushgateway http://127.0.0.1:9: the push failed")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
