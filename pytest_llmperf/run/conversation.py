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
per-turn TTFT and per-session figures (``metrics.session_summary``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..engines.base import Engine, Generation, GenerationParams, OnChunk
from .metrics import RequestRecord
from .workload import (
    Prompt,
    Tokenizer,
    Workload,
    WorkloadError,
    _fit_text,
    _number,
    _read_lines,
    _whole,
    token_pool,
)

if TYPE_CHECKING:
    from .loadgen import LoadResult, Progress, Window

HUMAN_ROLES = ("human", "user")
# Seeds of the synthetic user messages and of the think times (apart from other streams).
_MESSAGE_STREAM = 104_729
_THINK_STREAM = 15_485_863


def check_multi_turn(w: Workload) -> None:
    """The multi-turn fields of a workload, checked where they enter (``WorkloadError``)."""
    if w.turns is not None:
        _whole("Workload.turns", w.turns, 1)
    think = w.think_time_s
    if isinstance(think, list | tuple):
        if len(think) != 2:
            raise WorkloadError(f"Workload.think_time_s={think!r} must be seconds or "
                                "[low, high] (a seeded uniform draw)")
        low = _number("Workload.think_time_s[0]", think[0], at_least=0, unit=" (s)")
        high = _number("Workload.think_time_s[1]", think[1], at_least=0, unit=" (s)")
        if low > high:
            raise WorkloadError(f"Workload.think_time_s={list(think)!r}: low must be <= high")
    else:
        _number("Workload.think_time_s", think, at_least=0, unit=" (s)")
    if w.conversations_file is not None:
        if not isinstance(w.conversations_file, str | os.PathLike):
            raise WorkloadError(f"Workload.conversations_file={w.conversations_file!r} must "
                                "be a path to a JSONL file")
        if not Path(w.conversations_file).is_file():
            raise WorkloadError(f"Workload.conversations_file {str(w.conversations_file)!r} "
                                "does not exist")
    if not w.multi_turn:
        if think not in (0, 0.0):
            raise WorkloadError("Workload.think_time_s is for multi-turn sessions: give turns "
                                "or a conversations_file")
        return
    if w.prompts_file is not None:
        raise WorkloadError("Workload.prompts_file and multi-turn sessions (turns / "
                            "conversations_file) cannot be combined: give one")
    if w.shared_prefix_tokens:
        raise WorkloadError("Workload.shared_prefix_tokens does not apply to multi-turn "
                            "sessions (each session's history is its shared prefix)")


def load_conversations(path: str | os.PathLike[str], turns: int | None) -> list[list[str]]:
    """The human turns of each conversation of a ShareGPT-style JSONL file (at most
    ``turns`` each); WorkloadError naming the file and line of anything else."""
    where = Path(path)
    out: list[list[str]] = []
    for lineno, line in enumerate(_read_lines(where), 1):
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
        for k in range(turns):
            rng = np.random.default_rng([workload.seed, _MESSAGE_STREAM, s, k])
            text, _ = _fit_text(tok, rng, pool, [], workload.input_tokens, 0)
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
                   tick: Any, deadline: int | None, due_ns: int | None = None,
                   dispatch_ns: dict[int, int] | None = None,
                   slot: asyncio.Semaphore | None = None) -> None:
    """One session's turns. Open loop: ``due_ns`` is when it was due to start (its first
    turn's schedule), ``dispatch_ns`` gets when it did, and ``slot`` caps sessions in
    flight (the wait for it shows as the first turn's queueing)."""
    from .loadgen import _one, _params

    if dispatch_ns is not None:
        dispatch_ns[base] = time.perf_counter_ns()  # started; its first turn may wait for a slot
    if slot is not None:
        async with slot:
            await _session(engine, tok, workload, s, users, base, records, t0, tick, deadline,
                           due_ns)
        return

    capture = _Capture(engine)
    pauses = think_times(workload, s, len(users) - 1)
    text = ""
    messages: list[tuple[str, str]] = []
    for k, user in enumerate(users, 1):
        if k > 1:
            await asyncio.sleep(pauses[k - 2])
        if deadline is not None and time.perf_counter_ns() >= deadline:
            return
        text = f"{text}\n{user}" if text else user
        messages.append(("user", user))
        ids = await asyncio.to_thread(tok.tokenize, text) if tok is not None else None
        prompt = turn_prompt(text, messages, ids, workload.output_tokens)
        record = RequestRecord(index=base + k - 1, prompt_tokens=prompt.input_tokens,
                               warmup=s < workload.warmup, session=s, turn=k)
        if k == 1 and due_ns is not None:
            record.scheduled_ns = due_ns - t0
        records.append(record)
        await _one(cast(Engine, capture), prompt, _params(workload, prompt), record, t0)
        if tick is not None:
            tick()
        if capture.last is None:  # no answer: the conversation cannot go on
            return
        text += capture.last.text
        messages.append(("assistant", capture.last.text))


