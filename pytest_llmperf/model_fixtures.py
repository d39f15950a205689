"""Fixtures for quantized models and accuracy, and the accuracy part of the threshold check.

- ``quantized_model``: a ModelSpec, parametrized over ``--llmperf-quant-formats`` (ini
  ``llmperf_quant_formats``, env ``LLMPERF_QUANT_FORMATS``; default ``source``) or over
  ``@pytest.mark.parametrize("quantized_model", ["source", "Q8_0"], indirect=True)``.
- ``quantized_engine``: the engine for that spec (cached per model for the session).
- ``llmperf_accuracy``: ``llmperf_accuracy(engine, "llmperf_arith", limit=50)`` scores an engine
  item by item and, for a quantized model, compares it with the reference (``source``) on the
  same items; the result feeds ``min_accuracy`` / ``max_accuracy_drop`` and the run summary.

The plugin exposes these with one import; ``check_accuracy`` is called from its
``pytest_runtest_call``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from .accuracy import (
    AccuracyError,
    AccuracyRecord,
    AccuracyResult,
    combine,
    combined_comparison,
    compare_paired,
    evaluate_accuracy,
)
from .engines.base import Engine
from .failures import call_or_fail
from .metrics import RunResult
from .modelspec import REFERENCE, ModelSpec, materialize, parse_formats
from .quantize import QuantizeError, QuantizeUnavailable

SPECS = pytest.StashKey[dict[tuple[str, str], ModelSpec | str]]()
RESULTS = pytest.StashKey[dict[tuple[Any, ...], AccuracyResult]]()
ITEM_ACCURACY = pytest.StashKey[list[AccuracyRecord]]()
ITEM_SPEC = pytest.StashKey[ModelSpec]()


def _state(config: pytest.Config) -> Any:
    from .plugin import STATE

    return config.stash[STATE]


def configured_formats(config: pytest.Config) -> list[str]:
    """The formats from --llmperf-quant-formats (ini, env); QuantizeError when malformed."""
    return parse_formats(_state(config).settings.quant_formats) or [REFERENCE]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``quantized_model`` over the configured formats, unless the test does."""
    if "quantized_model" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "quantized_model" in names:
            return
    try:
        formats = configured_formats(metafunc.config)
    except QuantizeError as exc:
        raise pytest.Collector.CollectError(
            f"pytest-llmperf: --llmperf-quant-formats (ini llmperf_quant_formats): {exc}"
        ) from None
    metafunc.parametrize("quantized_model", formats, indirect=True, ids=formats)


def get_spec(config: pytest.Config, label: str, source: str, nthread: int = 0) -> ModelSpec:
    """The materialized spec (quantizing once per session); skips or fails with the reason."""
    cache = config.stash.setdefault(SPECS, {})
    key = (label, source)
    if key not in cache:
        try:
            cache[key] = materialize(label, source, nthread=nthread)
        except QuantizeUnavailable as exc:
            cache[key] = f"skip:{exc}"
        except QuantizeError as exc:
            cache[key] = f"fail:llmperf: {exc}"
    value = cache[key]
    if isinstance(value, str):
        kind, _, message = value.partition(":")
        if kind == "skip":
            pytest.skip(f"llmperf: {message}")
        pytest.fail(message, pytrace=False)
    return value


@pytest.fixture
def quantized_model(request: pytest.FixtureRequest) -> ModelSpec:
    """One format of the configured model (see the module docstring); skips with the reason
    when the format's toolkit or GPU is missing."""
    label = getattr(request, "param", REFERENCE)
    if not isinstance(label, str):
        raise pytest.UsageError(f"quantized_model parameters are format names, got {label!r}")
    try:
        (label,) = parse_formats(label)
    except (QuantizeError, ValueError) as exc:
        pytest.fail(f"llmperf: {exc}", pytrace=False)
    settings = _state(request.config).settings
    spec = get_spec(request.config, label, settings.model, nthread=settings.threads or 0)
    request.node.stash[ITEM_SPEC] = spec
    props = request.node.user_properties
    props.append(("model_format", spec.label))
    props.append(("model_source_format", spec.source_format))
    if spec.size_bytes is not None:
        props.append(("model_size_mb", round(spec.size_bytes / 2**20, 2)))
    return spec


