"""Model mixes (Workload.models) in the HTML page and the Markdown summary: one row per model
with its share of the requests and its own summary's figures, as the results document has
them (``runs[].by_model``); runs without a mix show no such table; a bad by_model value is one
line naming where it is."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import external_references, metric_cells, parse_page, results_doc, table_rows

from pytest_llmperf.formatting import display as fmt
from pytest_llmperf.report.html import render_html
from pytest_llmperf.report.markdown import render_markdown
from pytest_llmperf.report.view import ReportInputError, build_report, checked_tests

BY_MODEL: dict[str, dict[str, Any]] = {
    "adapter-a": {"requests": 7, "errors": 0, "ttft_p50_ms": 104.0, "ttft_p95_ms": 106.7,
                  "tpot_p50_ms": 10.0, "e2e_p95_ms": 136.7, "output_tps": 20.5, "rps": 5.1},
    "base": {"requests": 3, "errors": 1, "ttft_p50_ms": 309.0, "ttft_p95_ms": 309.9,
             "tpot_p50_ms": 10.0, "e2e_p95_ms": 339.9, "output_tps": 8.2, "rps": 2.0},
}


def mixed_doc() -> dict[str, Any]:
    doc = results_doc()
    doc["tests"][0]["runs"][0]["by_model"] = BY_MODEL
    doc["tests"][0]["thresholds"]["per_model"] = {"base": {"ttft_p95_ms": 200}}
    return doc


def test_the_page_has_a_row_per_model_with_the_results_figures() -> None:
    html = render_html(build_report(mixed_doc()))
    assert external_references(html) == []
    page = parse_page(html)
    tables = page.find_all("table", class_="per-model")
    assert len(tables) == 1  # test_prefill had no mix
    rows = {r.attrs["data-model"]: metric_cells(r) for r in tables[0].find_all("tr")
            if "data-model" in r.attrs}
    assert sorted(rows) == ["adapter-a", "base"]
    assert rows["adapter-a"]["share"] == fmt(0.7) and rows["base"]["share"] == fmt(0.3)
    for model, figures in BY_MODEL.items():
        for key, value in figures.items():
            assert rows[model][key] == fmt(value), (model, key)


def test_the_markdown_summary_has_a_row_per_model() -> None:
    text = render_markdown(build_report(mixed_doc(), with_plots=False))
    rows = [r for r in table_rows(text) if r and r[0] == "`test_chat`" and len(r) > 3
            and r[1].startswith("`")]
    assert [r[1:3] for r in rows] == [["`adapter-a`", "70%"], ["`base`", "30%"]]
    header = next(r for r in table_rows(text) if r[0] == "model mix test")
    assert header[3:6] == ["requests", "errors", "TTFT p50 ms"]
    assert rows[1][3:6] == ["3", "1", fmt(309.0)]
    assert "model mix test" not in render_markdown(build_report(results_doc()))


@pytest.mark.parametrize(("value", "where"), [
    ({"a": {"ttft_p50_ms": "fast"}}, "runs[0].by_model.a.ttft_p50_ms='fast' is not a number"),
    ({"a": [1]}, "runs[0].by_model.a must be an object"),
    ([1], "runs[0].by_model must be an object"),
])
def test_a_bad_by_model_value_is_named(value: Any, where: str) -> None:
    doc = results_doc()
    doc["tests"][0]["runs"][0]["by_model"] = value
    with pytest.raises(ReportInputError) as err:
        list(checked_tests("results.json", doc))
    assert where in str(err.value) and "\n" not in str(err.value)


def test_per_model_limits_in_the_thresholds_are_read() -> None:
    list(checked_tests("results.json", mixed_doc()))  # no error: limits per model are numbers
    doc = mixed_doc()
    doc["tests"][0]["thresholds"]["per_model"] = {"base": {"ttft_p95_ms": "x"}}
    with pytest.raises(ReportInputError, match=r"thresholds\.per_model\.base\.ttft_p95_ms"):
        list(checked_tests("results.json", doc))
