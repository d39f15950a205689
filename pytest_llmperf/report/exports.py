"""A results document in the formats of the dashboards users already run.

Pure: a ``--llmperf-json`` document (results.py) in, the other format's data out. Each test is
one benchmark, named by its node id; each performance figure of the summary (metric_table:
every metric with a direction) is one measure, its value the median over the test's runs,
its range the runs' lowest and highest value (when there are several runs).

- ``bencher``: Bencher Metric Format (BMF) JSON, for ``bencher run --adapter json --file``:
  ``{test: {measure-slug: {"value", "lower_value", "upper_value"}}}``; slugs are the summary
  keys in kebab case (``ttft-p50-ms``), which Bencher creates as measures on first sight.
- ``github_benchmark``: github-action-benchmark's ``customSmallerIsBetter`` (latencies,
  memory, errors...) or ``customBiggerIsBetter`` (throughput, goodput...) JSON: a list of
  ``{"name", "unit", "value", "range", "extra"}``.
- ``prometheus_registry``: a prometheus_client registry with one gauge per figure
  (``llmperf_<key>``, labels ``test`` and ``profile``), to push to a Pushgateway.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping
from typing import Any

from ..metric_table import METRICS, Metric

FORMATS = ("bencher", "github-smaller", "github-bigger", "pushgateway")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def figures(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, Metric, list[float]]]:
    """(node id, profile id, metric, the runs' values) for every performance figure a test's
    runs measured (metrics without a direction, such as request counts, left out)."""
    for test in doc.get("tests") or []:
        if not isinstance(test, Mapping):
            continue
        runs = [r for r in test.get("runs") or [] if isinstance(r, Mapping)]
        comparison = test.get("comparison")
        profile = str((comparison or {}).get("profile_id") or "") if isinstance(
            comparison, Mapping) else ""
        for metric in METRICS:
            if metric.better is None:
                continue
            values = [v for r in runs
                      if (v := _number((r.get("summary") or {}).get(metric.key))) is not None]
            if values:
                yield str(test.get("nodeid", "")), profile, metric, values


def bencher(doc: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format: per test, per measure slug, the median and the runs' range."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for nodeid, _, metric, values in figures(doc):
        entry = {"value": float(statistics.median(values))}
        if len(values) > 1:
            entry["lower_value"], entry["upper_value"] = min(values), max(values)
        out.setdefault(nodeid, {})[metric.key.replace("_", "-")] = entry
    return out


def github_benchmark(doc: Mapping[str, Any], bigger: bool) -> list[dict[str, Any]]:
    """github-action-benchmark's custom JSON: the figures where bigger is better (``bigger``,
    for ``customBiggerIsBetter``) or smaller is (``customSmallerIsBetter``)."""
    want = "higher" if bigger else "lower"
    commit = str((doc.get("provenance") or {}).get("commit") or "") if isinstance(
        doc.get("provenance"), Mapping) else ""
    out = []
    for nodeid, _, metric, values in figures(doc):
        if metric.better != want:
            continue
        value = float(statistics.median(values))
        entry: dict[str, Any] = {"name": f"{nodeid} {metric.key}", "unit": metric.unit or "1",
                                 "value": value}
        if len(values) > 1:
            entry["range"] = f"± {(max(values) - min(values)) / 2:.6g}"
        entry["extra"] = f"median of {len(values)} run(s)" + (
            f"; commit {commit[:12]}" if commit else "")
        out.append(entry)
    return out


def prometheus_registry(doc: Mapping[str, Any]) -> Any:
    """A prometheus_client CollectorRegistry: ``llmperf_<key>{test, profile}`` gauges, the
    median over each test's runs (``push_to_gateway`` sends it)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    gauges: dict[str, Any] = {}
    for nodeid, profile, metric, values in figures(doc):
        gauge = gauges.get(metric.key)
        if gauge is None:
            unit = f" ({metric.unit})" if metric.unit else ""
            gauge = gauges[metric.key] = Gauge(
                f"llmperf_{metric.key}", f"pytest-llmperf {metric.label}{unit}, the median "
                "over the test's runs", ("test", "profile"), registry=registry)
        gauge.labels(nodeid, profile).set(float(statistics.median(values)))
    return registry