def engine_settings(settings: Any, spec: ModelSpec) -> Any:
    """The session's settings with the spec's model, engine and vLLM options."""
    changes: dict[str, Any] = {"model": spec.path, "engine": spec.engine}
    if spec.engine != "llama_cpp":
        changes["quantization"] = spec.vllm_quantization
        changes["dtype"] = spec.dtype or settings.dtype
    return dataclasses.replace(settings, **changes)


def engine_for_spec(config: pytest.Config, spec: ModelSpec) -> Engine:
    from .plugin import get_engine

    state = _state(config)
    return get_engine(state, engine_settings(state.settings, spec))


def release_engine(config: pytest.Config, engine: Engine) -> None:
    """Close ``engine`` and drop it from the session's cache (to measure the next model's
    memory without this one resident); a later request for it loads it again."""
    state = _state(config)
    for key, cached in list(state.engines.items()):
        if cached is engine:
            del state.engines[key]
    engine.close()


@pytest.fixture
def quantized_engine(request: pytest.FixtureRequest, quantized_model: ModelSpec) -> Engine:
    """The engine that runs ``quantized_model``, loaded once per model for the session."""
    engine = engine_for_spec(request.config, quantized_model)
    load_s = getattr(engine, "load_s", None)
    if load_s is not None:
        request.node.user_properties.append(("model_load_s", round(float(load_s), 4)))
    return engine


