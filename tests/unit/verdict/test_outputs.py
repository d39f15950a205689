"""Outputs in the same test (issue 25, item 4): fingerprints of greedy answers
(``run/fingerprint.py``) and their comparison request by request (``verdict/outputs.py``):
how many answers changed, the position of the first divergence, ``same_outputs=True``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.run.fingerprint import MAX_MARKS, fingerprint, of_output, step_for
from pytest_llmperf.run.metrics import RecordError, RequestRecord
from pytest_llmperf.verdict.outcome import outputs_failure
from pytest_llmperf.verdict.outputs import compare, divergence, prints
from pytest_llmperf.verdict.thresholds import MarkerError, validate_marker


def sample(index: int, units: list[int] | str | None, *, warmup: bool = False,
           error: str | None = None) -> dict[str, Any]:
    rec = RequestRecord(index=index, prompt_tokens=4, warmup=warmup, error=error)
    printed = (None if units is None else
               of_output(None, units) if isinstance(units, str) else of_output(units, ""))
    if printed is not None:
        rec.output_digest, rec.output_basis = printed.digest, printed.basis
        rec.output_units, rec.output_marks = printed.units, list(printed.marks)
    return rec.to_dict()


def run(*answers: list[int] | str | None) -> dict[str, Any]:
    return {"samples": [sample(i, a) for i, a in enumerate(answers)]}


def changed_from(ids: list[int], k: int) -> list[int]:
    return ids[:k] + [t + 1 for t in ids[k:]]


def test_step_keeps_the_marks_bounded_and_exact_for_short_answers() -> None:
    assert [step_for(n) for n in (0, 1, 256, 257, 513, 514, 4096)] == [1, 1, 1, 2, 2, 4, 16]
    for n in (1, 100, 256, 257, 1000, 5000):
        printed = fingerprint(list(range(n)), "tokens")
        assert len(printed.marks) <= MAX_MARKS and printed.units == n
        assert len(printed.marks) == n // step_for(n)
    # The same ids give the same fingerprint; another basis of the same numbers does not.
    a, b = fingerprint([5, 6, 7], "tokens"), fingerprint([5, 6, 7], "tokens")
    assert a == b and a.digest != fingerprint([5, 6, 7], "chars").digest
    assert a.digest != fingerprint([5, 6, 8], "tokens").digest
    assert a.marks[:2] == fingerprint([5, 6, 8], "tokens").marks[:2]


def test_of_output_prefers_token_ids_then_text_then_nothing() -> None:
    assert of_output((1, 2), "ab").basis == "tokens"  # type: ignore[union-attr]
    assert of_output(None, "ab").basis == "chars"  # type: ignore[union-attr]
    assert of_output(None, "") is None


@pytest.mark.parametrize("n, k", [(16, 0), (16, 5), (16, 15), (200, 123), (256, 255)])
def test_divergence_of_a_short_answer_is_exact(n: int, k: int) -> None:
    ids = list(range(100, 100 + n))
    (a,), (b,) = prints(run(ids)).values(), prints(run(changed_from(ids, k))).values()
    assert divergence(a, b) == (k, k + 1)
    assert divergence(a, a) is None


@pytest.mark.parametrize("n, k", [(1000, 0), (1000, 517), (1000, 999), (5000, 1234)])
def test_divergence_of_a_long_answer_is_within_one_step(n: int, k: int) -> None:
    ids = list(range(n))
    (a,), (b,) = prints(run(ids)).values(), prints(run(changed_from(ids, k))).values()
    found = divergence(a, b)
    assert found is not None
    start, end = found
    assert start <= k < end and end - start <= step_for(n)


def test_answers_of_different_lengths_part_where_the_shorter_ends() -> None:
    ids = list(range(300))  # step 2
    (a,), (b,) = prints(run(ids)).values(), prints(run(ids[:100])).values()  # step 1
    assert divergence(a, b) == (100, 101)
    (c,) = prints(run(changed_from(ids, 41)[:100])).values()
    found = divergence(a, c)
    assert found is not None and found[0] <= 41 < found[1] and found[1] - found[0] <= 2


def test_compare_counts_changed_requests_and_the_first_divergence() -> None:
    ids = [list(range(10 * i, 10 * i + 16)) for i in range(6)]
    base = run(*ids)
    current = run(ids[0], changed_from(ids[1], 9), ids[2], changed_from(ids[3], 4), ids[4],
                  ids[5])
    found = compare([base], [current])
    assert (found.compared, found.changed, found.basis) == (6, 2, "tokens")
    assert found.first is not None and (found.first.index, found.first.start) == (3, 4)
    d = found.to_dict()
    assert d["changed_requests"] == [1, 3] and d["first_divergence"] == 4
    assert d["first_request"] == 3
    assert d["summary"] == ("outputs: 2 of 6 requests changed (first divergence at token 4, "
                            "request 3; request(s) 1, 3)")
    same = compare([base], [run(*ids)])
    assert (same.compared, same.changed) == (6, 0)
    assert same.describe() == "outputs: all 6 requests unchanged"
    # A request changed in any of the current runs counts once, at its earliest position.
    again = compare([base], [current, run(changed_from(ids[0], 2), *ids[1:])])
    assert again.changed == 3 and again.first is not None and again.first.start == 2


def test_text_answers_compare_by_character_and_say_so() -> None:
    found = compare([run(" alpha bravo charlie")], [run(" alpha bravo delta")])
    assert (found.changed, found.basis) == (1, "chars")
    assert found.first is not None and found.first.start == len(" alpha bravo ")
    assert "character 13" in found.describe() and "the engine streams text" in found.describe()


def test_what_is_not_compared_is_left_out_or_named() -> None:
    ids = list(range(8))
    base = {"samples": [sample(0, ids, warmup=True), sample(1, ids), sample(2, ids),
                        sample(3, None), {"index": "x"}, "junk"]}
    cur = {"samples": [sample(0, [9]), sample(1, ids), sample(2, [1], error="boom"),
                       sample(3, ids)]}
    found = compare([base], [cur])
    assert (found.compared, found.changed) == (1, 0)  # only request 1 on both sides
    old = compare([run(None, None)], [run(ids)])
    assert old.compared == 0 and "the baseline has no output fingerprints" in old.describe()
    mixed = compare([run("abc")], [run([1, 2, 3])])
    assert mixed.compared == 0 and "not comparable" in mixed.note
    assert compare([], [run(ids)]).compared == 0


def test_record_fields_round_trip_and_are_checked() -> None:
    rec = RequestRecord.from_dict(sample(0, [1, 2, 3]))
    assert rec.output_basis == "tokens" and rec.output_units == 3
    assert rec.output_marks is not None and len(rec.output_marks) == 3
    with pytest.raises(RecordError, match="output_marks"):
        RequestRecord.from_dict({**sample(0, [1]), "output_marks": ["x"]})
    old = {k: v for k, v in sample(0, [1]).items() if not k.startswith("output_")}
    assert RequestRecord.from_dict(old).output_digest is None  # a record saved before


def test_same_outputs_marker_and_failure() -> None:
    assert validate_marker((), {"same_outputs": True}) == {"same_outputs": True}
    with pytest.raises(MarkerError, match="same_outputs=1 must be True or False"):
        validate_marker((), {"same_outputs": 1})
    ids = list(range(16))
    changed = compare([run(ids, ids)], [run(ids, changed_from(ids, 7))]).to_dict()
    found = outputs_failure({"same_outputs": True}, changed)
    assert found is not None and found.kind == "outputs"
    assert "1 of 2 requests changed (first divergence at token 7" in found.clause
    assert outputs_failure({}, changed) is None
    unchanged = compare([run(ids)], [run(ids)]).to_dict()
    assert outputs_failure({"same_outputs": True}, unchanged) is None
    assert outputs_failure({"same_outputs": True}, None) is None


def test_llmperf_compare_reports_head_answers_against_base() -> None:
    from pytest_llmperf.commits.bisect import Commit, Comparison, session_results
    from pytest_llmperf.commits.compare import CompareOptions, CompareOutcome, result_document
    from pytest_llmperf.report.compare import render_table
    from pytest_llmperf.verdict.stats import MetricVerdict

    ids = [list(range(10 * i, 10 * i + 12)) for i in range(3)]

    def doc(*answers: list[int]) -> dict[str, Any]:
        return {"tests": [{"nodeid": "t.py::t", "thresholds": {},
                           "runs": [{"summary": {"tpot_p50_ms": 1.0}, **run(*answers)}]}]}

    base = [session_results(doc(*ids)) for _ in range(2)]
    head = [session_results(doc(ids[0], changed_from(ids[1], 6), ids[2])) for _ in range(2)]
    assert len(base[0]["t.py::t"].prints) == 3  # only the fingerprint fields are kept
    assert set(base[0]["t.py::t"].prints[0]) == {
        "index", "warmup", "error", "output_digest", "output_basis", "output_units",
        "output_marks"}
    v = MetricVerdict(metric="tpot_p50_ms", baseline=1.0, current=1.0, change_pct=0.0,
                      ci_low_pct=-1.0, ci_high_pct=1.0, verdict="ok", gated=True)
    comp = Comparison(commit="h" * 40, subject="s", reference="b" * 40, pairs=2, alpha=0.05,
                      alpha_per_test=0.05, tests={"t.py::t": [v]},
                      sides={"reference": base, "candidate": head})
    outcome = CompareOutcome(base=Commit("b" * 40, "s"), head=Commit("h" * 40, "s"),
                             comparison=comp, opts=CompareOptions(base="main"), elapsed_s=1.0)
    outputs = result_document(outcome)["tests"]["t.py::t"]["outputs"]
    assert (outputs["compared"], outputs["changed"], outputs["first_divergence"]) == (3, 1, 6)
    assert ("t.py::t: outputs: 1 of 3 requests changed (first divergence at token 6, "
            "request 1; request(s) 1)") in render_table(outcome)


def test_answers_that_differ_between_the_current_runs_are_called_unstable() -> None:
    ids = [list(range(10 * i, 10 * i + 8)) for i in range(3)]
    base = run(*ids)
    found = compare([base], [run(*ids), run(ids[0], changed_from(ids[1], 3), ids[2])])
    assert (found.changed, found.unstable) == (1, 1)
    assert found.describe().endswith("; 1 request(s) differ between this test's own runs: "
                                     "greedy answers are not deterministic here")
    assert compare([base], [run(*ids), run(*ids)]).unstable == 0


def test_llmperf_compare_served_takes_the_ab_outputs() -> None:
    from pytest_llmperf.commits.compare import ab_outputs

    ids = list(range(12))
    outputs = compare([run(ids)], [run(changed_from(ids, 2))]).to_dict()
    doc = {"tests": [{"nodeid": "t.py::a", "ab": [{"outputs": outputs}, {"outputs": None}]},
                     {"nodeid": "t.py::b", "ab": [{"outputs": None}]},
                     {"nodeid": "t.py::c"}]}
    assert ab_outputs(doc) == {"t.py::a": outputs}
