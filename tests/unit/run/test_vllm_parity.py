"""Our summary equals vLLM's serving-benchmark formulas on the same streams.

``vllm_reference`` restates vLLM's ``calculate_metrics`` (benchmarks/serve.py): per successful
request, TTFT, latency (E2E), TPOT = (latency - ttft) / (output_len - 1), ITL = the list of
chunk gaps; percentiles by numpy's linear interpolation; throughput over the run's duration.
For streams of one token per chunk the two must agree to floating-point precision.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_llmperf.run.metrics import RequestRecord, summarize


def vllm_reference(outputs: list[dict[str, object]], dur_s: float) -> dict[str, float]:
    ttfts, tpots, itls, e2els, out_lens = [], [], [], [], []
    for o in outputs:
        if not o["success"]:
            continue
        n = int(o["output_tokens"])  # type: ignore[arg-type]
        out_lens.append(n)
        if n > 1:
            tpots.append((o["latency"] - o["ttft"]) / (n - 1))  # type: ignore[operator]
        itls += o["itl"]  # type: ignore[operator]
        ttfts.append(o["ttft"])
        e2els.append(o["latency"])
    res: dict[str, float] = {
        "output_throughput": sum(out_lens) / dur_s,
        "request_throughput": len(ttfts) / dur_s,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        res[f"mean_{name}_ms"] = float(np.mean(values)) * 1000
        for p in (50, 90, 95, 99):
            res[f"p{p}_{name}_ms"] = float(np.percentile(values, p)) * 1000
    return res


def test_summary_matches_vllm_formulas() -> None:
    rng = np.random.default_rng(42)
    records, outputs = [], []
    t = 0.0
    for i in range(40):
        send = t
        n = int(rng.integers(1, 60))
        ttft = float(rng.uniform(0.05, 0.4))
        gaps = rng.gamma(2.0, 0.01, size=n - 1)
        chunks = send + ttft + np.concatenate([[0.0], np.cumsum(gaps)])
        ok = i % 13 != 5  # a few failed requests, excluded by both
        if ok:
            records.append(RequestRecord(
                index=i, prompt_tokens=32, send_ns=round(send * 1e9),
                chunk_ns=[round(c * 1e9) for c in chunks], chunk_tokens=[1] * n,
                done_ns=round(chunks[-1] * 1e9), output_tokens=n))
        else:
            records.append(RequestRecord(index=i, prompt_tokens=32, send_ns=round(send * 1e9),
                                         done_ns=round(send * 1e9) + 1000, error="HTTP 503"))
        # vLLM's view of the same request, from the same integer-ns timestamps.
        ns = [round(c * 1e9) / 1e9 for c in chunks]
        s = round(send * 1e9) / 1e9
        outputs.append({"success": ok, "ttft": ns[0] - s, "latency": ns[-1] - s,
                        "itl": list(np.diff(ns)), "output_tokens": n})
        t += float(rng.exponential(0.05))
    ours = summarize(records)
    dur_s = ours["duration_s"]
    ref = vllm_reference(outputs, dur_s)
    for name in ("ttft", "tpot", "itl"):
        assert ours[f"{name}_mean_ms"] == pytest.approx(ref[f"mean_{name}_ms"], rel=1e-9)
        for p in (50, 90, 95, 99):
            assert ours[f"{name}_p{p}_ms"] == pytest.approx(ref[f"p{p}_{name}_ms"], rel=1e-9)
    for p in (50, 90, 95, 99):
        assert ours[f"e2e_p{p}_ms"] == pytest.approx(ref[f"p{p}_e2el_ms"], rel=1e-9)
    assert ours["output_tps"] == pytest.approx(ref["output_throughput"], rel=1e-12)
    assert ours["rps"] == pytest.approx(ref["request_throughput"], rel=1e-12)
    assert ours["errors"] == 3