class AccuracyRunner:
    """The ``llmperf_accuracy`` fixture."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    @property
    def records(self) -> list[AccuracyRecord]:
        return self._item.stash.setdefault(ITEM_ACCURACY, [])

    def _cached(self, model: str, task: str, limit: int | None, backend: str,
                include_path: str | Path | None, engine: Callable[[], Engine]
                ) -> AccuracyResult:
        """Results are cached per model file for the session (greedy scoring is
        deterministic), so a reference is scored once and need not stay loaded."""
        key = (model, task, limit, backend, str(include_path))
        cache = self._item.config.stash.setdefault(RESULTS, {})
        if key not in cache:
            cache[key] = evaluate_accuracy(engine(), task, limit=limit, backend=backend,
                                           include_path=include_path)
        return cache[key]

    @staticmethod
    def _model_of(engine: Engine) -> str:
        info = engine.info()
        return f"{engine.kind}:{info.get('model_path') or info.get('model')}"

    def _reference(self, reference: Engine | str | None, current: Engine, task: str,
                   limit: int | None, backend: str, include_path: str | Path | None,
                   result: AccuracyResult) -> AccuracyResult | None:
        if isinstance(reference, Engine):
            if reference is current:
                return result
            return self._cached(self._model_of(reference), task, limit, backend,
                                include_path, lambda: reference)
        spec = self._item.stash.get(ITEM_SPEC, None)
        if reference is None:
            return None
        if reference == "auto":
            if spec is None:
                return None
            reference = REFERENCE
        settings = _state(self._item.config).settings
        label = str(reference)
        if Path(label).expanduser().is_file():
            ref_spec = get_spec(self._item.config, REFERENCE, label)
        else:
            source = spec.source if spec is not None else settings.model
            ref_spec = get_spec(self._item.config, parse_formats(label)[0], source,
                                nthread=settings.threads or 0)
        if spec is not None and ref_spec.path == spec.path:
            return result
        config = self._item.config
        return self._cached(f"{ref_spec.engine}:{ref_spec.path}", task, limit, backend,
                            include_path, lambda: engine_for_spec(config, ref_spec))

    def __call__(self, engine: Engine, task: str = "llmperf_arith", *,
                 limit: int | None = None, backend: str = "auto",
                 reference: Engine | str | None = "auto",
                 include_path: str | Path | None = None) -> AccuracyRecord:
        """Score ``engine`` on ``task`` (a built-in task or any lm-eval task name); compare
        with ``reference`` (an engine, a format such as "source" or "F16", or a model path;
        "auto": the quantized_model's source) on the same items."""
        def score() -> tuple[Any, Any, Any]:
            result = self._cached(self._model_of(engine), task, limit, backend, include_path,
                                  lambda: engine)
            ref = self._reference(reference, engine, task, limit, backend, include_path,
                                  result)
            return result, ref, (compare_paired(ref, result) if ref is not None else None)

        result, ref, comparison = call_or_fail(score, AccuracyError)
        record = AccuracyRecord(result=result, comparison=comparison, reference=ref)
        self.records.append(record)
        props = self._item.user_properties
        props.append((f"accuracy.{task}", round(result.accuracy, 4)))
        props.append((f"accuracy_n.{task}", result.n))
        if comparison is not None:
            props.append((f"accuracy_drop.{task}", round(comparison.drop, 4)))
            props.append((f"accuracy_drop_ci.{task}",
                          f"[{comparison.ci_low:.4f}, {comparison.ci_high:.4f}]"))
            props.append((f"accuracy_drop_p.{task}", round(comparison.p_value, 4)))
        return record


@pytest.fixture
def llmperf_accuracy(request: pytest.FixtureRequest) -> AccuracyRunner:
    """``llmperf_accuracy(engine, task="llmperf_arith", limit=None, reference="auto")``."""
    return AccuracyRunner(request.node)


def overall_accuracy(records: Sequence[AccuracyRecord]) -> float | None:
    """Accuracy over every item of every task the test scored (None: nothing scored)."""
    n = sum(r.result.n for r in records)
    if not n:
        return None
    return sum(sum(r.result.correct.values()) for r in records) / n


def check_accuracy(item: pytest.Item, thresholds: Mapping[str, Any],
                   runs: Sequence[RunResult]) -> list[str] | None:
    """Put the measured accuracy into every run's summary and check ``max_accuracy_drop``
    (and ``min_accuracy`` when there is no run to carry it). None: nothing was scored."""
    records = item.stash.get(ITEM_ACCURACY, [])
    if not records:
        if "max_accuracy_drop" in thresholds:
            return ["max_accuracy_drop: not measured; call llmperf_accuracy(engine, task) "
                    "with a quantized_model or a reference="] if runs else None
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
        messages.insert(0, f"{len(messages)} llmperf accuracy check(s) failed:")
        return ["\n  ".join(messages)]
    return []


# ---------------------------------------------------------------------------- report table

TABLE_COLUMNS = ("format", "source format", "size MB", "load s", "TTFT p50 ms", "tokens/s",
                 "peak RSS MB", "accuracy", "drop vs ref [95% CI]", "McNemar p")


def table_row(spec: ModelSpec, engine: Engine, run: RunResult | None,
              records: Sequence[AccuracyRecord] = ()) -> dict[str, str]:
    """One row of the quantization table (strings, ready to print); accuracy over every
    item of every task scored, the drop paired over the same items."""
    s = run.summary if run is not None else {}

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    record = (AccuracyRecord(result=combine([r.result for r in records]))
              if records else None)
    comp = combined_comparison(records)
    label = spec.label + (" (reference)" if spec.is_reference else "")
    return {
        "format": label,
        "source format": spec.source_format or "-",
        "size MB": num(None if spec.size_bytes is None else spec.size_bytes / 2**20, ".1f"),
        "load s": num(getattr(engine, "load_s", None), ".2f"),
        "TTFT p50 ms": num(s.get("ttft_p50_ms"), ".1f"),
        "tokens/s": num(s.get("output_tps"), ".1f"),
        "peak RSS MB": num(s.get("peak_rss_mb"), ".0f"),
        "accuracy": "-" if record is None else
        f"{record.result.accuracy:.3f} (n={record.result.n})",
        "drop vs ref [95% CI]": "-" if comp is None else
        f"{comp.drop:+.3f} [{comp.ci_low:+.3f}, {comp.ci_high:+.3f}]",
        "McNemar p": "-" if comp is None else f"{comp.p_value:.3g}",
    }


def markdown_table(rows: Sequence[Mapping[str, str]]) -> str:
    head = "| " + " | ".join(TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    body = ["| " + " | ".join(r.get(c, "-") for c in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])