async def _sessions(engine: Engine, tok: Tokenizer | None, workload: Workload,
                    users: Sequence[Sequence[str]], bases: Sequence[int], ids: Sequence[int],
                    concurrency: int, records: list[RequestRecord], t0: int, tick: Any,
                    deadline: int | None) -> None:
    from .loadgen import drain

    async def session(s: int) -> None:
        await _session(engine, tok, workload, s, users[s], bases[s], records, t0, tick,
                       deadline)

    await drain(ids, concurrency, deadline, session)


async def _arriving_sessions(engine: Engine, tok: Tokenizer | None, workload: Workload,
                             users: Sequence[Sequence[str]], bases: Sequence[int],
                             ids: Sequence[int], offsets: Sequence[float], cap: int | None,
                             records: list[RequestRecord], t0: int, tick: Any,
                             deadline: int | None, dispatch_ns: dict[int, int]) -> None:
    """Open loop: session ``ids[j]`` starts ``offsets[j]`` s after now, at most ``cap`` in
    flight (None: no cap)."""
    from .loadgen import arrive

    slot = asyncio.Semaphore(cap) if cap else None

    async def session(s: int, due_ns: int) -> None:
        await _session(engine, tok, workload, s, users[s], bases[s], records, t0, tick,
                       deadline, due_ns, dispatch_ns, slot)

    await arrive(ids, offsets, deadline, session)


async def run_sessions(engine: Engine, workload: Workload, progress: Progress | None = None,
                       *, window: Window | None = None) -> LoadResult:
    """Warm-up sessions (unmeasured, closed loop), then the measured ones, ``concurrency`` at
    a time, or arriving at ``rate`` sessions per second."""
    from .loadgen import _finish, _LagMonitor, counter, effective_concurrency, open_loop_cap
    from .workload import arrival_offsets_s

    tok = engine.tokenizer
    users = session_messages(tok, workload)
    bases = [0]
    for msgs in users:
        bases.append(bases[-1] + len(msgs))
    concurrency, warning = effective_concurrency(engine, workload)
    warnings = [warning] if warning else []
    warm = list(range(workload.warmup))
    measured = list(range(workload.warmup, len(users)))
    total = sum(len(users[s]) for s in measured)
    tick = counter(progress, total)
    records: list[RequestRecord] = []
    dispatch_ns: dict[int, int] = {}  # open loop: when each session's first turn was started
    t0 = time.perf_counter_ns()
    monitor = _LagMonitor()
    async with engine.run_context():
        monitor.start()
        await _sessions(engine, tok, workload, users, bases, warm, concurrency, records, t0,
                        None, None)
        if window is not None:
            window[0]()
        measure_start = time.perf_counter_ns()
        deadline = (measure_start + int(workload.duration_s * 1e9)
                    if workload.duration_s else None)
        offsets = arrival_offsets_s(workload, len(measured))
        if offsets is None:
            await _sessions(engine, tok, workload, users, bases, measured, concurrency,
                            records, t0, tick, deadline)
        else:
            await _arriving_sessions(engine, tok, workload, users, bases, measured, offsets,
                                     open_loop_cap(engine, workload, concurrency), records,
                                     t0, tick, deadline, dispatch_ns)
        measure_end = time.perf_counter_ns()
        if window is not None:
            window[1]()
        await monitor.stop()
    records.sort(key=lambda r: r.index)
    return _finish(workload, concurrency, warnings, t0, records, total, measure_start,
                   measure_end, dispatch_ns, monitor.summary(),
                   {"sessions": len(measured), "session_turns": total},
                   arrivals=lambda r: r.turn == 1)  # a rate counts sessions
