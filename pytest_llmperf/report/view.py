"""What the HTML page and the Markdown table show, built once from results and baselines.

The input is always the results document (``results.py``, the shape ``--llmperf-json``
writes): the plugin builds it from the session, ``llmperf report`` reads it from files.
Baselines (``baselines/<profile>/<commit>.json``, read by ``store.baselines``, so the report
reads exactly the files the gate reads) add the trend over commits. Fields that other parts
of the plugin may or may not have written (``comparison``, ``checks``) are read with ``.get``
so that their absence only leaves a section empty.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import reading
from ..files import os_reason
from ..formatting import display, pct
from ..metric_table import SECTIONS, TREND_METRICS, Section, higher_is_better
from ..results import SCHEMA as RESULTS_SCHEMA
from ..results import SCHEMA_VERSION as RESULTS_SCHEMA_VERSION
from ..run import lengths
from ..run.metrics import RecordError, RequestRecord, latency_series, percentile, turn_ttfts
from ..store.baselines import Baseline, BaselineStore
from ..store.keys import TestKey
from ..values import is_finite_number
from ..verdict import tails
from ..verdict.attribution import attribution_lines
from ..verdict.thresholds import THRESHOLDS, Thresholds
from . import plots
from .model_table import ModelMixView, model_mix_view
from .provenance import (
    BadProvenance,
    ProvenanceError,
    check_disjoint,
    check_merge,
    check_provenance,
)

VERDICT_CLASS: dict[str, str] = {
    "ok": "ok", "improvement": "good", "regression": "bad", "warn": "warn",
    "inconclusive": "muted",
}


class ReportInputError(ValueError):
    """A results or baselines file that cannot be used; the message says which and why."""


def short_commit(commit: Any) -> str:
    return str(commit)[:10] if commit else ""


# --------------------------------------------------------------------------- inputs

def read_results(path: str | Path, digest: bool = False) -> tuple[dict[str, Any], str]:
    """A results file, read once through the bounded reader (``reading``: a regular file, at
    most ``LLMPERF_MAX_FILE_MB``, JSON without NaN or unbounded nesting) and its top level
    checked (``_check_header``): (the document, the SHA-256 of its bytes when ``digest``,
    else ""). The tests are checked one by one by ``checked_tests``. ReportInputError naming
    the file otherwise.

    Memory: the text is dropped once parsed (at most the text and the parsed document at a
    time; the file's bytes only while they are decoded, and hashed)."""
    path = Path(path)
    try:
        text = reading.read_text(path)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest() if digest else ""
        data = reading.loads(text, path)
    except FileNotFoundError:
        raise ReportInputError(f"{path}: no such results file") from None
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read it: {os_reason(exc)}") from None
    except reading.ReadLimitError as exc:  # its message starts with the path
        raise ReportInputError(str(exc)) from None
    del text
    _check_header(path, data)
    return data, sha


class _Bad(ValueError):
    """One bad value inside a results document: where it is (``tests[0].runs[1].summary``)
    and what is wrong; ``_check_results`` adds the file."""


def _object(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Bad(f"{where} must be an object, not {type(value).__name__}")
    return value


def _list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{where} must be a list, not {type(value).__name__}")
    return value


def _text(where: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _Bad(f"{where}={_shown(value)} must be a string")


def _number(where: str, value: Any) -> None:
    """A finite number or null (JSON has no other numbers the plugin writes)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{where}={_shown(value)} is not a number")
    if not is_finite_number(value):
        raise _Bad(f"{where}={_shown(value)} is not a finite number")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _optional(container: Mapping[str, Any], key: str, where: str, check: Any) -> None:
    """``check(where.key, value)`` when the key is there and not null."""
    if container.get(key) is not None:
        check(f"{where}.{key}", container[key])


def _check_run(where: str, run: Any) -> list[RequestRecord]:
    """The run's values checked; its samples as records (read once: the plots use them)."""
    run = _object(where, run)
    if "summary" not in run:
        raise _Bad(f"{where}: every run needs a 'summary' object")
    for key, value in _object(f"{where}.summary", run["summary"]).items():
        _number(f"{where}.summary.{key}", value)
    records: list[RequestRecord] = []
    for i, sample in enumerate(_list(f"{where}.samples", run.get("samples", []))):
        try:
            records.append(RequestRecord.from_dict(_object(f"{where}.samples[{i}]", sample)))
        except RecordError as exc:
            raise _Bad(f"{where}.samples[{i}]: {exc}") from None
    for key in ("workload", "engine", "client"):
        _optional(run, key, where, _object)
    for model, summary in _object(f"{where}.by_model", run.get("by_model") or {}).items():
        for key, value in _object(f"{where}.by_model.{model}", summary).items():
            _number(f"{where}.by_model.{model}.{key}", value)
    workload = run.get("workload") or {}
    _optional(workload, "slo", f"{where}.workload", _object)
    for key in ("rate", "requests", "warmup", "concurrency"):
        _optional(workload, key, f"{where}.workload", _number)
    for i, warning in enumerate(_list(f"{where}.warnings", run.get("warnings", []))):
        _text(f"{where}.warnings[{i}]", warning)
    _optional(run, "started_at", where, _text)
    checks = (run.get("client") or {}).get("checks")
    for i, check in enumerate(_list(f"{where}.client.checks", checks or [])):
        check = _object(f"{where}.client.checks[{i}]", check)
        for key in ("limit", "measured", "baseline"):
            _number(f"{where}.client.checks[{i}].{key}", check.get(key))
    return records


def _check_test(where: str, test: Any) -> list[list[RequestRecord]]:
    """The test's values checked; each run's samples as records."""
    test = _object(where, test)
    if not isinstance(test.get("nodeid"), str):
        raise _Bad(f"{where} has no 'nodeid' string")
    for key in ("outcome", "message"):
        _optional(test, key, where, _text)
    thresholds = _object(f"{where}.thresholds", test.get("thresholds", {}))
    for name, value in thresholds.items():
        if name == "per_model" and isinstance(value, Mapping):  # limits per model
            for model, limits in value.items():
                for key, limit in _object(f"{where}.thresholds.per_model.{model}",
                                          limits).items():
                    _number(f"{where}.thresholds.per_model.{model}.{key}", limit)
        elif isinstance(value, Mapping):  # max_regression_pct per metric
            for metric, tol in value.items():
                _number(f"{where}.thresholds.{name}.{metric}", tol)
        elif not isinstance(value, list):  # gate: a list of names
            _number(f"{where}.thresholds.{name}", value)
    if test.get("comparison") is not None:
        comparison = _object(f"{where}.comparison", test["comparison"])
        metrics = _list(f"{where}.comparison.metrics", comparison.get("metrics") or [])
        for i, metric in enumerate(metrics):
            metric = _object(f"{where}.comparison.metrics[{i}]", metric)
            for key in ("baseline", "current", "change_pct", "ci_low_pct", "ci_high_pct",
                        "mde_pct"):
                _number(f"{where}.comparison.metrics[{i}].{key}", metric.get(key))
    records = [_check_run(f"{where}.runs[{i}]", run)
               for i, run in enumerate(_list(f"{where}.runs", test.get("runs", [])))]
    for i, entry in enumerate(_list(f"{where}.ab", test.get("ab") or [])):
        _check_ab(f"{where}.ab[{i}]", entry)
    return records


def _check_ab(where: str, entry: Any) -> None:
    """One paired A/B entry (``ABVerdict.to_dict``): its metrics' numbers, and the last pair's
    samples the plots read."""
    entry = _object(where, entry)
    for key in ("verdict", "message", "label_a", "label_b"):
        _optional(entry, key, where, _text)
    _optional(entry, "a_run", where, _number)
    for i, metric in enumerate(_list(f"{where}.metrics", entry.get("metrics") or [])):
        metric = _object(f"{where}.metrics[{i}]", metric)
        for key in ("baseline", "current", "change_pct", "ci_low_pct", "ci_high_pct",
                    "mde_pct"):
            _number(f"{where}.metrics[{i}].{key}", metric.get(key))
    for key in ("samples_a", "samples_b"):
        for i, sample in enumerate(_list(f"{where}.{key}", entry.get(key) or [])):
            try:
                RequestRecord.from_dict(_object(f"{where}.{key}[{i}]", sample))
            except RecordError as exc:
                raise _Bad(f"{where}.{key}[{i}]: {exc}") from None


def _check_header(path: Path, data: Any) -> None:
    """A results file's top level as the report reads it: the schema, its version, the
    provenance, the host and the creation time (the tests: ``checked_tests``);
    ReportInputError naming the file, where in it, and the bad value."""
    if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ReportInputError(
            f"{path}: not a pytest-llmperf results file (expected schema {RESULTS_SCHEMA!r}, "
            f"found {found!r}); write one with pytest --llmperf --llmperf-json PATH"
        )
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ReportInputError(f"{path}: schema_version={_shown(version)} is not a version")
    if version > RESULTS_SCHEMA_VERSION:
        raise ReportInputError(
            f"{path}: results schema version {version} is newer than this pytest-llmperf reads "
            f"({RESULTS_SCHEMA_VERSION}); upgrade pytest-llmperf")
    if version >= 2 or data.get("provenance") is not None:
        try:
            check_provenance(data.get("provenance"))
        except BadProvenance as exc:
            raise ReportInputError(f"{path}: {exc}") from None
    try:
        _list("tests", data.get("tests"))
        host = data.get("host")
        if host is not None:
            _optional(_object("host", host), "gpus", "host", _list)
        _optional(data, "created", "", _text)
    except _Bad as exc:
        raise ReportInputError(f"{path}: {str(exc).lstrip('.')}") from None


def checked_tests(path: str | Path, data: Mapping[str, Any], records: bool = True,
                  ) -> Iterator[tuple[Mapping[str, Any], list[list[RequestRecord]] | None]]:
    """Each test of a results document (``read_results``) checked, every value the report
    uses of its type (numbers finite), with its runs' samples as records (``records``; else
    None): one test's records at a time. ReportInputError naming the file, where in it, and
    the bad value."""
    for i, test in enumerate(data["tests"]):
        try:
            made = _check_test(f"tests[{i}]", test)
        except _Bad as exc:
            raise ReportInputError(f"{path}: {exc}") from None
        yield test, made if records else None
        del made


@dataclass
class ResultsFile:
    """What a merge keeps of one results file once its tests are read: where it is, the
    SHA-256 of its bytes, its top level without the tests, and its tests' node ids."""

    path: Path
    digest: str
    header: dict[str, Any]
    nodeids: list[str]

    @classmethod
    def of(cls, path: str | Path, data: Mapping[str, Any], digest: str) -> ResultsFile:
        return cls(Path(path), digest, {k: v for k, v in data.items() if k != "tests"},
                   [str(t["nodeid"]) for t in data["tests"]])


def merge_header(files: Sequence[ResultsFile], allow_partial: bool = False) -> dict[str, Any]:
    """The merged document of several results files, without its tests (the tests are each
    file's, in file order).

    The files must be the shards of one run (``provenance.check_merge``: same commit, profiles
    and run id, each shard once, none missing unless ``allow_partial``) and hold different
    tests (``provenance.check_disjoint``); ReportInputError otherwise. The merged document's
    ``warnings`` (older files without provenance, a partial merge) are for the caller to print.
    """
    try:
        check = check_merge([(str(f.path), f.header.get("provenance")) for f in files],
                            allow_partial)
        if len(files) > 1:
            check_disjoint([(str(f.path), f.nodeids) for f in files])
    except ProvenanceError as exc:
        raise ReportInputError(str(exc)) from None
    merged: dict[str, Any] = {"hosts": [], "sources": [], "created": "",
                              "warnings": check.warnings}
    if check.provenance is not None:
        merged["provenance"] = check.provenance
    for f in files:
        data = f.header
        merged["sources"].append(str(f.path))
        if data.get("host") and data["host"] not in merged["hosts"]:
            merged["hosts"].append(data["host"])
        merged["created"] = max(merged["created"], str(data.get("created", "")))
        for key in ("profile", "git"):
            if key in data and key not in merged:
                merged[key] = data[key]
    return merged


def reread_tests(f: ResultsFile) -> list[Any]:
    """The tests of a file read before (``read_results`` with its digest), read again:
    ReportInputError when its bytes are not the ones read and checked then."""
    data, digest = read_results(f.path, digest=True)
    if digest != f.digest:
        raise ReportInputError(f"{f.path}: changed while the report was being made; "
                               "run the command again")
    tests: list[Any] = data["tests"]
    return tests


def load_results(paths: Sequence[str | Path], allow_partial: bool = False) -> dict[str, Any]:
    """Several results files merged into one document held in memory (tests in file order),
    checked as ``merge_header`` does. ``llmperf report`` does not hold every file at once:
    it reads them one at a time (``cli/report.py``)."""
    files: list[ResultsFile] = []
    tests: list[Any] = []
    for raw in paths:
        data, digest = read_results(raw)
        for _ in checked_tests(raw, data):
            pass
        files.append(ResultsFile.of(raw, data, digest))
        tests.extend(data["tests"])
    return {**merge_header(files, allow_partial), "tests": tests}


@dataclass
class History:
    """Baselines per profile, oldest first, and one message per file that could not be
    loaded."""

    profiles: dict[str, list[Baseline]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def profiles_with(self, nodeid: str | TestKey) -> list[str]:
        """The profiles with a baseline holding the test (a ``TestKey`` also finds it under
        an older spelling of its key)."""
        key = nodeid if isinstance(nodeid, TestKey) else TestKey.stored(nodeid)
        return [p for p, docs in self.profiles.items()
                if any(key.find(d.tests) is not None for d in docs)]


def results_key(test: Mapping[str, Any]) -> TestKey:
    """A results document test's baseline key (its ``key``, else its node id, for results
    written before keys), with its node id for older spellings (``store.keys``)."""
    nodeid = str(test.get("nodeid", ""))
    key = test.get("key")
    return TestKey.stored(key if isinstance(key, str) and key else nodeid, nodeid)


def _sort_key(baseline: Baseline) -> tuple[str, str, str]:
    return (baseline.committed_at, baseline.saved_at, baseline.commit)


def load_history(directory: str | Path | None) -> History:
    """Every baseline under directory (``<profile>/<commit>.json``), loaded by the baseline
    store; a file it cannot load is skipped, with the store's message."""
    history = History()
    if directory is None:
        return history
    baselines, history.skipped = BaselineStore(directory).load_all()
    for baseline in baselines:  # by profile, as the store lists them
        history.profiles.setdefault(baseline.profile_id, []).append(baseline)
    for docs in history.profiles.values():
        docs.sort(key=_sort_key)
    return history


def check_baselines_dir(directory: str | Path) -> None:
    path = Path(directory)
    if not path.exists():
        raise ReportInputError(f"{path}: no such baselines directory")
    if not path.is_dir():
        raise ReportInputError(f"{path}: not a directory (give the baselines/ directory)")


# --------------------------------------------------------------------------- the view

@dataclass
class CheckRow:
    run: int
    name: str
    metric: str
    op: str
    limit: str
    measured: str
    passed: bool | None  # None: not checked
    baseline: str = ""
    # Tails (issue 25): "p99 of 40 requests" for a tail percentile's limit, else "".
    samples: str = ""


@dataclass
class ComparisonRow:
    metric: str
    baseline: str
    current: str
    change: str
    interval: str
    verdict: str
    css: str
    gated: bool
    change_value: float | None = None
    # Power (issue 25): the smallest change the comparison could detect, and whether the pass
    # was blind (MDE above the tolerance); the tail's sample count ("p99 of 40 requests").
    mde: str = "-"
    blind: bool = False
    samples: str = ""


@dataclass
class TrendPlot:
    metric: str
    svg: str
    points: list[plots.TrendPoint]


@dataclass
class TurnRow:
    """One turn of a multi-turn run: its measured requests and TTFT (ms)."""

    turn: int
    requests: int | None  # None: the results file has no samples to count
    errors: int | None
    ttft_p50_ms: float | None  # the summary's ttft_p50_ms_turn{k}
    ttft_p95_ms: float | None  # from the samples
    prompt_tokens_mean: float | None  # from the samples (None: the engine counted none)


@dataclass
class MultiTurnView:
    """A multi-turn run's per-session figures (the summary's) and its turns."""

    label: str  # "run 2" when the test has several runs, else ""
    sessions: Any
    turns_mean: Any
    duration_p50_s: Any
    duration_max_s: Any
    turns: list[TurnRow]


def multi_turn_view(label: str, run: Mapping[str, Any],
                    records: Sequence[RequestRecord] | None = None) -> MultiTurnView | None:
    """The per-turn and per-session figures of a run (None when it was not multi-turn): TTFT
    p50 by turn as the summary has it; requests, errors, TTFT p95 and the mean prompt length
    per turn from the measured samples (the same records the summary's figures come from;
    ``records``: the run's samples already read, else read here)."""
    summary = run.get("summary") or {}
    p50s = turn_ttfts(summary)
    if not p50s:
        return None
    samples = run.get("samples")
    by_turn: dict[int, list[RequestRecord]] = {}
    for record in records if records is not None else plots.records(samples or []):
        if not record.warmup and record.turn is not None:
            by_turn.setdefault(record.turn, []).append(record)
    rows: list[TurnRow] = []
    for k, p50 in enumerate(p50s, 1):
        recs = by_turn.get(k, [])
        ttfts = latency_series(recs, ("ttft",))["ttft"]
        tokens = [r.prompt_tokens for r in recs if r.prompt_tokens > 0]
        rows.append(TurnRow(
            turn=k, requests=len(recs) if samples else None,
            errors=sum(1 for r in recs if not r.ok) if samples else None,
            ttft_p50_ms=p50, ttft_p95_ms=percentile(ttfts, 95),
            prompt_tokens_mean=sum(tokens) / len(tokens) if tokens else None))
    return MultiTurnView(label=label, sessions=summary.get("sessions"),
                         turns_mean=summary.get("session_turns_mean"),
                         duration_p50_s=summary.get("session_duration_p50_s"),
                         duration_max_s=summary.get("session_duration_max_s"), turns=rows)


@dataclass
class TestView:
    __test__ = False  # not a pytest test class
    index: int
    anchor: str
    nodeid: str
    name: str
    outcome: str
    message: str
    thresholds: dict[str, Any]
    checks: list[CheckRow]
    comparison_status: str
    comparison_message: str
    baseline_commit: str
    profile_id: str
    comparison: list[ComparisonRow]
    summaries: list[dict[str, Any]]  # one per run
    warnings: list[tuple[str, str]]  # (run label, text)
    workload: str
    engine: str
    ttft_cdf: str = ""
    itl_cdf: str = ""
    tokens: str = ""
    trends: list[TrendPlot] = field(default_factory=list)
    trend_note: str = ""
    # The stored gate's warnings (an undecided change) and verdict (gate.comparison_gate).
    gate_warnings: list[str] = field(default_factory=list)
    gate: str = ""
    # Paired A/B verdicts (llmperf_bench.compare, --llmperf-ab): ABVerdict.to_dict() each.
    ab: list[dict[str, Any]] = field(default_factory=list)
    # In a test with a paired A/B, the stored gate's metrics left inconclusive on one run are
    # not shown (the A/B decides): how many there were.
    hidden_inconclusive: int = 0
    ab_plotted: bool = False  # the plots show B's last run beside A's
    # llmperf_bench.capacity searches (CapacityResult.to_dict()) and their sweep plots.
    capacity: list[dict[str, Any]] = field(default_factory=list)
    capacity_plots: list[list[str]] = field(default_factory=list)
    # Multi-turn runs: per-session figures and per-turn rows, and TTFT by turn as a plot.
    multi_turn: list[MultiTurnView] = field(default_factory=list)
    turns_plot: str = ""
    # What moved with a regression (verdict/attribution.py), as the terminal's lines.
    attribution: list[str] = field(default_factory=list)
    # Length distributions (issue 24): histograms of the realized input and output lengths,
    # when they vary from request to request.
    length_plots: list[str] = field(default_factory=list)
    # Model mixes (Workload.models): each run's per-model rows (report/model_table.py).
    model_mix: list[ModelMixView] = field(default_factory=list)

    @property
    def sections(self) -> list[tuple[Section, tuple[tuple[str, str], ...]]]:
        """The optional tables (metric_table.SECTIONS: the server's own figures, the open
        loop's from the schedule...) with the columns (key, label) some run measured; a
        section no run has is left out (the page shows no table for it)."""
        return [(section, columns) for section in SECTIONS
                if (columns := section.present(self.summaries))]

    @property
    def checks_passed(self) -> int:
        return sum(1 for c in self.checks if c.passed)

    @property
    def checks_failed(self) -> list[CheckRow]:
        return [c for c in self.checks if c.passed is False]

    @property
    def regressions(self) -> list[ComparisonRow]:
        return [r for r in self.comparison if r.verdict == "regression"]

    @property
    def ab_regressions(self) -> list[tuple[str, str]]:
        """(metric, change) of every gated metric a paired A/B found regressed."""
        return [(str(m.get("metric")), pct(m.get("change_pct")))
                for e in self.ab for m in e.get("metrics") or []
                if isinstance(m, Mapping) and m.get("gated") and m.get("verdict") == "regression"]

    @property
    def ab_verdicts(self) -> list[tuple[str, str, str, str]]:
        """(css class, verdict, changes, label) per paired A/B, for the overview table: the
        verdict, its headline changes ("output_tps -70.0%") and B's label when the test has
        several A/Bs (else "")."""
        out = []
        for e in self.ab:
            verdict, changes = ab_headline(e)
            label = str(e.get("label_b") or "B") if len(self.ab) > 1 else ""
            out.append((AB_CLASS.get(verdict, "muted"), verdict, changes, label))
        return out

    @property
    def baseline_verdict(self) -> tuple[str, str]:
        """(css class, words) summing up the comparison for the overview table."""
        if not self.comparison and self.hidden_inconclusive:
            return "muted", "not decided on one run (see A/B)"
        if not self.comparison:
            return "muted", self.comparison_status or "-"
        verdicts = [r.verdict for r in self.comparison]
        gated = {r.verdict for r in self.comparison if r.gated}
        if "regression" in verdicts:
            return "bad", f"{verdicts.count('regression')} regression(s)"
        if self.gate == "regression":  # against the last clean baseline
            return "bad", "regression vs last clean baseline"
        if self.gate_warnings:
            return "warn", "undecided (warning)"
        if "warn" in verdicts:
            return "warn", f"{verdicts.count('warn')} warning(s)"
        if "inconclusive" in gated:
            return "muted", "inconclusive"
        if "improvement" in gated:
            return "good", "improvement"
        if any(r.blind for r in self.comparison if r.gated):  # issue 25: could not see
            return "warn", "no regression, blind"
        return "good", "no regression"

    @property
    def failed(self) -> bool:
        return self.outcome not in ("passed", "baseline")


@dataclass
class Glance:
    tests: int
    passed: int
    failed: int
    thresholds_passed: int
    thresholds_failed: int
    regressions: list[tuple[str, str, str]]  # (test name, metric, change)
    baseline_commits: list[str]
    profiles: list[str]
    engines: list[str]
    models: list[str]
    hardware: list[str]
    warnings: int
    compared: int
    # Paired A/B: (test name, metric, change) of each gated regression, and the tests paired.
    ab_regressions: list[tuple[str, str, str]] = field(default_factory=list)
    ab_tests: int = 0

    @property
    def regression_count(self) -> int:
        """Regressions against the baseline and in paired A/Bs, one per test and metric."""
        return len(self.regressions) + len(self.ab_regressions)


@dataclass
class Report:
    title: str
    created: str
    glance: Glance
    tests: list[TestView]
    sources: list[str]
    notes: list[str]

    @property
    def has_ab(self) -> bool:
        """Some test has a paired A/B (the overview then has an A/B column)."""
        return any(t.ab for t in self.tests)


AB_CLASS: dict[str, str] = {"regression": "bad", "improvement": "good", "ok": "ok",
                            "inconclusive": "warn"}
AB_SHOWN = 3  # metrics named in an A/B headline at most


def ab_headline(entry: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, changes) of one paired A/B (``ABVerdict.to_dict``): the verdict and the
    changes of the gated metrics behind it, largest first ("regression", "output_tps -70.0%";
    for "ok" the largest change measured; "" when none was measured)."""
    verdict = str(entry.get("verdict") or "-")
    gated = [m for m in entry.get("metrics") or []
             if isinstance(m, Mapping) and m.get("gated")]
    behind = [m for m in gated if m.get("verdict") == verdict] or (
        gated if verdict == "ok" else [])
    changed = [m for m in behind if is_finite_number(m.get("change_pct"))]
    changed.sort(key=lambda m: -abs(float(m["change_pct"])))
    if verdict == "ok":
        changed = changed[:1]
    shown = ", ".join(f"{m.get('metric')} {pct(m.get('change_pct'))}"
                      for m in changed[:AB_SHOWN])
    if len(changed) > AB_SHOWN:
        shown += f" (+{len(changed) - AB_SHOWN} more)"
    return verdict, shown


def _check_samples(check: Mapping[str, Any]) -> str:
    """``p99 of 40 requests`` for a tail percentile's check that recorded its count."""
    samples = check.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int):
        return ""
    return tails.tail_words(str(check.get("metric")), samples)


def _checks(test: Mapping[str, Any]) -> list[CheckRow]:
    rows: list[CheckRow] = []
    runs = test.get("runs", [])
    for i, run in enumerate(runs):
        checks = (run.get("client") or {}).get("checks")
        if checks is None:
            continue
        for c in checks:
            op = "≤" if c.get("direction") == "max" else "≥"
            rows.append(CheckRow(
                run=i + 1, name=str(c.get("name")), metric=str(c.get("metric")), op=op,
                limit=display(c.get("limit")), measured=display(c.get("measured")),
                passed=bool(c.get("passed")), baseline=display(c.get("baseline"))
                if c.get("baseline") is not None else "",
                samples=_check_samples(c),
            ))
    if not rows and runs:
        for name in sorted(test.get("thresholds", {})):
            if name in THRESHOLDS:
                metric, direction = THRESHOLDS[name]
                rows.append(CheckRow(run=1, name=name, metric=metric,
                                     op="≤" if direction == "max" else "≥",
                                     limit=display(test["thresholds"][name]), measured="-",
                                     passed=None))
    return rows


def _comparison(test: Mapping[str, Any]) -> tuple[dict[str, Any], list[ComparisonRow]]:
    comp = test.get("comparison") or {}
    rows: list[ComparisonRow] = []
    for m in comp.get("metrics", []) or []:
        lo, hi = m.get("ci_low_pct"), m.get("ci_high_pct")
        interval = f"[{pct(lo)}, {pct(hi)}]" if lo is not None or hi is not None else "-"
        verdict = str(m.get("verdict", ""))
        change = m.get("change_pct")
        rows.append(ComparisonRow(
            metric=str(m.get("metric")), baseline=display(m.get("baseline")),
            current=display(m.get("current")), change=pct(change), interval=interval,
            verdict=verdict, css=VERDICT_CLASS.get(verdict, "muted"),
            gated=bool(m.get("gated")),
            change_value=float(change) if isinstance(change, int | float) else None,
            **power_cells(m),
        ))
    return comp, rows


def power_cells(m: Mapping[str, Any]) -> dict[str, Any]:
    """A comparison row's power cells (issue 25): ``mde`` ("12.3%" or "-"), ``blind`` and
    ``samples`` ("p99 of 40 requests", for a tail percentile)."""
    mde = m.get("mde_pct")
    samples = m.get("tail_samples")
    of = ""
    if isinstance(samples, int) and not isinstance(samples, bool):
        of = tails.tail_words(str(m.get("metric")), samples)
    return {"mde": f"{mde:.1f}%" if is_finite_number(mde) else "-",
            "blind": bool(m.get("blind")), "samples": of}


def _median_range(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _run_values(runs: Iterable[Mapping[str, Any]], metric: str) -> list[float]:
    out: list[float] = []
    for run in runs:
        value = (run.get("summary") or {}).get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            out.append(float(value))
    return out


def trend_points(
    test: Mapping[str, Any], docs: Sequence[Baseline], metric: str,
    verdicts: Mapping[str, str],
) -> list[plots.TrendPoint]:
    """The metric per baseline commit (oldest first), then this run; marks regressions.

    A point is a "regression" when the regression gate said so: for this run, the test's
    comparison; for a stored commit, a comparison stored with its baseline, when there is
    one. A stored commit is a "jump" when its median is worse than the previous commit's by
    more than the test's tolerance (max_regression_pct, default 5%): a hint, not a verdict.
    """
    key = results_key(test)
    runs = test.get("runs", [])
    current_started = {r.get("started_at") for r in runs if r.get("started_at")}
    tolerance = Thresholds.of(test.get("thresholds")).tolerance_for(metric)
    sign = -1.0 if higher_is_better(metric) else 1.0
    points: list[plots.TrendPoint] = []
    current_found = False
    prev: float | None = None
    for doc in docs:
        found = key.find(doc.tests)
        entry = doc.tests.get(found) if found is not None else None
        if entry is None:
            continue
        values = _run_values(entry.get("runs", []), metric)
        if not values:
            continue
        mid, lo, hi = _median_range(values)
        started = {r.get("started_at") for r in entry.get("runs", []) if r.get("started_at")}
        is_current = bool(current_started) and started == current_started
        current_found = current_found or is_current
        stored = {str(m.get("metric")): str(m.get("verdict"))
                  for m in (entry.get("comparison") or {}).get("metrics", []) or []}
        mark, note = "", ""
        verdict = verdicts.get(metric) if is_current else stored.get(metric)
        if verdict == "regression":
            mark, note = "regression", "regression (gate)"
        elif prev is not None and prev != 0:
            change = (mid - prev) / abs(prev) * 100
            if sign * change > tolerance:
                mark, note = "jump", f"{change:+.1f}% vs the previous commit"
        label = short_commit(doc.commit)[:7] or "?"
        points.append(plots.TrendPoint(label, mid, lo, hi, mark, note, is_current))
        prev = mid
    if not current_found and test.get("outcome") != "baseline":
        values = _run_values(runs, metric)
        if values:
            mid, lo, hi = _median_range(values)
            mark, note = "", ""
            if verdicts.get(metric) == "regression":
                mark, note = "regression", "regression (gate)"
            elif prev is not None and prev != 0:
                change = (mid - prev) / abs(prev) * 100
                if sign * change > tolerance:
                    mark, note = "jump", f"{change:+.1f}% vs the previous commit"
            points.append(plots.TrendPoint("this run", mid, lo, hi, mark, note, True))
    return points


def _describe_workload(runs: Sequence[Mapping[str, Any]]) -> str:
    if not runs:
        return ""
    w = runs[0].get("workload") or {}
    if not w:
        return ""
    parts = [f"{w.get('requests')} requests", f"{lengths.describe(w.get('input_tokens'))} in / "
             f"{lengths.describe(w.get('output_tokens'))} out tokens",
             f"concurrency {w.get('concurrency')}"]
    if w.get("dataset"):  # the prompts come from a dataset (run/datasets.py)
        parts[1] = (f"prompts from {Path(str(w['dataset'])).name}, "
                    f"{lengths.describe(w.get('output_tokens'))} out tokens unless the "
                    "dataset gives them")
    if w.get("turns") or w.get("conversations_file"):  # multi-turn: requests count sessions
        turns = f" of {w['turns']} turns" if w.get("turns") else ""
        source = (f" from {Path(str(w['conversations_file'])).name}"
                  if w.get("conversations_file") else "")
        parts[0] = f"{w.get('requests')} sessions{turns}{source}"
        think = w.get("think_time_s")
        if isinstance(think, list) and len(think) == 2:
            parts.append(f"think time {think[0]}-{think[1]} s")
        elif think:
            parts.append(f"think time {think} s")
    if w.get("embeddings"):  # issue 24, item 6: nothing comes out but a vector
        parts[1] = f"embeddings of {w.get('input_tokens')} input tokens"
    if w.get("rate"):
        parts.append(f"{w.get('arrival', 'poisson')} arrivals at {w['rate']} req/s")
    if w.get("warmup"):
        parts.append(f"{w['warmup']} warm-up")
    if w.get("slo"):
        parts.append("SLO " + ", ".join(f"{k} {v}" for k, v in w["slo"].items()))
    return ", ".join(parts)


def describe_engine(engine: Mapping[str, Any]) -> str:
    if not engine:
        return ""
    kind = engine.get("kind", "engine")
    version = engine.get("version")
    model = engine.get("model_desc") or engine.get("model") or ""
    text = f"{kind} {version}" if version else str(kind)
    return f"{text}, {model}" if model else text


def describe_host(host: Mapping[str, Any]) -> str:
    """A host (results JSON) or a profile's hardware (baselines) in a few words."""
    if not host:
        return ""
    bits = [str(host.get("cpu_model") or host.get("processor") or host.get("machine") or "")]
    cores = host.get("cpu_cores") or host.get("cpu_count")
    if cores:
        bits.append(f"{cores} cores")
    gpus = host.get("gpus") or []
    names = [str(g.get("name")) for g in gpus if isinstance(g, Mapping) and g.get("name")]
    for name in sorted(set(names)):
        count = names.count(name)
        bits.append(f"{count} x {name}" if count > 1 else name)
    return ", ".join(b for b in bits if b)


def _hardware(doc: Mapping[str, Any], history: History, profiles: Sequence[str]) -> list[str]:
    """The hardware profile: this session's, else the baselines' of its profiles, else the
    results files' hosts."""
    found: list[Mapping[str, Any]] = []
    if isinstance(doc.get("hardware"), Mapping):
        found.append(doc["hardware"])
    else:
        for pid in profiles:
            docs = history.profiles.get(pid) or []
            hw = docs[-1].profile.get("hardware") if docs else None
            if isinstance(hw, Mapping):
                found.append(hw)
    if not found:
        found = list(doc.get("hosts") or ([doc["host"]] if doc.get("host") else []))
    out: list[str] = []
    for hw in found:
        text = describe_host(hw)
        if text and text not in out:
            out.append(text)
    return out


def _test_view(index: int, test: Mapping[str, Any], history: History, with_plots: bool,
               records: Sequence[list[RequestRecord]] | None = None) -> TestView:
    """The view of one test; ``records``: its runs' samples already read
    (``checked_tests``), else read here."""
    nodeid = str(test["nodeid"])
    runs = test.get("runs", [])
    comp, rows = _comparison(test)
    many = len(runs) > 1
    view = TestView(
        index=index, anchor=f"test-{index + 1}", nodeid=nodeid,
        name=nodeid.split("::", 1)[-1], outcome=str(test.get("outcome", "")),
        message=str(test.get("message", "")).removeprefix("Failed: "),
        thresholds=dict(test.get("thresholds", {})),
        checks=_checks(test), comparison_status=str(comp.get("status", "")),
        comparison_message=str(comp.get("message", "")),
        baseline_commit=short_commit(comp.get("baseline_commit")),
        profile_id=str(comp.get("profile_id") or ""), comparison=rows,
        summaries=[dict(r.get("summary") or {}) for r in runs],
        warnings=[(f"run {i + 1}" if many else "", str(w))
                  for i, r in enumerate(runs) for w in r.get("warnings", [])],
        workload=_describe_workload(runs),
        engine=describe_engine(runs[0].get("engine") or {}) if runs else "",
        gate_warnings=[w for w in comp.get("warnings") or [] if isinstance(w, str)],
        gate=str(comp.get("gate") or ""),
        ab=[dict(a) for a in test.get("ab") or [] if isinstance(a, Mapping)],
        capacity=[dict(c) for c in test.get("capacity") or [] if isinstance(c, Mapping)],
        attribution=[line.strip() for line in attribution_lines(
            comp.get("attribution") if isinstance(comp.get("attribution"), Mapping) else None
        )[1:]],
    )
    if view.ab:  # the paired A/B decides: the stored gate's one-run noise is left out
        view.hidden_inconclusive = sum(1 for r in rows if r.verdict == "inconclusive")
        view.comparison = [r for r in rows if r.verdict != "inconclusive"]
        view.gate_warnings = []
    labels = [f"run {i + 1}" if many else "" for i in range(len(runs))]
    # Each run's samples are read once, for the plots and the per-turn table alike; without
    # plots (and not given) only a multi-turn run's are read, by multi_turn_view.
    per_run: list[tuple[str, list[RequestRecord]]] = []
    if records is not None:
        per_run = list(zip(labels, records, strict=True))
    elif with_plots:
        per_run = [(labels[i], plots.records(r.get("samples", []))) for i, r in enumerate(runs)]
    view.multi_turn = [m for i, r in enumerate(runs)
                       if (m := multi_turn_view(labels[i], r,
                                                per_run[i][1] if per_run else None))]
    view.model_mix = [mix for i, r in enumerate(runs) if (mix := model_mix_view(labels[i], r))]
    if not with_plots:
        return view
    if view.multi_turn:
        view.turns_plot = plots.turns_svg(
            [(m.label, [(r.turn, r.ttft_p50_ms, r.ttft_p95_ms) for r in m.turns])
             for m in view.multi_turn])
    view.capacity_plots = [plots.capacity_svgs(c) for c in view.capacity]
    series = _with_b(per_run, view.ab)
    view.ab_plotted = len(series) > len(per_run)
    view.ttft_cdf = plots.cdf_svg([(lbl, plots.ttft_ms(s)) for lbl, s in series],
                                  "TTFT distribution (CDF)", "TTFT (ms)", metric="ttft")
    view.itl_cdf = plots.cdf_svg([(lbl, plots.itl_ms(s)) for lbl, s in series],
                                 "ITL distribution (CDF)", "inter-token latency (ms)",
                                 metric="itl")
    view.tokens = plots.tokens_over_time_svg(series)
    view.length_plots = _length_plots(series)
    if any(r.embedding for _, s in series for r in s):
        # Embeddings (issue 24, item 6): no tokens stream back; the request latency is the one
        # latency, and there is no inter-token latency or output token to plot.
        view.ttft_cdf = plots.cdf_svg(
            [(lbl, latency_series(s, ("e2e",))["e2e"]) for lbl, s in series],
            "Embedding request latency (CDF)", "E2E latency (ms)", metric="e2e")
        view.itl_cdf = view.tokens = ""
    profile = view.profile_id
    if not profile:
        candidates = history.profiles_with(results_key(test))
        if len(candidates) == 1:
            profile = candidates[0]
        elif len(candidates) > 1:
            view.trend_note = (f"{len(candidates)} baseline profiles hold this test and the "
                               "results do not say which one they belong to")
    docs = history.profiles.get(profile, []) if profile else []
    verdicts = {r.metric: r.verdict for r in rows}
    if not docs and not view.trend_note:
        view.trend_note = ("no baselines for this profile yet" if history.profiles
                           else "no baselines found")
    for metric in TREND_METRICS:
        points = trend_points(test, docs, metric, verdicts)
        if any(not p.current for p in points) or len(points) > 1:
            view.trends.append(TrendPlot(metric, plots.trend_svg(metric, points), points))
    if docs and not view.trends:
        view.trend_note = f"no baselines of this test yet in profile {profile}"
    return view


def _length_plots(series: Sequence[tuple[str, Sequence[RequestRecord]]]) -> list[str]:
    """Histograms of the realized input and output lengths (length distributions, datasets),
    each only when its lengths vary from request to request."""
    out = []
    for kind in ("input", "output"):
        runs = [(label, plots.realized_lengths(s, kind)) for label, s in series]
        if len({n for _, values in runs for n in values}) > 1:
            out.append(plots.lengths_svg(runs, kind))
    return out


PLOT_LABEL_CHARS = 40  # a plot legend's label at most (B's label names its overrides)


def _plot_label(text: str) -> str:
    return text if len(text) <= PLOT_LABEL_CHARS else text[:PLOT_LABEL_CHARS - 1] + "…"


def _with_b(per_run: Sequence[tuple[str, list[RequestRecord]]],
            ab: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[RequestRecord]]]:
    """The runs to plot: the test's runs, and for each paired A/B with B's samples, B's last
    run beside A's (A's: the test's run ``a_run`` (--llmperf-ab keeps it), renamed A, else
    the entry's own ``samples_a``)."""
    series = list(per_run)
    for entry in ab:
        b = plots.records(entry.get("samples_b") or [])
        if not b:
            continue
        label_a = str(entry.get("label_a") or "A")
        a_run = entry.get("a_run")
        if isinstance(a_run, int) and not isinstance(a_run, bool) and 0 <= a_run < len(per_run):
            label, records = series[a_run]
            series[a_run] = (f"{label}: {label_a}" if label else label_a, records)
        elif entry.get("samples_a"):
            series.append((label_a, plots.records(entry["samples_a"])))
        series.append((_plot_label(str(entry.get("label_b") or "B")), b))
    return series


class ReportBuilder:
    """The report, built one test at a time (``add``), so that the tests of a results file
    need not all be in memory at once: a view keeps the test's figures and plots, not its
    samples. ``report`` gives the page's content."""

    def __init__(self, history: History | None = None, with_plots: bool = True) -> None:
        self.history = history or History()
        self.with_plots = with_plots
        self.tests: list[TestView] = []
        self.engines: list[str] = []
        self.models: list[str] = []

    def add(self, test: Mapping[str, Any],
            records: Sequence[list[RequestRecord]] | None = None) -> None:
        """One test of a results document (``records``: its runs' samples, when read: the
        plots use them)."""
        self.tests.append(_test_view(len(self.tests), test, self.history, self.with_plots,
                                     records))
        for run in test.get("runs", []):
            e = run.get("engine") or {}
            kind = f"{e.get('kind', '?')} {e.get('version', '')}".strip()
            model = str(e.get("model_desc") or e.get("model") or "")
            if kind not in self.engines:
                self.engines.append(kind)
            if model and model not in self.models:
                self.models.append(model)

    def report(self, doc: Mapping[str, Any], title: str = "pytest-llmperf report") -> Report:
        """The report of the tests added, with ``doc``'s top level (a results document's, or
        a merge's: ``merge_header``): its creation time, sources, hardware and hosts."""
        tests = self.tests
        profiles = sorted({t.profile_id for t in tests if t.profile_id})
        glance = Glance(
            tests=len(tests),
            passed=sum(1 for t in tests if t.outcome == "passed"),
            failed=sum(1 for t in tests if t.failed),
            thresholds_passed=sum(t.checks_passed for t in tests),
            thresholds_failed=sum(len(t.checks_failed) for t in tests),
            regressions=[(t.name, r.metric, r.change) for t in tests for r in t.regressions],
            baseline_commits=sorted({t.baseline_commit for t in tests if t.baseline_commit}),
            profiles=profiles,
            engines=list(self.engines),
            models=list(self.models),
            hardware=_hardware(doc, self.history, profiles),
            warnings=sum(len(t.warnings) for t in tests),
            compared=sum(1 for t in tests if t.comparison_status == "compared"),
            ab_regressions=[(t.name, metric, change) for t in tests
                            for metric, change in t.ab_regressions],
            ab_tests=sum(1 for t in tests if t.ab),
        )
        return Report(title=title, created=str(doc.get("created", "")), glance=glance,
                      tests=list(tests), sources=list(doc.get("sources", [])),
                      notes=list(self.history.skipped))


def build_report(doc: Mapping[str, Any], history: History | None = None,
                 title: str = "pytest-llmperf report", with_plots: bool = True) -> Report:
    """The report of a results document held in memory (a session's, or baselines')."""
    builder = ReportBuilder(history, with_plots)
    for test in doc.get("tests", []):
        builder.add(test)
    return builder.report(doc, title)


def document_from_history(history: History) -> dict[str, Any]:
    """With no results given: each profile's newest baseline, as if it were a results file.

    A test whose stored runs fail the results checks (a sample of the wrong type) is left
    out, with a note in ``history.skipped`` that the report prints."""
    tests: list[dict[str, Any]] = []
    created = ""
    hosts: list[dict[str, Any]] = []
    for profile, docs in history.profiles.items():
        newest = docs[-1]
        created = max(created, newest.saved_at)
        host = newest.profile.get("hardware")
        if isinstance(host, Mapping) and host not in hosts:
            hosts.append(dict(host))
        for nodeid, entry in sorted(newest.tests.items()):
            test = {
                "nodeid": nodeid, "outcome": "baseline", "thresholds": {},
                "runs": [dict(r) for r in entry.get("runs", []) if isinstance(r, Mapping)],
                "comparison": {"profile_id": profile, "status": "baseline",
                               "baseline_commit": newest.commit,
                               "message": f"newest baseline of profile {profile}",
                               "metrics": []},
            }
            try:  # the same checks as a results file's (samples included)
                _check_test(nodeid, test)
            except _Bad as exc:
                history.skipped.append(f"{newest.path}: {exc}")
                continue
            tests.append(test)
    return {"tests": tests, "created": created, "hosts": hosts}
