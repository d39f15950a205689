"""A request's output, fingerprinted: a digest of the whole output and a bounded list of
prefix hashes, so that two runs of the same greedy workload can say whether an answer
changed and from which position (``verdict/outputs.py`` compares them).

The fingerprint is taken over *units*: the output token ids where the engine has them
(llama.cpp and vLLM in-process: the sampled ids), else the output text's characters
(servers stream text; the position of a divergence is then a character offset).

The prefix hashes (``marks``) are taken every ``step`` units, where ``step`` is the
smallest power of two that keeps them at most ``MAX_MARKS``: an answer of up to 256 units
gives one per unit (the divergence position is exact), a longer one a position to within
``step`` units. A power of two on both sides means the coarser side's positions are a subset
of the finer side's, so answers of different lengths still compare. Pure, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

MAX_MARKS = 256
TOKENS, CHARS = "tokens", "chars"
_DIGEST_BYTES = 8  # 16 hex digits: the whole output
_MARK_BYTES = 4  # 32 bits per prefix hash


@dataclass(frozen=True)
class OutputPrint:
    """One output's fingerprint: ``digest`` of all ``units`` (``basis``: what a unit is),
    ``marks[j]`` the hash of the first ``(j + 1) * step_for(units)`` units."""

    digest: str
    basis: str
    units: int
    marks: tuple[int, ...]


def step_for(units: int) -> int:
    """The smallest power of two that keeps ``units // step`` at most ``MAX_MARKS``."""
    step = 1
    while units // step > MAX_MARKS:
        step *= 2
    return step


def fingerprint(units: Sequence[int], basis: str) -> OutputPrint:
    """The fingerprint of ``units`` (token ids or character code points)."""
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES, person=basis.encode()[:16])
    step = step_for(len(units))
    marks: list[int] = []
    for i, unit in enumerate(units, 1):
        h.update(int(unit).to_bytes(4, "little", signed=True)
                 if -(1 << 31) <= unit < (1 << 31) else str(unit).encode())
        if i % step == 0:
            marks.append(int.from_bytes(h.copy().digest()[:_MARK_BYTES], "little"))
    return OutputPrint(h.hexdigest(), basis, len(units), tuple(marks))


def of_output(token_ids: Sequence[int] | None, text: str) -> OutputPrint | None:
    """The fingerprint of one answer: of its token ids when known, else of its text (None
    when there is neither, e.g. an engine that reports only counts)."""
    if token_ids is not None:
        return fingerprint(token_ids, TOKENS)
    if text:
        return fingerprint([ord(c) for c in text], CHARS)
    return None
