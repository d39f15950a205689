"""Issue 27, point 3: how a paired A/B interleaves, and why (``run.loadgen.choose_interleave``,
a pure function of the workload, the engines' threads on this host and the usable cores), and
the CPU contention warning that names the A/B's own second engine instead of another job."""

from __future__ import annotations

import time
from pathlib import Path

from pytest_llmperf.run.cpu import CPUContention
from pytest_llmperf.run.loadgen import HostLoad, choose_interleave, host_load
from pytest_llmperf.run.workload import Workload

SEQUENTIAL = Workload(input_tokens=8, output_tokens=3, requests=2)


def llama(threads: int) -> HostLoad | None:
    return host_load({"kind": "llama_cpp", "settings": {"n_threads": threads}})


VLLM = host_load({"kind": "vllm", "settings": {"max_num_seqs": 1}})
SERVED = host_load({"kind": "openai", "url": "http://127.0.0.1:8000",
                    "server": {"recipe": "vllm", "command": "vllm serve m"}})
AT_URL = host_load({"kind": "openai", "url": "http://10.0.0.2:8000", "server": None})


def test_what_each_engine_keeps_busy_on_this_host() -> None:
    assert llama(2) == HostLoad("llama_cpp with 2 thread(s)", 2)
    assert HostLoad("an in-process vLLM engine") == VLLM
    assert HostLoad("a vllm server started on this host") == SERVED
    assert AT_URL is None  # a server somewhere: nothing known of this host's cores
    assert host_load({"kind": "schedule", "model": "5"}) is None


def test_auto_interleaves_by_runs_when_the_host_cannot_hold_both_engines() -> None:
    # Known threads (llama.cpp computes only while it answers): they take turns, one busy at
    # a time, even when their threads together exceed the cores.
    assert choose_interleave(SEQUENTIAL, (llama(2), llama(1)), cores=2) == (
        "requests", "a sequential workload: A (2 threads) and B (1) take turns, one busy at a "
                    "time")
    assert choose_interleave(SEQUENTIAL, (llama(2), llama(2)), cores=8)[0] == "requests"
    # Unknown threads (vLLM in-process or served): a small host cannot hold two.
    assert choose_interleave(SEQUENTIAL, (VLLM, VLLM), cores=2) == (
        "runs", "2 core(s) cannot run A (an in-process vLLM engine) and B (an in-process vLLM "
                "engine) side by side")
    assert choose_interleave(SEQUENTIAL, (SERVED, SERVED), cores=1)[0] == "runs"
    assert choose_interleave(SEQUENTIAL, (SERVED, SERVED), cores=16) == (
        "requests", "a sequential workload, and 16 cores hold A (a vllm server started on this "
                    "host) and B (a vllm server started on this host) side by side")
    # One engine on this host (B at a URL), or one engine twice: nothing shared.
    for loads, one in (((VLLM, AT_URL), False), ((VLLM, VLLM), True)):
        assert choose_interleave(SEQUENTIAL, loads, cores=2, one_engine=one) == (
            "requests", "a sequential workload, A and B taking turns request by request")


def test_the_workload_and_an_explicit_choice_come_first() -> None:
    concurrent = Workload(input_tokens=8, output_tokens=3, requests=4, concurrency=2)
    assert choose_interleave(concurrent, (None, None), cores=64) == (
        "runs", "concurrent or open-loop load cannot take turns request by request")
    chat = Workload(input_tokens=8, output_tokens=3, requests=2, turns=2)
    assert choose_interleave(chat, (None, None), cores=64) == (
        "runs", "multi-turn sessions cannot take turns request by request")
    assert choose_interleave(SEQUENTIAL, (VLLM, VLLM), cores=2, asked="requests") == (
        "requests", "asked for (interleave='requests')")
    assert choose_interleave(SEQUENTIAL, (None, None), cores=64, asked="runs") == (
        "runs", "asked for (interleave='runs')")


def test_the_contention_warning_names_the_ab_s_own_engine(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 0 0 0 0 0 0\nprocs_running 400\n")
    with CPUContention(interval_s=0.01, path=str(stat)) as c:
        time.sleep(0.03)
    assert "another job or session competed" in (c.warning() or "")
    beside = ("the A/B's own second engine, B (threads=1), was loaded beside A, and its "
              "threads competed with A's")
    named = c.warning(beside, "give the engines fewer threads, or run the A/B alone")
    assert named is not None and f"core(s)): {beside}, so latencies" in named
    assert "another job or session competed" not in named
    assert named.endswith("; give the engines fewer threads, or run the A/B alone")
