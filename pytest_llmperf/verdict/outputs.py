"""Did the outputs change? Request by request, the fingerprints of two runs of the same
workload (``run/fingerprint.py``: taken under greedy decoding) compared: how many answers
changed and at which position the first divergence is.

Request ``i`` of the baseline and request ``i`` of the current run are the same prompt (the
workload is seeded), so records are matched by their ``index`` (warm-up requests, failed
ones and those without a fingerprint are left out). Every current run is compared with the
baseline's first run: a request changed when its answer differs in any of them. Pure, reads
plain dicts (stored samples are a trust boundary: what is not of the right shape is skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..run.fingerprint import CHARS, step_for

SHOWN = 5  # changed requests listed by index in the comparison
UNIT_WORDS = {"tokens": "token", "chars": "character"}


@dataclass(frozen=True)
class Divergence:
    """Where request ``index``'s answers first differ: the first differing unit (0-based)
    lies in ``[start, end)``; ``end == start + 1`` when the position is exact."""

    index: int
    start: int
    end: int

    def where(self, basis: str) -> str:
        unit = UNIT_WORDS.get(basis, "unit")
        if self.end - self.start <= 1:
            return f"{unit} {self.start}"
        return f"{unit}s {self.start}-{self.end - 1}"


@dataclass
class OutputsComparison:
    """How many of the compared requests' outputs changed, and where the first divergence
    is. ``compared == 0``: nothing to compare (``note`` says why)."""

    compared: int = 0
    changed: int = 0
    basis: str | None = None
    divergences: list[Divergence] = field(default_factory=list)  # by request index
    note: str = ""
    # Requests whose answers differ between the current runs themselves (repeats): greedy
    # decoding is not deterministic on this engine and load (e.g. vLLM's batching).
    unstable: int = 0

    @property
    def first(self) -> Divergence | None:
        """The earliest divergence (by position, then request)."""
        return min(self.divergences, key=lambda d: (d.start, d.index), default=None)

    def describe(self) -> str:
        """One line, e.g. ``outputs: 3 of 16 requests changed (first divergence at token 5,
        request 2; requests 2, 7, 9)``."""
        if not self.compared:
            return f"outputs: not compared ({self.note})"
        if not self.changed:
            return (f"outputs: all {self.compared} requests unchanged{self._unstable()}"
                    f"{self._basis_note()}")
        first = self.first
        assert first is not None and self.basis is not None
        shown = ", ".join(str(d.index) for d in sorted(self.divergences,
                                                       key=lambda d: d.index)[:SHOWN])
        more = f", and {self.changed - SHOWN} more" if self.changed > SHOWN else ""
        return (f"outputs: {self.changed} of {self.compared} requests changed (first "
                f"divergence at {first.where(self.basis)}, request {first.index}; "
                f"request(s) {shown}{more}){self._unstable()}{self._basis_note()}")

    def _unstable(self) -> str:
        if not self.unstable:
            return ""
        return (f"; {self.unstable} request(s) differ between this test's own runs: greedy "
                "answers are not deterministic here")

    def _basis_note(self) -> str:
        return " [text compared: the engine streams text]" if self.basis == CHARS else ""

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "compared": self.compared, "changed": self.changed, "basis": self.basis,
            "first_divergence": None if first is None else first.start,
            "first_divergence_end": None if first is None else first.end,
            "first_request": None if first is None else first.index,
            "changed_requests": sorted(d.index for d in self.divergences)[:SHOWN * 4],
            "unstable": self.unstable, "note": self.note, "summary": self.describe(),
        }


@dataclass(frozen=True)
class _Print:
    digest: str
    basis: str
    units: int
    marks: tuple[int, ...]


def _print_of(sample: Any) -> tuple[int, _Print] | None:
    if not isinstance(sample, Mapping) or sample.get("warmup") or sample.get("error"):
        return None
    index, digest, basis = sample.get("index"), sample.get("output_digest"), sample.get(
        "output_basis")
    units, marks = sample.get("output_units"), sample.get("output_marks")
    if not (isinstance(index, int) and isinstance(digest, str) and isinstance(basis, str)
            and isinstance(units, int) and isinstance(marks, list)
            and all(isinstance(m, int) for m in marks)):
        return None
    return index, _Print(digest, basis, units, tuple(marks))


def prints(run: Mapping[str, Any]) -> dict[int, _Print]:
    """A run's fingerprints by request index."""
    out: dict[int, _Print] = {}
    samples = run.get("samples")
    for sample in samples if isinstance(samples, list) else ():
        found = _print_of(sample)
        if found is not None:
            out.setdefault(found[0], found[1])
    return out


def divergence(a: _Print, b: _Print) -> tuple[int, int] | None:
    """Where two answers first differ, as ``[start, end)`` in units (None: the same)."""
    if a.digest == b.digest and a.units == b.units:
        return None
    sa, sb = step_for(a.units), step_for(b.units)
    step = max(sa, sb)
    # Positions (in units) where both sides have a prefix hash: multiples of the coarser step.
    ka, kb = step // sa, step // sb
    n = min(len(a.marks) // ka, len(b.marks) // kb)
    for j in range(n):
        if a.marks[(j + 1) * ka - 1] != b.marks[(j + 1) * kb - 1]:
            return j * step, (j + 1) * step
    same = n * step  # the first ``same`` units agree
    shorter = min(a.units, b.units)
    if same >= shorter:  # one answer is a prefix of the other: they part where it ends
        return shorter, shorter + 1
    return same, shorter + (1 if a.units != b.units else 0)


def compare(baseline_runs: Sequence[Mapping[str, Any]],
            current_runs: Sequence[Mapping[str, Any]]) -> OutputsComparison:
    """Every current run's answers against the baseline's first run, request by request."""
    if not baseline_runs or not current_runs:
        return OutputsComparison(note="no runs on one side")
    base = prints(baseline_runs[0])
    currents = [prints(r) for r in current_runs]
    if not base or not any(currents):
        side = "the baseline" if not base else "this run"
        return OutputsComparison(note=f"{side} has no output fingerprints (they are taken "
                                      "with greedy decoding, temperature 0; a baseline saved "
                                      "before they existed has none)")
    out = OutputsComparison()
    found: dict[int, Divergence] = {}
    seen: set[int] = set()
    for cur in currents:
        for index, b in cur.items():
            a = base.get(index)
            if a is None:
                continue
            if a.basis != b.basis:
                return OutputsComparison(note=f"the baseline fingerprinted {a.basis}, this "
                                              f"run {b.basis}: not comparable")
            out.basis = a.basis
            seen.add(index)
            where = divergence(a, b)
            if where is not None:
                prior = found.get(index)
                if prior is None or where[0] < prior.start:
                    found[index] = Divergence(index, *where)
    out.compared = len(seen)
    out.changed = len(found)
    out.unstable = sum(1 for index in seen
                       if len({(c[index].digest, c[index].units) for c in currents
                               if index in c}) > 1)
    out.divergences = sorted(found.values(), key=lambda d: d.index)
    if not out.compared:
        out.note = "no request index in common"
    return out


def changed_failure_text(outputs: Mapping[str, Any]) -> str | None:
    """The ``same_outputs=True`` failure's text for a stored comparison's ``outputs`` (None:
    none changed, or nothing compared)."""
    changed = outputs.get("changed")
    if not isinstance(changed, int) or changed <= 0:
        return None
    return str(outputs.get("summary") or f"outputs: {changed} requests changed")
