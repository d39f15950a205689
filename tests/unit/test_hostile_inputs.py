"""Issue 15, classes 6 and 7: odd values from a user or a file are rejected where they enter,
with one line naming the bad value; nothing is reinterpreted and nothing ends in a traceback
from our code.

The edges: ``settings.convert`` (command line, ini file, environment, the engine factory),
``Workload.__post_init__`` and the JSONL prompts reader, ``validate_marker``, and the results
files ``llmperf report --json`` reads (``view.load_results``, ``RequestRecord.from_dict``).

Split by tier from tests/test_hostile_inputs.py: these are its unit tests; the others are in
tests/sessions/test_hostile_inputs_session.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.cli.main import main as cli_main
from pytest_llmperf.report.view import (
    History,
    ReportInputError,
    build_report,
    document_from_history,
    load_results,
)
from pytest_llmperf.run.metrics import RequestRecord
from pytest_llmperf.run.workload import Workload, WorkloadError, jsonl_prompts
from pytest_llmperf.settings import OPTION_BY_NAME, ConfigError, OptionSpec, convert, resolve
from pytest_llmperf.store.baselines import Baseline
from pytest_llmperf.verdict.thresholds import MarkerError, validate_marker

HUGE = 10**400  # an int no float can hold


# --------------------------------------------------------------------------- settings


def _convert(name: str, raw: Any) -> Any:
    spec = OPTION_BY_NAME[name]
    return convert(spec, raw, spec.flag)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e400", float("nan"), HUGE])
@pytest.mark.parametrize("name", ["request_timeout", "server_timeout", "alpha",
                                  "gpu_memory_utilization"])
def test_float_options_reject_values_that_are_not_finite(name: str, raw: Any) -> None:
    flag = OPTION_BY_NAME[name].flag
    with pytest.raises(ConfigError, match=r"is not a finite number") as info:
        _convert(name, raw)
    assert str(info.value).startswith(f"{flag}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("request_timeout", "0", "must be > 0"),
        ("request_timeout", "-5", "must be > 0"),
        ("server_timeout", "0", "must be > 0"),
        ("gpu_memory_utilization", "0", "must be > 0 and <= 1"),
        ("gpu_memory_utilization", "1.5", "must be > 0 and <= 1"),
        ("alpha", "0", "must be between 0 and 0.5"),
        ("alpha", "0.5", "must be between 0 and 0.5"),
        ("alpha", "-0.01", "must be between 0 and 0.5"),
    ],
)
def test_float_options_out_of_range_are_rejected_not_replaced(
    name: str, raw: str, fragment: str
) -> None:
    flag = OPTION_BY_NAME[name].flag
    with pytest.raises(ConfigError, match=fragment) as info:
        _convert(name, raw)
    assert str(info.value).startswith(f"{flag}: {raw!r}")


@pytest.mark.parametrize(("name", "raw", "value"),
                         [("request_timeout", "0.5", 0.5), ("server_timeout", "1", 1.0),
                          ("gpu_memory_utilization", "1", 1.0), ("alpha", "0.05", 0.05),
                          ("alpha", 0.25, 0.25)])
def test_float_options_in_range_are_kept(name: str, raw: Any, value: float) -> None:
    assert _convert(name, raw) == value


def test_the_range_rule_applies_to_ini_and_environment_alike() -> None:
    def none(spec: OptionSpec) -> Any:
        return None

    def ini(spec: OptionSpec) -> Any:
        return "nan" if spec.name == "request_timeout" else None

    with pytest.raises(ConfigError, match=r"^ini key llmperf_request_timeout: 'nan' is not a "
                                          r"finite number"):
        resolve(none, ini, environ={}, engines=("llama_cpp",))
    with pytest.raises(ConfigError, match=r"^environment variable LLMPERF_SERVER_TIMEOUT: "
                                          r"'0' must be > 0"):
        resolve(none, none, environ={"LLMPERF_SERVER_TIMEOUT": "0"}, engines=("llama_cpp",))


def test_enormous_whole_numbers_are_rejected_by_int_options() -> None:
    with pytest.raises(ConfigError, match=r"--llmperf-repeats: .* is not a finite number"):
        _convert("repeats", HUGE)


# --------------------------------------------------------------------------- workload


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"duration_s": math.inf}, "Workload.duration_s=inf is not a finite number"),
        ({"duration_s": HUGE}, "Workload.duration_s=1000"),
        ({"duration_s": 0}, "Workload.duration_s=0 must be > 0"),
        ({"rate": math.inf}, "Workload.rate=inf is not a finite number"),
        ({"rate": math.nan}, "Workload.rate=nan is not a finite number"),
        ({"rate": "5"}, "Workload.rate='5' is not a number"),
        ({"burstiness": math.nan}, "Workload.burstiness=nan is not a finite number"),
        ({"temperature": math.nan}, "Workload.temperature=nan is not a finite number"),
        ({"temperature": -0.5}, "Workload.temperature=-0.5 must be >= 0"),
        ({"temperature": "hot"}, "Workload.temperature='hot' is not a number"),
        ({"temperature": None}, "Workload.temperature=None is not a number"),
        ({"temperature": True}, "Workload.temperature=True is not a number"),
        ({"slo": {"ttft_ms": math.inf}}, "Workload.slo['ttft_ms']=inf is not a finite number"),
        ({"slo": {"ttft_ms": HUGE}}, "Workload.slo['ttft_ms']"),
        ({"slo": ["ttft_ms"]}, "Workload.slo=['ttft_ms'] must be a dict"),
        ({"arrival": ["poisson"]}, "Workload.arrival=['poisson'] must be 'poisson' or 'gamma'"),
        ({"prompts_file": 5}, "Workload.prompts_file=5 must be a path"),
        ({"ignore_eos": "no"}, "Workload.ignore_eos='no' must be True or False"),
        ({"chat": 1}, "Workload.chat=1 must be True or False"),
    ],
)
def test_workload_rejects_odd_numbers_and_types_in_one_line(
    kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(WorkloadError) as info:
        Workload(**kwargs)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_workload_keeps_good_values() -> None:
    w = Workload(rate=2, duration_s=1.5, temperature=0.7, burstiness=0.5, arrival="gamma",
                 slo={"ttft_ms": 100})
    assert (w.rate, w.duration_s, w.temperature, w.slo) == (2, 1.5, 0.7, {"ttft_ms": 100})


def _prompts(tmp_path: Path, content: bytes) -> Workload:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(content)
    return Workload(prompts_file=str(path), requests=2, warmup=0)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"prompt": "caf\xe9"}\n', ":1: not UTF-8 text"),
        (b'{"prompt": "a"}\n{"prompt": \n', ":2: not valid JSON"),
        (b'{"prompt": "a", "output_tokens": "ten"}\n', ":1: output_tokens='ten' must be a "
                                                       "whole number >= 1"),
        (b'{"prompt": "a", "output_tokens": -3}\n', ":1: output_tokens=-3 must be a whole "
                                                    "number >= 1"),
        (b'{"prompt": "a", "output_tokens": 1e400}\n', ":1: output_tokens=inf"),
        (b'{"prompt": "a", "output_tokens": NaN}\n', ":1: output_tokens=nan"),
        (b'{"prompt": 7}\n', ':1: expected an object with a "prompt" string'),
        (b'["a"]\n', ':1: expected an object with a "prompt" string'),
        (b"\n\n", "no prompts in file"),
    ],
)
def test_prompts_file_problems_are_one_line_naming_the_line(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    workload = _prompts(tmp_path, content)
    with pytest.raises(WorkloadError) as info:
        jsonl_prompts(None, workload)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert str(tmp_path / "prompts.jsonl") in message


def test_utf8_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    workload = _prompts(tmp_path, '\ufeff{"prompt": "café", "output_tokens": 3}\n'.encode())
    prompts = jsonl_prompts(None, workload)
    assert [(p.text, p.output_tokens) for p in prompts] == [("café", 3), ("café", 3)]


# --------------------------------------------------------------------------- marker


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ttft_p95_ms": HUGE}, "ttft_p95_ms=1000"),
        ({"min_tps": float("inf")}, "min_tps=inf is not a finite number"),
        ({"max_regression_pct": HUGE}, "max_regression_pct=1000"),
        ({"max_regression_pct": {"ttft_p50_ms": HUGE}}, "max_regression_pct['ttft_p50_ms']"),
        ({"max_regression_pct": {"ttft_p50": 5}}, "max_regression_pct names unknown metric(s) "
                                                  "ttft_p50"),
        ({"max_regression_pct": {5: 5}}, "max_regression_pct names unknown metric(s) 5"),
    ],
)
def test_marker_rejects_enormous_numbers_and_unknown_metrics(
    kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(MarkerError) as info:
        validate_marker((), kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_enormous_threshold_says_it_is_not_finite() -> None:
    with pytest.raises(MarkerError, match=r"is not a finite number"):
        validate_marker((), {"ttft_p95_ms": HUGE})


def test_marker_keeps_known_regression_metrics() -> None:
    out = validate_marker((), {"max_regression_pct": {"ttft_p50_ms": 5, "output_tps": 2.5}})
    assert out == {"max_regression_pct": {"ttft_p50_ms": 5.0, "output_tps": 2.5}}


# --------------------------------------------------------------------------- results files


def _results(tests: Any) -> dict[str, Any]:
    return {"schema": "pytest-llmperf/results", "schema_version": 1, "created": "",
            "tests": tests}


def _run(**changes: Any) -> dict[str, Any]:
    run: dict[str, Any] = {"summary": {"ttft_p50_ms": 1.5, "output_tps": 10, "goodput": None},
                           "samples": [], "workload": {}, "engine": {}, "warnings": [],
                           "client": {}, "started_at": "2024-01-01T00:00:00"}
    run.update(changes)
    return run


@pytest.mark.parametrize(
    ("test", "fragment"),
    [
        ({"nodeid": "t::a", "runs": [_run(summary={"ttft_p50_ms": "fast"})]},
         "tests[0].runs[0].summary.ttft_p50_ms='fast' is not a number"),
        ({"nodeid": "t::a", "runs": [_run(summary={"output_tps": True})]},
         "tests[0].runs[0].summary.output_tps=True is not a number"),
        ({"nodeid": "t::a", "runs": {"summary": {}}},
         "tests[0].runs must be a list"),
        ({"nodeid": "t::a", "runs": [_run(samples={"a": 1})]},
         "tests[0].runs[0].samples must be a list"),
        ({"nodeid": "t::a", "runs": [_run(samples=[{"index": 0, "prompt_tokens": 3,
                                                    "chunk_ns": "soon"}])]},
         "tests[0].runs[0].samples[0]: chunk_ns='soon'"),
        ({"nodeid": "t::a", "runs": [_run(samples=[{"index": "0", "prompt_tokens": 3}])]},
         "tests[0].runs[0].samples[0]: index='0'"),
        ({"nodeid": "t::a", "runs": [_run(samples=[{"prompt_tokens": 3}])]},
         "tests[0].runs[0].samples[0]: index is missing"),
        ({"nodeid": "t::a", "runs": [_run(warnings="slow")]},
         "tests[0].runs[0].warnings must be a list"),
        ({"nodeid": "t::a", "runs": [_run(workload=[1])]},
         "tests[0].runs[0].workload must be an object"),
        ({"nodeid": "t::a", "thresholds": [], "runs": []},
         "tests[0].thresholds must be an object"),
        ({"nodeid": "t::a", "comparison": {"metrics": 3}, "runs": []},
         "tests[0].comparison.metrics must be a list"),
        ({"nodeid": "t::a", "runs": [_run(client={"checks": [{"limit": "x"}]})]},
         "tests[0].runs[0].client.checks[0].limit='x' is not a number"),
    ],
)
def test_results_files_with_wrong_types_inside_are_one_line_errors(
    tmp_path: Path, test: dict[str, Any], fragment: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_results([test])), encoding="utf-8")
    with pytest.raises(ReportInputError) as info:
        load_results([path])
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message and "\n" not in message


def test_a_good_results_file_still_loads(tmp_path: Path) -> None:
    sample = RequestRecord(index=0, prompt_tokens=3, send_ns=0, chunk_ns=[5, 9],
                           chunk_tokens=[1, 1], done_ns=10, output_tokens=2).to_dict()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_results([{"nodeid": "t::a", "outcome": "passed",
                                           "runs": [_run(samples=[sample])]}])),
                    encoding="utf-8")
    doc = load_results([path])
    assert doc["tests"][0]["runs"][0]["samples"] == [sample]


def test_request_record_from_dict_checks_each_field() -> None:
    good = RequestRecord(index=1, prompt_tokens=4, chunk_ns=[1], chunk_tokens=[1]).to_dict()
    assert RequestRecord.from_dict(good) == RequestRecord(index=1, prompt_tokens=4,
                                                          chunk_ns=[1], chunk_tokens=[1])
    for field_name, bad in [("chunk_tokens", [1.5]), ("done_ns", "x"), ("warmup", "yes"),
                            ("error", 5), ("output_tokens", True)]:
        with pytest.raises(ValueError, match=rf"^{field_name}="):
            RequestRecord.from_dict({**good, field_name: bad})


def test_every_request_record_field_has_a_type_check() -> None:
    from pytest_llmperf.run import metrics

    for f in dataclasses.fields(RequestRecord):
        kinds = [k.strip() for k in str(f.type).split("|") if k.strip() != "None"]
        assert len(kinds) == 1 and kinds[0] in metrics._FIELD_CHECKS, f.name


def test_llmperf_report_with_a_bad_results_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_results([{"nodeid": "t::a", "runs": [
        _run(summary={"ttft_p50_ms": "fast"})]}])), encoding="utf-8")
    status = cli_main(["report", "--json", str(path), "--html", str(tmp_path / "r.html"),
                       "--baselines", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().splitlines() == [
        f"llmperf report: error: {path}: tests[0].runs[0].summary.ttft_p50_ms='fast' is not a "
        "number"]
    assert not (tmp_path / "r.html").exists()


def test_a_baseline_with_a_bad_sample_is_left_out_of_the_report_with_a_note() -> None:
    good = _run(samples=[RequestRecord(index=0, prompt_tokens=3).to_dict()])
    bad = _run(samples=[{"index": 0, "prompt_tokens": 3, "done_ns": "late"}])
    baseline = Baseline(path=Path("baselines/p/abc.json"), profile_id="p", profile={},
                        commit="abc", branch=None, dirty=False, committed_at="", saved_at="",
                        tests={"t::good": {"runs": [good]}, "t::bad": {"runs": [bad]}})
    history = History(profiles={"p": [baseline]})
    doc = document_from_history(history)
    assert [t["nodeid"] for t in doc["tests"]] == ["t::good"]
    assert history.skipped == [
        f"{Path('baselines/p/abc.json')}: t::bad.runs[0].samples[0]: done_ns='late' must be a "
        "whole number"]
    report = build_report(doc, history, with_plots=True)
    assert [t.nodeid for t in report.tests] == ["t::good"] and report.notes == history.skipped


# --------------------------------------------------------------------------- counts (issue 23)
# Every count, size and rate a user gives has a named limit (pytest_llmperf/limits.py), checked
# where it enters, before anything is built: Workload(requests=10**30) was accepted and then
# built prompts for ever.

ABOVE = [
    ("requests", 10**30, "1000000000000000000000000000000", "10,000,000"),
    ("warmup", 10_000_001, "10000001", "10,000,000"),
    ("concurrency", 10**6, "1000000", "100,000"),
    ("input_tokens", 10**8, "100000000", "10,000,000"),
    ("output_tokens", 10**12, "1000000000000", "10,000,000"),
    ("seed", 2**64, "18446744073709551616", "18,446,744,073,709,551,615"),
    ("rate", 1e7, "10000000.0", "1,000,000"),
    ("duration_s", 1e300, "1e+300", "2,592,000"),
    ("turns", 10**5 + 1, "100001", "100,000"),
    ("think_time_s", 1e9, "1000000000.0", "86,400"),
]


@pytest.mark.parametrize(("name", "value", "shown", "limit"), ABOVE,
                         ids=[a[0] for a in ABOVE])
def test_a_workload_count_above_its_limit_is_refused_in_one_line(
        name: str, value: Any, shown: str, limit: str) -> None:
    kwargs: dict[str, Any] = {name: value}
    if name == "think_time_s":
        kwargs["turns"] = 2
    with pytest.raises(WorkloadError) as info:
        Workload(**kwargs)
    message = str(info.value)
    assert message.startswith(f"Workload.{name}={shown} is above the limit: at most {limit} (")
    assert message.endswith(")") and "\n" not in message


def test_a_think_time_range_above_the_limit_names_its_end() -> None:
    with pytest.raises(WorkloadError, match=r"^Workload\.think_time_s\[1\]=100000 is above "
                                            r"the limit: at most 86,400 \(seconds"):
        Workload(turns=2, think_time_s=[1, 100_000])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"requests": 10_000_000, "warmup": 1, "input_tokens": 8},
     "Workload: (warmup + requests) = (1 + 10,000,000) = 10,000,001 requests is above the "
     "limit: at most 10,000,000 ("),
    ({"requests": 10_000, "warmup": 0, "turns": 1_001, "input_tokens": 1},
     "Workload: (warmup + requests) x turns = (0 + 10,000) x 1,001 = 10,010,000 requests is "
     "above the limit: at most 10,000,000 ("),
    ({"requests": 1_000_000, "warmup": 0, "input_tokens": 1_000},
     "Workload: (warmup + requests) x input_tokens = (0 + 1,000,000) x 1,000 = "
     "1,000,000,000 prompt tokens is above the limit: at most 200,000,000 (the prompts are "
     "built before the run starts"),
])
def test_what_a_workload_builds_before_its_run_is_bounded(kwargs: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(WorkloadError) as info:
        Workload(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_a_workload_at_its_limits_is_accepted() -> None:
    w = Workload(requests=10_000_000, warmup=0, input_tokens=20, output_tokens=10_000_000,
                 concurrency=100_000, seed=2**64 - 1, rate=1_000_000, duration_s=2_592_000)
    assert w.total_requests == 10_000_000
    assert Workload(turns=100_000, requests=100, warmup=0, input_tokens=1, think_time_s=86_400)


def test_a_prompts_file_workload_is_bounded_by_requests_not_prompt_tokens(
        tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hi"}\n')
    assert Workload(prompts_file=str(path), requests=10_000_000, warmup=0,
                    input_tokens=10_000).requests == 10_000_000


def test_an_int_too_long_to_print_is_described_not_a_traceback() -> None:
    for value in (10**5000, -(10**5000)):
        with pytest.raises(WorkloadError, match=r"^Workload\.requests=an integer of about "
                                                r"5001 digits (is above|must be)"):
            Workload(requests=value)


def test_marker_repeats_above_the_limit_is_refused() -> None:
    with pytest.raises(MarkerError, match=r"^repeats=1000000000000000000000000000000 is above "
                                          r"the limit: at most 10,000 \(runs of one test"):
        validate_marker((), {"repeats": 10**30})
    assert validate_marker((), {"repeats": 10_000}) == {"repeats": 10_000}


@pytest.mark.parametrize(("name", "limit"), [("repeats", "10,000"), ("load_workers", "1,024")])
def test_count_options_above_their_limit_are_refused(name: str, limit: str) -> None:
    with pytest.raises(ConfigError, match=rf"'100000' must be at most {limit} \("):
        _convert(name, "100000")
    with pytest.raises(ConfigError, match=r"'0' must be >= 1"):
        _convert(name, "0")
    assert _convert(name, limit.replace(",", "")) == int(limit.replace(",", ""))


def test_capacity_and_ab_counts_are_bounded() -> None:
    from pytest_llmperf.commits.bisect import BisectError, Options, validate
    from pytest_llmperf.run.capacity import (
        CapacityError,
        check_duration_per_rate,
        search_capacity,
    )
    from pytest_llmperf.verdict.ab import run_paired

    def never(rate: float) -> Any:
        raise AssertionError("measured")

    for kwargs, fragment in (({"max_runs": 10**30}, "max_runs=1000000000000000000000000000000 "
                                                    "is above the limit: at most 1,000"),
                             ({"max_rps": 1e9}, "max_rps=1000000000.0 is above the limit")):
        with pytest.raises(CapacityError, match=fragment):
            search_capacity(never, slo={"ttft_ms": 100}, **kwargs)
    with pytest.raises(CapacityError, match=r"duration_per_rate_s=1e\+300 is above the limit"):
        check_duration_per_rate(1e300)
    with pytest.raises(CapacityError, match=r"duration_per_rate_s=inf must be a positive"):
        check_duration_per_rate(math.inf)
    assert check_duration_per_rate(None) is None and check_duration_per_rate(2) == 2.0

    def no_pair(i: int) -> Any:
        raise AssertionError("paired")

    with pytest.raises(ValueError, match=r"^stage1 \+ stage2=1000000000000000000000000000005 "
                                         r"is above the limit: at most 10,000"):
        run_paired(no_pair, stage1=10**30, stage2=5)
    with pytest.raises(BisectError, match=r"^--pairs 1000000000000000000000000000000 is above "
                                          r"the limit: at most 10,000"):
        validate(Options(good="a", bad="b", pairs=10**30))


# --------------------------------------------------------------------------- issue 23, item 16

_NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(("content", "fragment"), [
    # A results file nested deeper than Python follows (was: RecursionError traceback).
    (json.dumps(_results([]))[:-1] + ', "extra": ' + _NESTED + "}",
     "JSON nested too deeply to read"),
    # NaN where no check looks (was: accepted, then a ValueError traceback when --merged
    # wrote it back).
    (json.dumps({**_results([]), "host": {"cpu_count": float("nan")}}),
     "not valid JSON (NaN is not a JSON number this tool accepts)"),
])
def test_llmperf_report_refuses_nested_or_nan_results_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str,
) -> None:
    path = tmp_path / "r.json"
    path.write_text(content, encoding="utf-8")
    outputs = {"--merged": tmp_path / "m.json", "--html": tmp_path / "r.html",
               "--markdown": tmp_path / "r.md"}
    status = cli_main(["report", "--json", str(path), "--baselines", str(tmp_path),
                       *(str(a) for pair in outputs.items() for a in pair)])
    out, err = capsys.readouterr()
    assert status == 2, out + err
    assert err.strip().splitlines() == [f"llmperf report: error: {path}: {fragment}"]
    assert not any(p.exists() for p in outputs.values())


def test_counted_itls_plot_as_the_list_they_stand_for() -> None:
    """A chunk's token count is a number from the file: the ITL CDF counts it instead of
    listing k equal gaps (a chunk claiming 10**12 tokens made a list of 10**12 floats), and
    draws exactly what the list would."""
    import random

    import numpy as np

    from pytest_llmperf.report import plots
    from pytest_llmperf.run.metrics import itl_counted, latency_series

    rng = random.Random(7)
    for size in (1, 5, 299, 300, 301, 2000):
        pairs = [(round(rng.uniform(1, 50), 3), rng.choice((1, 1, 2, 5))) for _ in range(size)]
        expanded = [v for v, k in pairs for _ in range(k)]
        counted = plots.Counted.of(pairs)
        assert len(counted) == len(expanded)
        assert [counted.at(i) for i in range(len(expanded))] == sorted(expanded)
        for q in (0, 50, 95, 100):
            assert plots._percentile_sorted(counted, q) == pytest.approx(
                float(np.percentile(expanded, q)), rel=1e-12)
        assert (plots.cdf_svg([("a", counted)], "ITL", "ms")
                == plots.cdf_svg([("a", expanded)], "ITL", "ms"))
    chunks = RequestRecord(index=0, prompt_tokens=3, send_ns=0, chunk_ns=[10, 40, 50, 90],
                           chunk_tokens=[1, 3, 1, 2], output_tokens=7)
    series = latency_series([chunks], ("itl",))["itl"]
    assert [v for v, k in itl_counted([chunks]) for _ in range(k)] == series
    huge = dataclasses.replace(chunks, chunk_tokens=[1, 10**12, 1, 1])
    assert len(plots.itl_ms([huge])) == 10**12 + 2  # counted, not listed
