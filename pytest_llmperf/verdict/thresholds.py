"""Marker thresholds: validation, the parsed ``Thresholds`` every decider reads, and
evaluation against a run summary. Pure logic.

``validate_marker`` checks the keywords once, at collection; ``Thresholds.of`` reads them
(or a stored copy from a results file or a baseline) into one typed object: the absolute
limits, the gated and watched metrics, the tolerance per metric, the engine arguments and
the repeats. The stored gate, the A/B comparisons, the report view, ``llmperf bisect`` and
``llmperf compare`` ask it, never the raw keywords.

``failure`` turns the failed checks into the test's ``outcome.Failure`` (its headline clause
``ttft_p95_ms 812 > 500`` and the detailed message ``failure_message`` writes).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..decision import DEFAULT_TOLERANCE_PCT
from ..formatting import num
from ..limits import REPEATS
from ..metric_table import DEFAULT_GATED, DEFAULT_WATCHED, LATENCY_KEYS, SUMMARY_KEYS
from ..settings import ConfigError, engine_args_mapping
from ..values import is_finite_number, show
from . import tails
from .failure import Failure

# Limits and measured values as a threshold message writes them: 1500, 812, 0.9, 1234.5.
_num = functools.partial(num, large=".1f", whole=True)

# threshold name -> (summary key, direction): "max" means the measured value must be <= limit.
THRESHOLDS: dict[str, tuple[str, str]] = {key: (key, "max") for key in LATENCY_KEYS}
THRESHOLDS.update(
    {
        "min_tps": ("output_tps", "min"),
        "min_rps": ("rps", "min"),
        "min_goodput": ("goodput", "min"),
        "max_rss_mb": ("peak_rss_mb", "max"),
        "max_gpu_mem_mb": ("gpu_mem_mb", "max"),
        "min_accuracy": ("accuracy", "min"),
        "max_errors": ("errors", "max"),
        # The server's own figures (engines/server_metrics.py).
        "min_prefix_hit_rate": ("prefix_hit_rate", "min"),
        "max_kv_usage": ("peak_kv_usage", "max"),
        "max_preemptions": ("preemptions", "max"),
        "min_spec_accept_rate": ("spec_accept_rate", "min"),
        # Energy and cost (run/energy.py).
        "max_energy_j_per_token": ("energy_j_per_token", "max"),
        "max_usd_per_mtok": ("usd_per_mtok", "max"),
        # Capacity under an SLO (llmperf_bench.capacity).
        "min_capacity_rps": ("capacity_rps", "min"),
    }
)
# Keywords that are not absolute limits on one summary value.
OTHER_KEYWORDS: frozenset[str] = frozenset(
    {"max_regression_pct", "max_accuracy_drop", "repeats", "gate", "engine_args",
     # Model mixes (Workload.models): limits per model, checked by verdict/per_model.py.
     "per_model",
     "same_outputs"}  # same_outputs: issue 25, verdict/outputs.py
)
VALID_KEYWORDS: tuple[str, ...] = tuple(sorted(set(THRESHOLDS) | OTHER_KEYWORDS))

FRACTION_LIMITS = frozenset({"min_goodput", "min_accuracy", "max_accuracy_drop",
                             "min_prefix_hit_rate", "max_kv_usage", "min_spec_accept_rate"})


class MarkerError(ValueError):
    """A bad @llmperf(...) argument."""


def _number(name: str, value: Any) -> float:
    """The one number check of the marker: a finite, non-negative int or float (not a bool,
    not an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MarkerError(f"{name}={value!r} is not a number")
    if not is_finite_number(value):
        raise MarkerError(f"{name}={show(value)} is not a finite number")
    if value < 0:
        raise MarkerError(f"{name}={value!r} is negative")
    return float(value)


def _metrics(name: str, names: Any) -> list[str]:
    """Metric names (gate=, max_regression_pct keys) checked against the one table of
    summary keys (metric_table.SUMMARY_KEYS)."""
    unknown = sorted(repr(n) if not isinstance(n, str) else n
                     for n in names if n not in SUMMARY_KEYS)
    if unknown:
        raise MarkerError(
            f"{name} names unknown metric(s) {', '.join(unknown)}; use summary keys such as "
            "ttft_p50_ms, tpot_p50_ms, output_tps"
        )
    return list(names)


def validate_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check the marker's arguments; return them normalised. Raises MarkerError.

    Every number must be finite and non-negative; metric names (``gate``, the keys of a
    ``max_regression_pct`` dict) must be summary keys, so a typo is a collection error
    before anything runs."""
    if args:
        raise MarkerError(
            f"@llmperf takes keyword arguments only, got positional {args!r}"
        )
    unknown = sorted(set(kwargs) - set(VALID_KEYWORDS))
    if unknown:
        raise MarkerError(
            f"unknown @llmperf keyword(s) {', '.join(unknown)}; "
            f"valid keywords are: {', '.join(VALID_KEYWORDS)}"
        )
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name == "max_regression_pct" and isinstance(value, Mapping):
            _metrics(name, value)
            out[name] = {str(k): _number(f"{name}[{k!r}]", v) for k, v in value.items()}
        elif name == "repeats":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MarkerError(f"repeats={show(value)} must be a whole number >= 1")
            problem = REPEATS.problem("repeats", value)
            if problem:
                raise MarkerError(problem)
            out[name] = value
        elif name == "engine_args":  # the test's llm_engine gets these engine arguments
            if not isinstance(value, Mapping):
                raise MarkerError(f"engine_args={show(value)} must be a dict such as "
                                  "{'max_num_seqs': 8}")
            try:
                out[name] = engine_args_mapping(value, "engine_args")
            except ConfigError as exc:
                raise MarkerError(str(exc)) from None
        elif name == "same_outputs":  # fail when any greedy answer changed (issue 25)
            if not isinstance(value, bool):
                raise MarkerError(f"same_outputs={show(value)} must be True or False")
            out[name] = value
        elif name == "per_model":
            out[name] = _per_model(value)
        elif name == "gate":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise MarkerError(f"gate={value!r} must be a metric name or a list of them")
            out[name] = _metrics(name, value)
        else:
            number = _number(name, value)
            if name in FRACTION_LIMITS and number > 1:
                raise MarkerError(f"{name}={value!r} is a fraction and must be between 0 and 1")
            out[name] = number
    return out


def _per_model(value: Any) -> dict[str, dict[str, float]]:
    """``per_model={"adapter-a": {"ttft_p95_ms": 300}, ...}``: absolute limits (threshold
    keywords) per model of a Workload.models mix, checked against that model's summary."""
    if not isinstance(value, Mapping) or not value:
        raise MarkerError(f"per_model={show(value)} must be a dict of model name -> limits, "
                          "such as {'adapter-a': {'ttft_p95_ms': 300}}")
    out: dict[str, dict[str, float]] = {}
    for model, limits in value.items():
        if not isinstance(model, str) or not model:
            raise MarkerError(f"per_model: {show(model)} is not a model name")
        if not isinstance(limits, Mapping) or not limits:
            raise MarkerError(f"per_model[{model!r}]={show(limits)} must be a dict of "
                              "thresholds, such as {'ttft_p95_ms': 300}")
        unknown = sorted(str(k) for k in limits if k not in THRESHOLDS)
        if unknown:
            raise MarkerError(f"per_model[{model!r}] has unknown threshold(s) "
                              f"{', '.join(unknown)}; valid: {', '.join(sorted(THRESHOLDS))}")
        out[model] = {}
        for key, limit in limits.items():
            number = _number(f"per_model[{model!r}][{key!r}]", limit)
            if key in FRACTION_LIMITS and number > 1:
                raise MarkerError(f"per_model[{model!r}][{key!r}]={limit!r} is a fraction "
                                  "and must be between 0 and 1")
            out[model][key] = number
    return out


class UnknownMetricError(MarkerError):
    """``gate=`` or a ``max_regression_pct`` key names no summary metric."""


def _tolerance_value(value: Any) -> float | None:
    return float(value) if is_finite_number(value) and value >= 0 else None


@dataclass(frozen=True)
class Thresholds:
    """A test's ``@llmperf`` keywords, parsed once.

    ``limits``: the absolute limits given (threshold name -> limit). ``gate``: the metrics
    the marker gates (None: the default gated ones). ``tolerance``: ``max_regression_pct``,
    one number for every metric or one per metric (None: the default). ``repeats``: runs per
    ``llmperf_bench`` call (None: not given). ``raw``: the keywords
    as stored in results files and baselines (``validate_marker``'s output).
    """

    limits: Mapping[str, float] = field(default_factory=dict)
    gate: tuple[str, ...] | None = None
    tolerance: float | Mapping[str, float] | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    repeats: int | None = None  # None: not given (--llmperf-repeats decides)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Thresholds | Mapping[str, Any] | None) -> Thresholds:
        """Read validated keywords, or a stored copy of them (a results file, a baseline: a
        trust boundary): what is not of the right shape is left at its default, never
        raised on; metric names are checked when they are used (``gated_metrics``)."""
        if isinstance(raw, Thresholds):
            return raw
        data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        limits = {name: float(value) for name, value in data.items()
                  if name in THRESHOLDS and is_finite_number(value)}
        gate = data.get("gate")
        if isinstance(gate, str):
            gate = [gate]
        tol = data.get("max_regression_pct")
        tolerance: float | dict[str, float] | None
        if isinstance(tol, Mapping):
            tolerance = {str(k): v for k, v in ((k, _tolerance_value(v)) for k, v in tol.items())
                         if v is not None}
        else:
            tolerance = _tolerance_value(tol)
        repeats = data.get("repeats")
        args = data.get("engine_args")
        return cls(
            limits=limits,
            gate=tuple(str(m) for m in gate) if isinstance(gate, list | tuple) and gate else None,
            tolerance=tolerance,
            engine_args=dict(args) if isinstance(args, Mapping) else {},
            repeats=repeats if isinstance(repeats, int) and not isinstance(repeats, bool)
            and repeats >= 1 else None,
            raw=dict(data),
        )

    def with_tolerance(self, tolerance_pct: float | None) -> Thresholds:
        """The same thresholds with ``max_regression_pct`` overridden (None: unchanged)."""
        if tolerance_pct is None:
            return self
        raw = {**self.raw, "max_regression_pct": tolerance_pct}
        return Thresholds(self.limits, self.gate, tolerance_pct, self.engine_args,
                          self.repeats, raw)

    def tolerance_for(self, metric: str) -> float:
        """The tolerance of ``metric``, percent: the marker's, else the default (5%)."""
        tol = self.tolerance
        if isinstance(tol, Mapping):
            return float(tol.get(metric, DEFAULT_TOLERANCE_PCT))
        return DEFAULT_TOLERANCE_PCT if tol is None else float(tol)

    def gated_metrics(self) -> tuple[list[str], list[str]]:
        """(gated, watched): the marker's ``gate`` (default: p50 TTFT, p50 TPOT, output
        tokens/s) plus every metric with a tolerance of its own; the default watched metrics
        that are not gated. UnknownMetricError for a name that is not a summary key."""
        gated = list(self.gate) if self.gate else list(DEFAULT_GATED)
        if isinstance(self.tolerance, Mapping):
            gated += [m for m in self.tolerance if m not in gated]
        bad = [m for m in gated if m not in SUMMARY_KEYS]
        if bad:
            raise UnknownMetricError(
                f"gate / max_regression_pct name unknown metric(s) {', '.join(sorted(bad))}; "
                f"use summary keys such as {', '.join(DEFAULT_GATED)}"
            )
        return gated, [m for m in DEFAULT_WATCHED if m not in gated]


@dataclass(frozen=True)
class ThresholdCheck:
    name: str  # threshold keyword, e.g. ttft_p95_ms
    metric: str  # summary key, e.g. ttft_p95_ms or output_tps
    limit: float
    direction: str  # "max" or "min"
    measured: float | None
    passed: bool
    baseline: float | None = None
    # Tails (issue 25): the samples a tail percentile rests on (None: not a tail, unknown).
    samples: int | None = None

    def of_samples(self, why: bool = True) -> str:
        """``p99 of 40 requests`` for a tail percentile ('' otherwise); with ``why``, ``, too
        few: needs at least 500 requests per run`` appended when the rule of ``tails`` is not
        met."""
        if self.samples is None:
            return ""
        q = tails.quantile_of(self.metric) or 0.0
        what = "gaps" if self.metric.startswith("itl_") else "requests"
        text = f"p{round(q * 100)} of {self.samples} {what}"
        if why and tails.refusal(self.metric, self.samples):
            text += f", too few: needs at least {tails.needed(q)} {what} per run"
        return text

    def describe(self) -> str:
        op = "<=" if self.direction == "max" else ">="
        measured = "not measured" if self.measured is None else _num(self.measured)
        text = f"{self.name}: measured {measured}, limit {op} {_num(self.limit)}"
        if self.baseline is not None:
            text += f" (baseline {_num(self.baseline)})"
        if self.of_samples():
            text += f" ({self.of_samples()})"
        return text

    def short(self) -> str:
        """One clause for a one-line message: ``ttft_p95_ms 812 > 500``, ``min_tps 1500 < 2000``."""
        op = "<=" if self.direction == "max" else ">="
        if self.measured is None:
            return f"{self.name} not measured (limit {op} {_num(self.limit)})"
        broken = ">" if self.direction == "max" else "<"
        of = f" ({self.of_samples(why=False)})" if self.of_samples() else ""
        return f"{self.name} {_num(self.measured)} {broken} {_num(self.limit)}{of}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "limit": self.limit,
            "direction": self.direction,
            "measured": self.measured,
            "passed": self.passed,
            "baseline": self.baseline,
            "samples": self.samples,
        }


