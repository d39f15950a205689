"""Multi-turn sessions: each turn sends the conversation so far plus a new user message.

A workload with ``turns`` or a ``conversations_file`` (``Workload.multi_turn``) runs sessions
instead of independent requests. ``concurrency`` sessions are in flight (closed loop), or with
``rate`` new sessions start at that many per second (open loop: the ``arrival`` process,
seeded, as for requests; ``concurrency`` > 1 then caps the sessions in flight); a session's
turn k sends its earlier user messages and the model's own answers to them, then the k-th
user message, and waits ``think_time_s`` after each answer before its next turn.

User messages are synthetic (``input_tokens`` tokens each, exact, drawn with the engine's
tokenizer like the single-turn prompts, seeded by session and turn) or the human turns of a
ShareGPT-style JSONL file (``{"conversations": [{"from": "human", "value": ...}, {"from":
"gpt", ...}, ...]}``, one conversation a line, cycled over the sessions; the file's own
answers are not used: the model's answers form the history).

Every prompt carries both forms (``Prompt.messages`` and ``Prompt.text``): an engine with a
chat endpoint sends the messages (its server applies the chat template); a completion engine
sends the plain text, the turns joined in order (each answer directly after the prompt that
produced it, so the new prompt extends the tokens the engine already has in its cache, and a
newline before each new user message). No engine here exposes a chat template for its
completion path, so none is applied.

Every request record carries its ``session`` and ``turn`` (from 1); the summary gains the
per-turn TTFT and per-session figures (``metrics.session_summary``). Each session is a job of
the scheduler core (run/schedule.py), as each single request is.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

from ..engines.base import Engine, Generation, GenerationParams, OnChunk, Prompt, Tokenizer
from ..engines.vocabulary import token_pool
from .metrics import RequestRecord
from .schedule import (
    LoadResult,
    Phase,
    Progress,
    Schedule,
    Window,
    counter,
    generation_params,
    send_one,
)
from .workload import (
    INPUT_STREAM,
    OUTPUT_STREAM,
    Workload,
    WorkloadError,
    fit_text,
    read_lines,
)

HUMAN_ROLES = ("human", "user")
# Seeds of the synthetic user messages and of the think times (apart from other streams).
_MESSAGE_STREAM = 104_729
_THINK_STREAM = 15_485_863


def load_conversations(path: str | os.PathLike[str], turns: int | None) -> list[list[str]]:
    """The human turns of each conversation of a ShareGPT-style JSONL file (at most
    ``turns`` each); WorkloadError naming the file and line of anything else."""
    where = Path(path)
    out: list[list[str]] = []
    for lineno, line in enumerate(read_lines(where), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise WorkloadError(f"{where}:{lineno}: not valid JSON") from None
        turns_list = data.get("conversations") if isinstance(data, Mapping) else None
        if not isinstance(turns_list, list):
            raise WorkloadError(f'{where}:{lineno}: expected an object with a "conversations" '
                                'list of {"from": ..., "value": ...} turns')
        users: list[str] = []
        for i, turn in enumerate(turns_list):
            role = turn.get("from", turn.get("role")) if isinstance(turn, Mapping) else None
            text = turn.get("value", turn.get("content")) if isinstance(turn, Mapping) else None
            if not isinstance(role, str) or not isinstance(text, str):
                raise WorkloadError(f'{where}:{lineno}: conversations[{i}] must be an object '
                                    'with "from" and "value" strings')
            if role.lower() in HUMAN_ROLES:
                users.append(text)
        if not users:
            raise WorkloadError(f'{where}:{lineno}: the conversation has no "human" turn')
        out.append(users[:turns] if turns is not None else users)
    if not out:
        raise WorkloadError(f"{where}: no conversations in file")
    return out


def session_messages(tok: Tokenizer | None, workload: Workload) -> list[list[str]]:
    """Each session's user messages (warm-up sessions first), deterministic for a seed."""
    n = workload.total_requests
    if workload.conversations_file is not None:
        convs = load_conversations(workload.conversations_file, workload.turns)
        return [convs[s % len(convs)] for s in range(n)]
    if tok is None:
        raise WorkloadError("synthetic multi-turn sessions need the engine's tokenizer (user "
                            "messages of an exact token length), and this engine has none; "
                            "give a conversations_file instead")
    import numpy as np

    words = list(tok.word_token_ids()) or token_pool(tok)
    if not words:
        raise WorkloadError("the tokenizer offers no tokens that survive a round trip through "
                            "text; give a conversations_file instead")
    pool = np.asarray(words, dtype=np.int64)
    turns = workload.turns or 1
    out = []
    for s in range(n):
        msgs = []
        # One length per turn: fixed, or drawn from input_tokens' distribution (run/lengths).
        lengths = workload.input_lengths.draw(turns, workload.seed, INPUT_STREAM, s)
        for k in range(turns):
            rng = np.random.default_rng([workload.seed, _MESSAGE_STREAM, s, k])
            text, _ = fit_text(tok, rng, pool, [], lengths[k], 0)
            msgs.append(text)
        out.append(msgs)
    return out


