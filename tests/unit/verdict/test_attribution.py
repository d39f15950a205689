"""verdict/attribution.py against hand-made stored runs."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.engines.base import Prompt
from pytest_llmperf.run.workload import Workload, prompts_digest
from pytest_llmperf.verdict.attribution import attribution, attribution_lines, workload_changes


def run(summary: dict[str, Any], workload: Workload | None = None, engine: dict[str, Any]
        | None = None, digest: str | None = None) -> dict[str, Any]:
    return {"summary": summary, "workload": (workload or Workload()).to_dict(),
            "engine": engine or {"kind": "llama_cpp", "settings": {"n_threads": 2}},
            "client": {"prompts_digest": digest} if digest else {}}


def test_workload_changes_name_each_field_and_then_the_prompts() -> None:
    a, b = Workload(output_tokens=16), Workload(output_tokens=32, rate=4.0)
    assert workload_changes([run({}, a)], [run({}, b)]) == [
        "output_tokens: 16 -> 32", "rate: (default) -> 4.0"]
    same = Workload(output_tokens=16)
    assert workload_changes([run({}, a, digest="x")], [run({}, same, digest="x")]) == []
    assert workload_changes([run({}, a, digest="x")], [run({}, same, digest="y")]) == [
        "the prompts differ (same workload fields: the dataset, trace, prompts file or "
        "tokenizer changed)"]
    # An older run without a digest is not a change.
    assert workload_changes([run({}, a)], [run({}, same, digest="y")]) == []


def test_prompts_digest_follows_text_ids_and_asked_lengths() -> None:
    p = Prompt("alpha", (1, 5), 2, 4)
    assert prompts_digest([p]) == prompts_digest([Prompt("alpha", (1, 5), 2, 4)])
    assert prompts_digest([p]) != prompts_digest([Prompt("alpha", (1, 6), 2, 4)])
    assert prompts_digest([p]) != prompts_digest([Prompt("alpha", (1, 5), 2, 8)])
    assert prompts_digest([p, p]) != prompts_digest([p])


def test_the_block_names_phases_signals_tokens_and_engine_settings() -> None:
    base = [run({"ttft_p50_ms": 40.0, "tpot_p50_ms": 10.0, "e2e_p50_ms": 200.0,
                 "prefix_hit_rate": 0.8, "preemptions": 0, "input_tokens": 1280,
                 "output_tokens": 160, "requests": 10}),
            run({"ttft_p50_ms": 44.0, "tpot_p50_ms": 10.0, "e2e_p50_ms": 204.0,
                 "prefix_hit_rate": 0.8, "preemptions": 0, "input_tokens": 1280,
                 "output_tokens": 160, "requests": 10})]
    cur = [run({"ttft_p50_ms": 90.0, "tpot_p50_ms": 10.1, "e2e_p50_ms": 250.0,
                "prefix_hit_rate": 0.1, "preemptions": 0, "input_tokens": 1280,
                "output_tokens": 160, "requests": 10},
               engine={"kind": "llama_cpp", "settings": {"n_threads": 1}, "load_s": 9})]
    block = attribution(base, cur)
    phases = {r["what"]: r for r in block["phases"]}
    assert phases["prefill (TTFT p50)"]["baseline"] == pytest.approx(42.0)
    assert phases["prefill (TTFT p50)"]["change_pct"] == pytest.approx(90 / 42 * 100 - 100)
    assert phases["prefill (TTFT p50)"]["most"] is True
    assert "queue before the send (schedule lag p50)" not in phases  # closed loop: none
    assert [r["what"] for r in block["server"]] == ["prefix hit rate"]  # preemptions 0 -> 0
    assert block["tokens"] == []  # same tokens per request
    assert block["environment"] == ["settings.n_threads: baseline 2, now 1"]  # load_s: volatile
    lines = attribution_lines(block)
    assert lines[0] == "  what moved with it:"
    assert "    phase: prefill (TTFT p50): 42 -> 90 (+114.3%) <- grew most" in lines
    assert "    server: prefix hit rate: 0.8 -> 0.1 (-87.5%)" in lines
    assert "    engine: settings.n_threads: baseline 2, now 1" in lines
    assert attribution_lines(None) == [] and attribution_lines(
        {"phases": [], "server": [], "tokens": [], "environment": [], "workload": []}) == []


def test_a_decode_slowdown_is_named_by_the_time_it_adds_to_a_request() -> None:
    """TPOT is per token: 26.8 -> 46.1 ms over 15 decoded tokens adds 290 ms to a request,
    more than prefill's 192.9 -> 330.2 ms (+137 ms) (the embedded engine at 2 threads, then
    1): decode grew most, although TTFT's own change in ms is the larger number."""
    def run(ttft: float, tpot: float) -> dict[str, Any]:
        return {"summary": {"ttft_p50_ms": ttft, "tpot_p50_ms": tpot,
                            "e2e_p50_ms": ttft + 15 * tpot, "output_tokens": 128,
                            "requests": 8}}
    block = attribution([run(192.9, 26.78)], [run(330.2, 46.05)])
    most = [row["what"] for row in block["phases"] if row.get("most")]
    assert most == ["decode (TPOT p50)"]
    # Without the token counts TPOT's growth is compared as it is (and prefill wins here).
    bare = [{"summary": {"ttft_p50_ms": 192.9, "tpot_p50_ms": 26.78}}]
    block = attribution(bare, [{"summary": {"ttft_p50_ms": 330.2, "tpot_p50_ms": 46.05}}])
    assert [row["what"] for row in block["phases"] if row.get("most")] == [
        "prefill (TTFT p50)"]


def test_a_started_servers_free_port_is_not_an_engine_difference() -> None:
    """Two served runs: each server got another free port (and pid, URL); its command is
    compared as the profile compares it (store/profile.server_part), so nothing differs."""
    def served(port: int, pid: int) -> dict[str, Any]:
        return {"summary": {"ttft_p50_ms": 10.0}, "engine": {"kind": "openai", "server": {
            "recipe": "vllm", "command": f"python -m vllm serve m --port {port}",
            "pid": pid, "url": f"http://127.0.0.1:{port}"}}}
    assert attribution([served(4001, 11)], [served(4002, 12)])["environment"] == []