def evaluate(
    thresholds: Mapping[str, Any],
    summary: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
) -> list[ThresholdCheck]:
    """Every absolute threshold of the marker checked against the summary, in name order."""
    checks: list[ThresholdCheck] = []
    for name in sorted(thresholds):
        if name not in THRESHOLDS:
            continue
        metric, direction = THRESHOLDS[name]
        limit = float(thresholds[name])
        measured = summary.get(metric)
        if measured is None:
            passed = False
        elif direction == "max":
            passed = float(measured) <= limit
        else:
            passed = float(measured) >= limit
        base = baseline.get(metric) if baseline else None
        checks.append(
            ThresholdCheck(name, metric, limit, direction,
                           None if measured is None else float(measured), passed,
                           None if base is None else float(base),
                           tails.samples_in(summary, metric) if tails.is_tail(metric)
                           else None)
        )
    return checks


def failure_message(checks: list[ThresholdCheck], label: str = "") -> str:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return ""
    # The first line is what a CI page shows (JUnit message, short test summary): make it
    # say which thresholds failed, measured against limit. The details follow.
    head = f"llmperf{(' ' + label) if label else ''}: " + _clauses(failed)
    count = f"{len(failed)} llmperf threshold(s) failed:"
    return "\n".join([head, count, *("  " + c.describe() for c in failed)])


def _clauses(failed: list[ThresholdCheck]) -> str:
    return "; ".join(c.short() for c in failed)


def failure(checks: list[ThresholdCheck], label: str = "") -> Failure | None:
    """The failed checks as one failure (None when every check passed). ``label``, e.g.
    ``(run 2 of 3)``, appears in the headline clause without its parentheses."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return None
    clause = f"{label.strip('()')}: {_clauses(failed)}" if label else _clauses(failed)
    return Failure("threshold", clause, failure_message(checks, label=label))