def think_times(workload: Workload, session: int, gaps: int) -> list[float]:
    """The pauses (s) of one session between its turns: fixed, or seeded uniform draws."""
    think = workload.think_time_s
    if not isinstance(think, list | tuple):
        return [float(think)] * gaps
    import numpy as np

    rng = np.random.default_rng([workload.seed, _THINK_STREAM, session])
    return [float(x) for x in rng.uniform(float(think[0]), float(think[1]), size=gaps)]


def turn_prompt(history: str, messages: Sequence[tuple[str, str]], ids: Sequence[int] | None,
                output_tokens: int) -> Prompt:
    """One turn's prompt: the plain text (completion engines) and the messages (chat)."""
    return Prompt(text=history, token_ids=tuple(ids) if ids is not None else None,
                  input_tokens=len(ids) if ids is not None else 0,
                  output_tokens=output_tokens, messages=tuple(messages))


class _Capture:
    """The engine, keeping the answer of its last request (the next turn's history)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last: Generation | None = None

    async def generate(self, prompt: Prompt, params: GenerationParams,
                       on_chunk: OnChunk) -> Generation:
        self.last = None
        self.last = await self.engine.generate(prompt, params, on_chunk)
        return self.last


async def _session(engine: Engine, tok: Tokenizer | None, workload: Workload, s: int,
                   users: Sequence[str], base: int, records: list[RequestRecord], t0: int,
                   phase: Phase, due_ns: int | None) -> None:
    """One session's turns, none started after ``phase.deadline``. Open loop: ``due_ns`` is
    when it was due to start (its first turn's schedule)."""
    capture = _Capture(engine)
    pauses = think_times(workload, s, len(users) - 1)
    answers = workload.output_lengths.draw(len(users), workload.seed, OUTPUT_STREAM, s)
    text = ""
    messages: list[tuple[str, str]] = []
    for k, user in enumerate(users, 1):
        if k > 1:
            await asyncio.sleep(pauses[k - 2])
        if phase.deadline is not None and time.perf_counter_ns() >= phase.deadline:
            return
        text = f"{text}\n{user}" if text else user
        messages.append(("user", user))
        ids = await asyncio.to_thread(tok.tokenize, text) if tok is not None else None
        prompt = turn_prompt(text, messages, ids, answers[k - 1])
        record = RequestRecord(index=base + k - 1, prompt_tokens=prompt.input_tokens,
                               warmup=s < workload.warmup, session=s, turn=k,
                               model=workload.model_of(s))  # a session keeps its model
        if k == 1 and due_ns is not None:
            record.scheduled_ns = due_ns - t0
        records.append(record)
        await send_one(cast(Engine, capture), prompt,
                       generation_params(workload, prompt, record.model), record, t0)
        if phase.tick is not None:
            phase.tick()
        if capture.last is None:  # no answer: the conversation cannot go on
            return
        text += capture.last.text
        messages.append(("assistant", capture.last.text))


async def run_sessions(engine: Engine, workload: Workload, progress: Progress | None = None,
                       *, window: Window | None = None) -> LoadResult:
    """Warm-up sessions (unmeasured, closed loop), then the measured ones, ``concurrency`` at
    a time, or arriving at ``rate`` sessions per second."""
    tok = engine.tokenizer
    users = session_messages(tok, workload)
    bases = [0]
    for msgs in users:
        bases.append(bases[-1] + len(msgs))
    schedule = Schedule(engine, workload)
    warm = list(range(workload.warmup))
    measured = list(range(workload.warmup, len(users)))
    total = sum(len(users[s]) for s in measured)
    records: list[RequestRecord] = []

    async def session(s: int, due_ns: int | None, phase: Phase) -> None:
        await _session(engine, tok, workload, s, users[s], bases[s], records, schedule.t0,
                       phase, due_ns)

    m = await schedule.run(session, warm, measured, counter(progress, total), window)
    # An open loop started sessions: their first turns' records are the ones it dispatched.
    m.dispatch_ns = {bases[s]: t for s, t in m.dispatch_ns.items()}
    records.sort(key=lambda r: r.index)
    return schedule.finish(records, total, m,
                           {"sessions": len(measured), "session_turns": total},
                           arrivals=lambda r: r.turn == 1)  # a rate counts sessions
