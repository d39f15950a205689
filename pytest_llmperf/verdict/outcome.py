"""One test's verdict: its runs against the marker's thresholds, the stored baseline, paired
A/B comparisons and accuracy checks -> the failures (none: the test passes).

Each failure is a ``Failure`` value, made where the failure is found (``thresholds.failure``,
``gate.failure``, ``ABVerdict.failure``, the accuracy checks and the gate's configuration
error here): its kind, its clause of the one-line headline and its detailed text.

No pytest here: the session calls ``judge`` after the test body and fails the test with the
text ``report.junit.failure_text`` renders from the failures. ``thresholds``, ``gate`` and
``ab`` import ``Failure`` from here, so ``judge`` imports ``thresholds`` and ``gate`` when
it runs, not this module when it loads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .failure import Failure
from .gate import GateConfigError
from .gate import failure as gate_failure
from .outputs import changed_failure_text
from .per_model import per_model_checks
from .thresholds import THRESHOLDS, evaluate, failure

if TYPE_CHECKING:
    from ..quality.accuracy import AccuracyRecord
    from ..run.metrics import RunResult
    from .ab import ABVerdict
    from .gate import Gate


@dataclass
class Judgement:
    """What ``judge`` decided: the failures (empty: passed) and the baseline comparison."""

    failures: list[Failure] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    measured: bool = True  # False: no run and no accuracy score (nothing was measured)
    # Per run, the marker's absolute limits checked against it (ThresholdCheck.to_dict()s):
    # the results document carries them as each run's ``client.checks``.
    checks: list[list[dict[str, Any]]] = field(default_factory=list)


def overall_accuracy(records: Sequence[AccuracyRecord]) -> float | None:
    """Accuracy over every item of every task the test scored (None: nothing scored)."""
    n = sum(r.result.n for r in records)
    if not n:
        return None
    return sum(sum(r.result.correct.values()) for r in records) / n


def check_accuracy(records: Sequence[AccuracyRecord], thresholds: Mapping[str, Any],
                   runs: Sequence[RunResult]) -> list[Failure] | None:
    """Put the measured accuracy into every run's summary and check ``max_accuracy_drop``
    (and ``min_accuracy`` when there is no run to carry it). None: nothing was scored."""
    if not records:
        if "max_accuracy_drop" in thresholds:
            text = ("max_accuracy_drop: not measured; call llmperf_accuracy(engine, task) "
                    "with a quantized_model or a reference=")
            return [Failure("accuracy", text, text)] if runs else None
        return None
    accuracy = overall_accuracy(records)
    for run in runs:
        run.summary["accuracy"] = accuracy
        # Per-item correctness is kept, so a later run can be compared item by item.
        run.client["accuracy"] = [
            {**r.result.to_dict(),
             "comparison": None if r.comparison is None else r.comparison.to_dict()}
            for r in records
        ]
    messages: list[str] = []
    if not runs and "min_accuracy" in thresholds and accuracy is not None:
        limit = float(thresholds["min_accuracy"])
        if accuracy < limit:
            messages.append(f"min_accuracy: measured {accuracy:.4g}, limit >= {limit:.4g}")
    if "max_accuracy_drop" in thresholds:
        limit = float(thresholds["max_accuracy_drop"])
        compared = [r.comparison for r in records if r.comparison is not None]
        if not compared:
            messages.append("max_accuracy_drop: no reference to compare with; use the "
                            "quantized_model fixture or llmperf_accuracy(..., reference=...)")
        for c in compared:
            if c.drop > limit:
                messages.append(f"max_accuracy_drop: measured {c.drop:.4g}, limit <= "
                                f"{limit:.4g}: {c.describe()}")
    if messages:
        head = f"{len(messages)} llmperf accuracy check(s) failed"
        return [Failure("accuracy", head, "\n  ".join([head + ":", *messages]))]
    return []


def failed_requests(run: RunResult, label: str = "") -> Failure | None:
    """Failed requests fail the test unless the marker allows them (``max_errors=N``): a run
    whose requests failed measured something else than the test asked for."""
    errors = run.summary.get("errors") or 0
    if not errors:
        return None
    requests = run.summary.get("requests")
    of = f" of {requests}" if requests else ""
    failed = [r for r in run.samples if not r.warmup and r.error]
    first = next((r.error for r in failed), None)
    kinds = Counter(r.error_kind or "error" for r in failed)
    by_kind = (" (" + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + ")"
               if kinds else "")
    head = f"llmperf{(' ' + label) if label else ''}: {errors}{of} request(s) failed{by_kind}"
    text = head + (f"; first error: {first}" if first else "") + (
        "\n  failed requests fail the test; allow them with @llmperf(max_errors=N)")
    clause = f"{errors}{of} request(s) failed{by_kind}"
    return Failure("threshold", f"{label.strip('()')}: {clause}" if label else clause, text)


def judge(
    nodeid: str,
    thresholds: Mapping[str, Any],
    runs: Sequence[RunResult],
    *,
    accuracy: Sequence[AccuracyRecord] = (),
    ab: Sequence[tuple[ABVerdict, bool]] = (),
    gate: Gate | None = None,
    path: str | Path | None = None,
    inconclusive: str | None = None,
) -> Judgement:
    """Every check of one test, all at once, so one message can list every failure.
    ``path``: the test's file (the item's), for its baseline key. ``inconclusive``
    (``--llmperf-inconclusive``; default: the gate's, else warn): ``fail`` fails an
    undecided change and a blind pass (issue 25), of the stored gate and of an A/B."""
    mode = inconclusive or (gate.inconclusive if gate is not None else "warn")
    accuracy_failures = check_accuracy(accuracy, thresholds, runs)  # fills summary accuracy
    out = Judgement(measured=bool(runs) or bool(ab) or accuracy_failures is not None)
    if not out.measured:
        return out
    out.failures += accuracy_failures or []
    unchecked = sorted(k for k in thresholds if k in THRESHOLDS and k != "min_accuracy")
    if not runs and ab and unchecked:
        # A paired comparison is judged by its verdict; a limit needs a run of its own.
        text = (f"thresholds {', '.join(unchecked)} were never checked: the test only ran "
                "llmperf_bench.compare(...), whose verdict is the paired comparison; run "
                "llmperf_bench(engine, workload) for the limits to apply to")
        out.failures.append(Failure("error", text, f"llmperf: {text}"))
    for i, run in enumerate(runs):
        checks = evaluate(thresholds, run.summary)
        checks += per_model_checks(thresholds, run.by_model)  # Workload.models mixes
        out.checks.append([c.to_dict() for c in checks])
        label = f"(run {i + 1} of {len(runs)})" if len(runs) > 1 else ""
        found = failure(checks, label=label)
        if found is not None:
            out.failures.append(found)
        if "max_errors" not in thresholds:
            found = failed_requests(run, label)
            if found is not None:
                out.failures.append(found)
    if gate is not None and runs:
        try:
            comparison = gate.compare_test(nodeid, runs, thresholds, path)
        except GateConfigError as exc:
            out.failures.append(Failure("error", str(exc), f"llmperf: {exc}"))
        else:
            if comparison is not None:
                out.comparison = comparison
                found = gate_failure(comparison, mode)
                if found is not None:
                    out.failures.append(found)
                found = outputs_failure(thresholds, comparison.get("outputs"))
                if found is not None:
                    out.failures.append(found)
    for verdict, fail in ab:
        found = verdict.failure(mode) if fail else None
        if found is not None:
            out.failures.append(found)
        found = outputs_failure(thresholds, getattr(verdict, "outputs", None), "A/B: ")
        if found is not None:
            out.failures.append(found)
    return out


def outputs_failure(thresholds: Mapping[str, Any], outputs: Any, label: str = ""
                    ) -> Failure | None:
    """``same_outputs=True`` (issue 25): a failure when a comparison's outputs changed."""
    if thresholds.get("same_outputs") is not True or not isinstance(outputs, Mapping):
        return None
    text = changed_failure_text(outputs)
    if text is None:
        return None
    return Failure("outputs", f"{label}{text}",
                   f"llmperf {label}{text}\n  same_outputs=True: greedy answers must not "
                   "change (docs/guides/baselines-and-gates.md)")
