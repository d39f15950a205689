"""Accuracy end to end on the tiny model: scoring, lm-eval agreement, paired comparison and the
min_accuracy / max_accuracy_drop thresholds in real pytest sessions.

The tiny model has random weights, so it scores near chance: these tests check that the number
is computed over the right items and the right way, not that it is high.

Split by tier from tests/test_accuracy.py: these are its sessions tests; the others are in
tests/unit/quality/test_accuracy.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_llmperf.engines.base import GenerationParams, Prompt
from pytest_llmperf.quality.accuracy import (
    AccuracyError,
    LogitScorer,
    compare_paired,
    evaluate_accuracy,
    lm_eval_available,
)
from pytest_llmperf.quality.tasks import TASKS

needs_lm_eval = pytest.mark.skipif(not lm_eval_available(),
                                   reason="lm-eval is not installed (the 'accuracy' extra)")


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """The session's test outcomes, without its warning count (a busy machine warns)."""
    return {k: v for k, v in result.parseoutcomes().items() if k not in ("warnings", "warning")}


@pytest.fixture(scope="module")
def engine(tiny_model: Path):  # type: ignore[no-untyped-def]
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings

    eng = LlamaCppEngine(LlamaCppSettings(str(tiny_model), n_threads=1, n_ctx=512))
    yield eng
    eng.close()


pytestmark = pytest.mark.usefixtures("isolated_cache")  # LLMPERF_CACHE_DIR in tmp_path


@pytest.mark.parametrize("task", sorted(TASKS))
def test_scored_over_the_right_items(engine, task: str) -> None:  # type: ignore[no-untyped-def]
    result = evaluate_accuracy(engine, task, limit=25, backend="builtin")
    assert result.n == 25 and set(result.correct) == {str(i) for i in range(25)}
    assert result.accuracy == sum(result.correct.values()) / 25
    assert result.metric == ("exact_match" if task == "llmperf_arith" else "acc")
    assert result.backend == "builtin" and result.model == "tiny.gguf"


def test_multiple_choice_picks_the_most_likely_choice(engine) -> None:  # type: ignore[no-untyped-def]
    scorer = LogitScorer(engine)
    items = TASKS["llmperf_words"].load()[:10]
    result = evaluate_accuracy(engine, "llmperf_words", limit=10, backend="builtin")
    for item in items:
        scores = [s for s, _ in scorer.loglikelihood(item["input"],
                                                     [" " + c for c in item["choices"]])]
        assert result.correct[str(item["id"])] == (int(np.argmax(scores)) == item["gold"])


def test_loglikelihood_matches_a_full_logits_evaluation(engine, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    """The KV-rewinding scorer against llama.cpp's own logits_all path."""
    import llama_cpp

    scorer = LogitScorer(engine)
    context, continuation = "The opposite of hot is", " cold water"
    (got, greedy), = scorer.loglikelihood(context, [continuation])
    ctx_ids, cont_ids = scorer.split(context, continuation)
    assert len(cont_ids) >= 2
    ref = llama_cpp.Llama(model_path=str(tiny_model), n_ctx=256, n_threads=1,
                          logits_all=True, verbose=False)
    try:
        ids = ctx_ids + cont_ids
        ref.eval(ids)
        logits = np.asarray(ref.scores[: len(ids)], dtype=np.float64)
    finally:
        ref.close()
    want, want_greedy = 0.0, True
    for pos, tid in enumerate(cont_ids, start=len(ctx_ids) - 1):
        row = logits[pos]
        logp = row - (row.max() + math.log(np.exp(row - row.max()).sum()))
        want += logp[tid]
        want_greedy = want_greedy and int(np.argmax(row)) == tid
    assert got == pytest.approx(want, abs=1e-3)
    assert greedy == want_greedy


def test_generation_equals_the_engine_stream_cut_at_the_stop(engine) -> None:  # type: ignore[no-untyped-def]
    from pytest_llmperf.run.bench import _run_coroutine

    scorer = LogitScorer(engine)
    prompt = TASKS["llmperf_arith"].load()[3]["input"]
    full = _run_coroutine(engine.generate(
        Prompt(text=prompt, token_ids=None, input_tokens=0, output_tokens=12),
        GenerationParams(max_tokens=12, ignore_eos=False), lambda t, n: None)).text
    for until in (["\n"], ["e"], ["zzz"]):
        want = full
        for stop in until:
            want = want.split(stop)[0]
        assert scorer.generate_until(prompt, until, 12) == want


@needs_lm_eval
@pytest.mark.parametrize("task", sorted(TASKS))
def test_lm_eval_scores_the_same_items_the_same_way(engine, task: str) -> None:  # type: ignore[no-untyped-def]
    builtin = evaluate_accuracy(engine, task, limit=15, backend="builtin")
    via_lm_eval = evaluate_accuracy(engine, task, limit=15, backend="lm-eval")
    assert via_lm_eval.backend == "lm-eval" and via_lm_eval.n == 15
    assert via_lm_eval.correct == builtin.correct


@needs_lm_eval
def test_any_lm_eval_task_by_name_from_an_include_path(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A user's own lm-eval task (YAML + local JSONL), scored offline through EngineLM."""
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"q": f"{i} + 1 =", "a": str(i + 1)}) + "\n"
                            for i in range(7)))
    (tmp_path / "mine.yaml").write_text(f"""
task: my_counting
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{q}}}}"
doc_to_target: "{{{{a}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
""")
    result = evaluate_accuracy(engine, "my_counting", include_path=tmp_path, backend="lm-eval")
    assert result.n == 7 and set(result.correct) == {str(i) for i in range(7)}


