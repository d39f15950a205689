"""Embedding requests (issue 24, item 6): one request of an ``embeddings=True`` workload.

An embedding answer is not streamed: the client sees one piece, the whole answer. Its record
(``RequestRecord`` with ``embedding=True``) holds the send time, one chunk at the answer's
arrival carrying 0 tokens, and the engine's input token count as ``prompt_tokens``, so that:

- E2E (last chunk minus send) is the request's latency, the figure vLLM's ``bench serve``
  and aiperf report for embeddings;
- requests/s and input tokens/s come out of the summary as for generations;
- TTFT, TPOT and ITL are None (not 0): an embedding has no first or next token; output
  tokens/s is None too (run/metrics.py).

A failed request is recorded and counted as a generation's is (``error``, ``error_kind``).
Generation requests do not come here (run/schedule.py ``send_one``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..engines.base import Engine, EngineError, Prompt
from .metrics import RequestRecord
from .schedule import failure_recorded


def embeddings_problem(engine: Engine) -> str | None:
    """Why ``engine`` cannot run an embeddings workload, in one line (None when it can)."""
    if engine.has_embeddings:
        return None
    return (engine.embeddings_problem()
            or f"the {engine.kind!r} engine does not serve embeddings")


def check_engine(engine: Engine) -> None:
    """EngineError (one line) when the engine cannot serve an embeddings workload."""
    problem = embeddings_problem(engine)
    if problem:
        raise EngineError(f"Workload(embeddings=True): {problem}")


def slo_problem(slo: Mapping[str, object] | None) -> str | None:
    """Why an SLO cannot judge embedding requests (None when it can): only whole-request
    latency applies (``e2e_ms``, or E2E percentiles such as ``e2e_p95_ms``); None (no SLO
    given) is a problem too, since the default SLO bounds TTFT and TPOT."""
    advice = "give slo={'e2e_ms': ...} or E2E percentiles such as e2e_p95_ms"
    if slo is None:
        return f"an embeddings workload has no TTFT or TPOT, which the default SLO bounds: {advice}"
    bad = sorted(str(k) for k in slo if not str(k).startswith("e2e_"))
    if not bad:
        return None
    return f"an embeddings workload has no TTFT or TPOT ({', '.join(bad)}): {advice}"


async def send_embedding(engine: Engine, prompt: Prompt, record: RequestRecord, t0: int
                         ) -> None:
    """Send one embedding request and fill its record (times relative to ``t0``): the send
    time, the answer's arrival as one chunk of 0 tokens, the engine's input count, or why it
    failed (a run never crashes on one bad request)."""
    record.embedding = True
    record.output_tokens = 0
    record.send_ns = time.perf_counter_ns() - t0
    done = None
    try:
        with failure_recorded(record):
            done = await engine.embed(prompt)
    finally:
        record.done_ns = time.perf_counter_ns() - t0
    if done is not None:
        if done.sent_ns is not None:  # when the request's bytes left (an HTTP client)
            record.send_ns = done.sent_ns - t0
        # The answer's arrival: the engine's stamp, else the call's return (done_ns).
        record.chunk_ns.append(done.done_ns - t0 if done.done_ns is not None
                               else record.done_ns)
        record.chunk_tokens.append(0)
        if done.input_tokens > 0:
            record.prompt_tokens = done.input_tokens
        if done.dimensions < 1:
            record.error, record.error_kind = "the answer holds no embedding", "empty"
