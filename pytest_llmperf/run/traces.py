"""Trace replay, part 1: a trace file read into entries, and the Workload's trace fields
checked (``check_trace_fields``) where they enter.

A trace is a list of requests as a production service saw them: when each arrived
(``timestamp_ms``), how long its prompt was (``input_length``, special tokens included) and
its answer (``output_length``), and, for Mooncake traces, the prompt's blocks as ``hash_ids``
(run/trace_prompts.py turns them into shared token blocks). Formats (``trace_format=``):

- ``"mooncake"``: JSONL, ``{"timestamp": ms, "input_length": n, "output_length": n,
  "hash_ids": [int, ...]}`` per line (Mooncake's published traces);
- ``"jsonl"``: the same without ``hash_ids``;
- ``"burstgpt"``: BurstGPT's CSV, header ``Timestamp,Model,Request tokens,Response
  tokens,Total tokens,Log Type`` (``Timestamp`` in seconds; extra columns such as
  ``Session ID`` are ignored);
- ``"azure"``: the Azure LLM inference trace CSV, header
  ``TIMESTAMP,ContextTokens,GeneratedTokens`` (``TIMESTAMP`` a date and time such as
  ``2023-11-16 18:15:46.6805900``, read as UTC).

None (the default) detects the format from the content: a JSON object whose first line has
``hash_ids`` is Mooncake, else plain JSONL; a CSV header with ``Request tokens`` is BurstGPT,
with ``ContextTokens`` Azure. Rows of the CSV logs with 0 request or response tokens (failed
requests, which both logs keep) are skipped; in the JSONL formats they are an error. Every bad
line is one ``WorkloadError`` ``file:line: field ...``; timestamps must not go back (a trace
is replayed in its order). The file is bounded (``limits.TRACE_BYTES``, entries by
``limits.REQUESTS``, lengths by ``limits.TOKENS``). Pure but for reading the file (cached by
path, size and modification time).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import limits
from ..values import is_finite_number, show
from .workload_error import WorkloadError

if TYPE_CHECKING:
    from .workload import Workload

TRACE_FORMATS: tuple[str, ...] = ("mooncake", "jsonl", "burstgpt", "azure")
_CSV_COLUMNS: dict[str, tuple[str, str, str]] = {  # timestamp, input, output
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
}
_AZURE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?$")


@dataclass(frozen=True)
class TraceEntry:
    """One request of a trace: when it arrived (ms, the trace's own origin), its prompt and
    answer lengths in tokens, its prompt's block hash ids (Mooncake) or None, and the line
    of the file it came from (for messages)."""

    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...] | None
    line: int


def _whole(where: str, field: str, value: Any, minimum: int,
           limit: limits.Limit = limits.TOKENS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkloadError(f"{where}: field {field}={show(value)} must be a whole number "
                            f">= {minimum}")
    problem = limit.problem(f"{where}: field {field}", value)
    if problem:
        raise WorkloadError(problem)
    return value


def _time(where: str, field: str, value: Any, scale: float) -> float:
    if not is_finite_number(value) or value < 0:
        raise WorkloadError(f"{where}: field {field}={show(value)} must be a finite number "
                            ">= 0")
    return float(value) * scale


def detect_format(text: str, name: str) -> str:
    """The format of a trace's ``text`` (see the module docstring), or a WorkloadError
    naming the file and the formats."""
    first = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    if first.startswith("{"):
        try:
            data = json.loads(first)
        except (json.JSONDecodeError, RecursionError):
            data = None
        return "mooncake" if isinstance(data, Mapping) and "hash_ids" in data else "jsonl"
    header = {c.strip() for c in first.split(",")}
    for fmt, (_, inp, _) in _CSV_COLUMNS.items():
        if inp in header:
            return fmt
    raise WorkloadError(
        f"{name}: cannot tell the trace's format from its first line {show(first, 60)}; give "
        f"trace_format= one of {', '.join(TRACE_FORMATS)}")


def parse_trace(text: str, name: str, trace_format: str | None = None) -> list[TraceEntry]:
    """The entries of a trace's ``text`` (``name``: the file, for messages), in file order."""
    fmt = trace_format or detect_format(text, name)
    if fmt not in TRACE_FORMATS:
        raise WorkloadError(f"trace_format={fmt!r} is not one of {', '.join(TRACE_FORMATS)}")
    try:
        entries = (_parse_jsonl(text, name, fmt) if fmt in ("mooncake", "jsonl")
                   else _parse_csv(text, name, fmt))
    except WorkloadError as exc:  # say which format the line was read as, and why
        how = "detected from the file" if trace_format is None else "as asked"
        article = "an" if fmt[0] in "aeiou" else "a"
        raise WorkloadError(f"{exc} [read as {article} {fmt} trace, {how}]") from None
    if not entries:
        raise WorkloadError(f"{name}: no requests in the trace ({fmt})")
    for before, entry in itertools.pairwise(entries):
        if entry.timestamp_ms < before.timestamp_ms:
            raise WorkloadError(
                f"{name}:{entry.line}: field timestamp goes back ({entry.timestamp_ms:g} ms "
                f"after {before.timestamp_ms:g} ms on line {before.line}): a trace is "
                "replayed in its order; sort it by time")
    return entries


def _count(name: str, entries: Sequence[TraceEntry]) -> None:
    problem = limits.REQUESTS.problem(f"{name}: entries", len(entries) + 1)
    if problem:
        raise WorkloadError(problem)


def _parse_jsonl(text: str, name: str, fmt: str) -> list[TraceEntry]:
    entries: list[TraceEntry] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise WorkloadError(f"{where}: not valid JSON (nested too deeply)") from None
        if not isinstance(data, Mapping):
            raise WorkloadError(f"{where}: expected a JSON object")
        for key in ("timestamp", "input_length", "output_length"):
            if key not in data:
                raise WorkloadError(f"{where}: field {key} is missing")
        hash_ids: tuple[int, ...] | None = None
        if fmt == "mooncake":
            raw = data.get("hash_ids")
            if not isinstance(raw, list):
                raise WorkloadError(f"{where}: field hash_ids={show(raw)} must be a list of "
                                    "whole numbers")
            problem = limits.TOKENS.problem(f"{where}: field hash_ids length", len(raw))
            if problem:
                raise WorkloadError(problem)
            hash_ids = tuple(_whole(where, f"hash_ids[{i}]", h, 0, limits.SEED)
                             for i, h in enumerate(raw))
        elif "hash_ids" in data:
            raise WorkloadError(f"{where}: field hash_ids is not part of a plain jsonl trace; "
                                "give trace_format='mooncake'")
        _count(name, entries)
        entries.append(TraceEntry(
            timestamp_ms=_time(where, "timestamp", data["timestamp"], 1.0),
            input_length=_whole(where, "input_length", data["input_length"], 1),
            output_length=_whole(where, "output_length", data["output_length"], 1),
            hash_ids=hash_ids, line=lineno))
    return entries


def _azure_ms(where: str, field: str, value: str) -> float:
    match = _AZURE_TIME.match(value.strip())
    if not match:
        raise WorkloadError(f"{where}: field {field}={show(value)} is not a date and time "
                            "such as 2023-11-16 18:15:46.6805900")
    day, clock, fraction, zone = match.groups()
    stamp = f"{day}T{clock}"
    if zone:
        stamp += "+00:00" if zone == "Z" else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise WorkloadError(f"{where}: field {field}={show(value)}: {exc}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1e3 + (float("0." + fraction) * 1e3 if fraction else 0.0)


def _csv_int(where: str, field: str, value: str) -> int:
    text = value.strip()
    try:
        number = float(text) if "." in text or "e" in text.lower() else int(text)
    except ValueError:
        raise WorkloadError(f"{where}: field {field}={show(value)} is not a number") from None
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            raise WorkloadError(f"{where}: field {field}={show(value)} must be a whole number")
        number = int(number)
    return _whole(where, field, number, 0)


def _parse_csv(text: str, name: str, fmt: str) -> list[TraceEntry]:
    time_col, in_col, out_col = _CSV_COLUMNS[fmt]
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    at: list[int] = []  # the three columns' places, from the header
    entries: list[TraceEntry] = []
    try:
        for row in rows:
            lineno = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                missing = [c for c in (time_col, in_col, out_col) if c not in header]
                if missing:
                    raise WorkloadError(
                        f"{name}:{lineno}: the header has no column {', '.join(missing)} "
                        f"(it needs {time_col}, {in_col}, {out_col}); it has "
                        f"{show(', '.join(header), 80)}")
                at = [header.index(c) for c in (time_col, in_col, out_col)]
                continue
            where = f"{name}:{lineno}"
            if len(row) < len(header):
                raise WorkloadError(f"{where}: {len(row)} columns, the header has "
                                    f"{len(header)}")
            stamp, inp, out = (row[i] for i in at)
            if fmt == "azure":
                ms = _azure_ms(where, time_col, stamp)
            else:
                try:
                    seconds = float(stamp)
                except ValueError:
                    raise WorkloadError(f"{where}: field {time_col}={show(stamp)} is not a "
                                        "number (seconds)") from None
                ms = _time(where, time_col, seconds, 1e3)
            n_in, n_out = _csv_int(where, in_col, inp), _csv_int(where, out_col, out)
            if n_in == 0 or n_out == 0:  # a failed request of the log: nothing to replay
                continue
            _count(name, entries)
            entries.append(TraceEntry(ms, n_in, n_out, None, lineno))
    except csv.Error as exc:
        raise WorkloadError(f"{name}:{rows.line_num}: not valid CSV ({exc})") from None
    return entries


def read_trace(path: str | os.PathLike[str], trace_format: str | None = None
               ) -> list[TraceEntry]:
    """The entries of the trace file at ``path`` (UTF-8), checked (module docstring)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise WorkloadError(f"{p}: cannot read the trace ({exc.strerror or exc})") from None
    problem = limits.TRACE_BYTES.problem(f"{p}: size", st.st_size)
    if problem:
        raise WorkloadError(problem)
    return list(_read_cached(str(p), trace_format, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, trace_format: str | None, size: int, mtime_ns: int
                 ) -> tuple[TraceEntry, ...]:
    try:
        data = Path(path).read_bytes()[: limits.TRACE_BYTES.maximum + 1]
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read the trace ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise WorkloadError(f"{path}:{lineno}: not UTF-8 text (byte 0x{data[exc.start]:02x})"
                            ) from None
    return tuple(parse_trace(text, path, trace_format))


def trace_entries(workload: Workload) -> list[TraceEntry]:
    """The entries a workload replays: the first ``requests`` of its trace."""
    assert workload.trace is not None
    return read_trace(workload.trace, workload.trace_format)[: workload.requests]


def trace_offsets_s(workload: Workload, n: int) -> list[float]:
    """Open-loop send times (s from the start) of the first ``n`` replayed entries: the
    trace's own, from its first replayed entry, divided by ``trace_speedup``."""
    entries = trace_entries(workload)[:n]
    origin = entries[0].timestamp_ms if entries else 0.0
    return [(e.timestamp_ms - origin) / 1e3 / workload.trace_speedup for e in entries]


def check_trace_fields(workload: Workload) -> None:
    """The trace fields of a Workload (``trace``, ``trace_format``, ``trace_speedup``,
    ``trace_block_size``), checked as the others are; with a trace, the file is read and
    checked too, and the fields that do not combine with it refused."""
    w = workload
    if w.trace_format is not None and w.trace_format not in TRACE_FORMATS:
        raise WorkloadError(f"Workload.trace_format={show(w.trace_format)} must be one of "
                            f"{', '.join(TRACE_FORMATS)} (or None: detected from the file)")
    speed = w.trace_speedup
    if not is_finite_number(speed) or not speed > 0:
        raise WorkloadError(f"Workload.trace_speedup={show(speed)} must be a finite number > 0")
    problem = limits.RATE.problem("Workload.trace_speedup", speed)
    if problem:
        raise WorkloadError(problem)
    block = w.trace_block_size
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise WorkloadError(f"Workload.trace_block_size={show(block)} must be a whole number "
                            ">= 1")
    problem = limits.TOKENS.problem("Workload.trace_block_size", block)
    if problem:
        raise WorkloadError(problem)
    if w.trace is None:
        return
    if not isinstance(w.trace, str | os.PathLike):
        raise WorkloadError(f"Workload.trace={show(w.trace)} must be a path to a trace file")
    if not Path(w.trace).is_file():
        raise WorkloadError(f"Workload.trace {str(w.trace)!r} does not exist")
    for name, given in (("rate", w.rate is not None), ("prompts_file", w.prompts_file),
                        ("shared_prefix_tokens", w.shared_prefix_tokens),
                        ("turns / conversations_file", w.multi_turn)):
        if given:
            raise WorkloadError(f"Workload.trace and Workload.{name} cannot be combined: the "
                                "trace gives the arrivals and the prompts")
    entries = read_trace(w.trace, w.trace_format)
    if w.requests > len(entries):
        raise WorkloadError(
            f"Workload.requests={w.requests:,} is more than the trace's {len(entries):,} "
            f"requests ({w.trace}); give requests={len(entries)} to replay all of it")
    used = entries[: w.requests]
    tokens = sum(e.input_length for e in used) + sum(
        entries[i % len(entries)].input_length for i in range(w.warmup))
    problem = limits.PROMPT_TOKENS.problem(
        f"Workload: the trace's first {w.requests:,} prompts (and {w.warmup} warm-up) tokens",
        tokens)
    if problem:
        raise WorkloadError(problem)