def test_missing_lm_eval_names_the_extra(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(AccuracyError, match=r"pip install 'pytest-llmperf\[accuracy\]'"):
        evaluate_accuracy(engine, "llmperf_arith", limit=2, backend="lm-eval")
    assert not lm_eval_available()
    assert evaluate_accuracy(engine, "llmperf_arith", limit=2).backend == "builtin"  # auto
    with pytest.raises(AccuracyError, match=r"unknown task 'mmlu'.*needs lm-eval"):
        evaluate_accuracy(engine, "mmlu", backend="builtin")


# ------------------------------------------------------------------------ in pytest sessions

def test_min_accuracy_passes_and_fails_with_the_measured_value(
        llmperf_pytester: pytest.Pytester, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    measured = evaluate_accuracy(engine, "llmperf_words", limit=12, backend="builtin").accuracy
    llmperf_pytester.makepyfile(test_acc=f"""
        from pytest_llmperf import llmperf, Workload

        @llmperf(min_accuracy={measured})
        def test_at_the_limit(llm_engine, llmperf_bench, llmperf_accuracy):
            llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=2, requests=1))
            record = llmperf_accuracy(llm_engine, "llmperf_words", limit=12, backend="builtin")
            assert record.result.n == 12 and record.comparison is None

        @llmperf(min_accuracy={min(1.0, measured + 0.05)})
        def test_above_it(llm_engine, llmperf_accuracy):
            llmperf_accuracy(llm_engine, "llmperf_words", limit=12, backend="builtin")
    """)
    out = tmp_path / "r.json"
    result = llmperf_pytester.runpytest("--llmperf", f"--llmperf-json={out}")
    assert outcomes(result) == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines([f"*min_accuracy: measured {measured:.4g}, limit >= *"])
    assert "model_fixtures.py" not in result.stdout.str()
    data = json.loads(out.read_text())
    (test,) = [t for t in data["tests"] if t["nodeid"].endswith("test_at_the_limit")]
    assert test["runs"][0]["summary"]["accuracy"] == pytest.approx(measured)
    (acc,) = test["runs"][0]["client"]["accuracy"]
    assert acc["task"] == "llmperf_words" and acc["n"] == 12
    assert sorted(acc["correct"], key=int) == [str(i) for i in range(12)]
    assert sum(acc["correct"].values()) / 12 == pytest.approx(measured)


def test_max_accuracy_drop_against_a_better_reference(
        llmperf_pytester: pytest.Pytester, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
    from pytest_llmperf.testing.tiny_model import write_tiny_gguf

    base = evaluate_accuracy(engine, "llmperf_words", limit=20, backend="builtin")
    for seed in range(1, 20):  # another random model that happens to score higher
        path = write_tiny_gguf(tmp_path / f"ref{seed}.gguf", seed=seed)
        other = LlamaCppEngine(LlamaCppSettings(str(path), n_threads=1, n_ctx=512))
        try:
            ref = evaluate_accuracy(other, "llmperf_words", limit=20, backend="builtin")
        finally:
            other.close()
        if ref.accuracy > base.accuracy:
            break
    else:
        pytest.fail("no random reference model scored higher than the tiny model")
    drop = compare_paired(ref, base)
    assert drop.drop > 0
    llmperf_pytester.makepyfile(test_drop=f"""
        from pytest_llmperf import llmperf

        @llmperf(max_accuracy_drop={drop.drop + 0.001:.4f})
        def test_within(llm_engine, llmperf_accuracy):
            rec = llmperf_accuracy(llm_engine, "llmperf_words", limit=20, backend="builtin",
                                   reference={str(path)!r})
            assert rec.comparison.n == 20

        @llmperf(max_accuracy_drop={max(0.0, drop.drop - 0.001):.4f})
        def test_beyond(llm_engine, llmperf_accuracy):
            llmperf_accuracy(llm_engine, "llmperf_words", limit=20, backend="builtin",
                             reference={str(path)!r})

        @llmperf(max_accuracy_drop=0.5)
        def test_no_reference(llm_engine, llmperf_accuracy):
            llmperf_accuracy(llm_engine, "llmperf_words", limit=3, backend="builtin",
                             reference=None)
    """)
    result = llmperf_pytester.runpytest("--llmperf", "-rA")
    assert outcomes(result) == {"passed": 1, "failed": 2}
    result.stdout.fnmatch_lines([
        f"*max_accuracy_drop: measured {drop.drop:.4g}, limit <= *: accuracy drop "
        f"+{drop.drop:.3f} vs ref{seed}.gguf*20 llmperf_words items; 95% CI*McNemar p=*",
    ])
    result.stdout.fnmatch_lines(["*max_accuracy_drop: no reference to compare with*"])


def test_quantized_model_compares_with_its_source(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_q="""
        from pytest_llmperf import llmperf, Workload

        @llmperf(max_accuracy_drop=1.0)
        def test_q(quantized_model, quantized_engine, llmperf_bench, llmperf_accuracy):
            llmperf_bench(quantized_engine, Workload(input_tokens=8, output_tokens=2,
                                                     requests=1))
            rec = llmperf_accuracy(quantized_engine, "llmperf_arith", limit=6)
            c = rec.comparison
            assert c.n == 6 and c.reference == "tiny.gguf"
            if quantized_model.is_reference:
                assert c.drop == 0 and c.ref_only == c.cand_only == 0
            else:
                assert c.candidate == "tiny." + quantized_model.label + ".gguf"
    """)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-quant-formats=source,Q4_0")
    assert outcomes(result) == {"passed": 2}


def test_unknown_task_fails_in_one_line(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(test_t="""
        def test_t(llm_engine, llmperf_accuracy):
            llmperf_accuracy(llm_engine, "no_such_task", backend="builtin")
    """)
    result = llmperf_pytester.runpytest()
    assert outcomes(result) == {"failed": 1}
    result.stdout.fnmatch_lines(["*llmperf: unknown task 'no_such_task': the built-in tasks "
                                 "are llmperf_arith, llmperf_words*"])
    assert "accuracy.py" not in result.stdout.str()


def test_an_accuracy_failure_can_be_an_expected_failure(llmperf_pytester: pytest.Pytester
                                                        ) -> None:
    """The example suite marks a known-bad format xfail: the gate's failure must count so."""
    llmperf_pytester.makepyfile(test_x="""
        import pytest
        from pytest_llmperf import llmperf

        @pytest.mark.xfail(reason="known to be worse", strict=True)
        @llmperf(min_accuracy=1.0)
        def test_x(llm_engine, llmperf_accuracy):
            llmperf_accuracy(llm_engine, "llmperf_words", limit=4, backend="builtin")
    """)
    result = llmperf_pytester.runpytest("--llmperf")
    assert outcomes(result) == {"xfailed": 1}


@needs_lm_eval
def test_offline_flags_are_restored(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import os

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    evaluate_accuracy(engine, "llmperf_arith", limit=2, backend="lm-eval")
    assert "HF_DATASETS_OFFLINE" not in os.environ  # hub tasks later in the session still work
    assert os.environ["HF_HUB_OFFLINE"] == "0"
