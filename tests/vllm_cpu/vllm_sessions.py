"""Helpers of the vLLM tests: the small suite that sessions under test run, and a pytest
subprocess whose process tree is watched (for orphans) and that can be sent Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# Faster loads on the CPU: no torch.compile warm-up (the numbers are the machinery's anyway).
ENGINE_ARGS = {"enforce_eager": True}
# What a session's end must not print (issue 11: vLLM's shutdown noise).
NOISE = ("EngineDeadError", "AsyncLLM.__del__", "Task was destroyed but it is pending",
         "Exception ignored in", "leaked shared_memory")

SUITE = '''
import json, os
from pathlib import Path
from pytest_llmperf import Workload, llmperf


@llmperf(max_errors=0, min_tps=1)
def test_stream(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=8,
                                                concurrency=2, requests=4, warmup=1))
    assert result.summary["requests"] == 4
    assert [r.output_tokens for r in result.samples if not r.warmup] == [8] * 4
    Path(os.environ["SUITE_INFO"]).write_text(json.dumps(
        {"engine": llm_engine.info(), "summary": result.summary}, default=str))


@llmperf(max_errors=0)
def test_batched(llmperf_bench, llm_engine):
    result = llmperf_bench(llm_engine, Workload(input_tokens=32, output_tokens=16,
                                                concurrency=4, requests=8, warmup=0))
    assert result.summary["output_tps"] > 0


@llmperf
def test_does_not_fit(llmperf_bench, llm_engine):
    # 500 prompt + 64 output tokens in a 512-token context: every request must fail as
    # truncated (fewer tokens than asked) or refused (context), never pass with fewer tokens.
    llmperf_bench(llm_engine, Workload(input_tokens=500, output_tokens=64, requests=2,
                                       warmup=0))
'''
# How test_does_not_fit must fail (the kind depends on the path: in-process or served).
DOES_NOT_FIT = r"llmperf: 2 of 2 request\(s\) failed \(2 (truncated|context)\)"


@dataclass
class Session:
    """A finished pytest subprocess: its exit code, output, and every process seen in its
    tree while it ran (pid, create time, command line)."""

    returncode: int
    output: str
    seen: dict[tuple[int, float], str] = field(default_factory=dict)

    def survivors(self) -> list[str]:
        """The processes of its tree still running now (orphans)."""
        alive = []
        for (pid, created), cmd in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid}: {cmd}")
            except psutil.NoSuchProcess:
                continue
        return alive


def run_session(cwd: Path, args: Sequence[str], *, timeout_s: float = 300,
                interrupt_when: Path | None = None, env: dict[str, str] | None = None
                ) -> Session:
    """``python -m pytest ARGS`` in ``cwd``, watching its process tree; with
    ``interrupt_when``, SIGINT is sent once that file exists (as Ctrl-C would)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})})
    session = Session(0, "")
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        key = (child.pid, child.create_time())
                        if key not in session.seen:
                            session.seen[key] = " ".join(child.cmdline())[:200]
                    except psutil.Error:
                        continue
            except psutil.Error:
                return
            if (interrupt_when is not None and interrupt_when.exists()
                    and not getattr(watch, "sent", False)):
                time.sleep(1.0)
                proc.send_signal(signal.SIGINT)
                watch.sent = True  # type: ignore[attr-defined]
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += f"\n(killed after {timeout_s} s)"
    finally:
        done.set()
        watcher.join(5)
    session.returncode = proc.returncode
    session.output = out
    return session


