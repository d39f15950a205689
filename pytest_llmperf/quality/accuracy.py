"""Accuracy of an engine under test, item by item, and paired comparisons between formats.

Two backends score the same tasks the same way:

- ``lm-eval`` (the ``accuracy`` extra): ``EngineLM`` is an lm-eval ``LM`` that drives our own
  engines (``loglikelihood`` from llama.cpp's logits, ``generate_until`` through the engine's
  streaming ``generate``); the built-in tasks reach it as YAML files through
  ``TaskManager(include_path=...)`` with ``HF_DATASETS_OFFLINE=1``. Any other lm-eval task
  name works too on a machine that reaches the hub (or has the dataset cached).
- ``builtin``: the same built-in tasks scored by this module alone, for machines without
  lm-eval. Its numbers equal lm-eval's (the tests check that).

``compare_paired`` turns two item-by-item results into an accuracy drop with an exact
McNemar test and a paired bootstrap interval: the gate for ``max_accuracy_drop``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..engines.base import Engine, GenerationParams, Prompt, RequestError
from ..models.packaged import cache_dir
from ..run.bench import _run_coroutine
from .tasks import TASKS, TaskDef, write_lm_eval_tasks

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ..engines.base import LogitModel

T = TypeVar("T")

BACKENDS = ("auto", "lm-eval", "builtin")


class AccuracyError(RuntimeError):
    """An accuracy evaluation that cannot run (unknown task, missing extra, no logits)."""


@dataclass
class AccuracyResult:
    task: str
    accuracy: float
    n: int
    correct: dict[str, bool]  # item id -> correct
    backend: str
    metric: str  # exact_match or acc
    model: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy drop of a candidate against a reference on the same items."""

    task: str
    n: int  # items both were scored on
    reference_accuracy: float
    candidate_accuracy: float
    drop: float  # reference - candidate (positive: the candidate is worse)
    ci_low: float
    ci_high: float
    confidence: float
    ref_only: int  # items only the reference got right
    cand_only: int  # items only the candidate got right
    p_value: float  # exact two-sided McNemar
    reference: str = ""
    candidate: str = ""

    def describe(self) -> str:
        return (f"accuracy drop {self.drop:+.3f} vs {self.reference or 'reference'} "
                f"({self.reference_accuracy:.3f} -> {self.candidate_accuracy:.3f} on {self.n} "
                f"{self.task} items; {self.confidence:.0%} CI [{self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}], McNemar p={self.p_value:.3g}, "
                f"{self.ref_only} lost / {self.cand_only} gained)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------- paired statistics

def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (binomial, p=1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def compare_paired(
    reference: AccuracyResult,
    candidate: AccuracyResult,
    *,
    confidence: float = 0.95,
    resamples: int = 10000,
    seed: int = 0,
) -> PairedComparison:
    """Drop = reference accuracy - candidate accuracy over the items both were scored on,
    with a paired bootstrap percentile interval and an exact McNemar p-value."""
    common = sorted(set(reference.correct) & set(candidate.correct))
    if not common:
        raise AccuracyError(
            f"no common items between the reference ({reference.task}) and the candidate "
            f"({candidate.task}): compare results of the same task and limit"
        )
    ref = np.array([reference.correct[i] for i in common], dtype=bool)
    cand = np.array([candidate.correct[i] for i in common], dtype=bool)
    n = len(common)
    b = int(np.sum(ref & ~cand))
    c = int(np.sum(~ref & cand))
    drop = (b - c) / n
    # Resampling items in pairs only moves the counts of the three kinds of item.
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [b / n, c / n, (n - b - c) / n], size=resamples)
    drops = (counts[:, 0] - counts[:, 1]) / n
    alpha = 1.0 - confidence
    lo, hi = np.quantile(drops, [alpha / 2, 1 - alpha / 2])
    return PairedComparison(
        task=candidate.task, n=n,
        reference_accuracy=float(ref.mean()), candidate_accuracy=float(cand.mean()),
        drop=float(drop), ci_low=float(lo), ci_high=float(hi), confidence=confidence,
        ref_only=b, cand_only=c, p_value=mcnemar_exact(b, c),
        reference=reference.model, candidate=candidate.model,
    )


# ------------------------------------------------------------------------- engine scoring

def _run(coro: Coroutine[Any, Any, T]) -> T:
    return _run_coroutine(coro)


def _cut(text: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


def generate_text(engine: Engine, prompt: str, until: Sequence[str], max_tokens: int) -> str:
    """Greedy completion of ``prompt``, cut at the first stop string (lm-eval's semantics)."""
    if engine.has_logits:
        return LogitScorer(engine).generate_until(prompt, until, max_tokens)
    params = GenerationParams(max_tokens=max_tokens, ignore_eos=False, temperature=0.0)
    gen = _run(engine.generate(Prompt(text=prompt, token_ids=None, input_tokens=0,
                                      output_tokens=max_tokens), params, lambda t, n: None))
    return _cut(gen.text, until)


class LogitScorer:
    """Log-likelihoods of continuations, and greedy decoding, from the logits of an engine
    that exposes them (``Engine.has_logits``: the llama_cpp engine).

    Each continuation is evaluated after its context from an empty KV cache, token by token,
    reading the last row of logits.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @staticmethod
    def _logits(model: LogitModel) -> NDArray[np.float64]:
        row = model.logits().astype(np.float64)
        m = row.max()
        return row - (m + np.log(np.exp(row - m).sum()))  # log-softmax

    def split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's encoding: tokens of context+continuation, split after the context's."""
        tok = self._engine.tokenizer
        assert tok is not None
        n_space = len(context) - len(context.rstrip())
        if n_space:
            continuation = context[-n_space:] + continuation
            context = context[:-n_space]
        whole = tok.tokenize(context + continuation, add_special=True)
        ctx = tok.tokenize(context, add_special=True)
        return whole[: len(ctx)], whole[len(ctx):]

    def generate_until(self, prompt: str, until: Sequence[str], max_tokens: int) -> str:
        """Greedy decoding that stops at end-of-generation or as soon as a stop string shows
        (the same text as a full ``generate`` cut at the stop string, in fewer steps)."""
        tok = self._engine.tokenizer
        assert tok is not None
        ids = tok.tokenize(prompt, add_special=True)
        out: list[int] = []
        with self._engine.logit_model() as llm:
            eog = set(llm.eog_ids())
            if len(ids) + max_tokens > llm.n_ctx():
                raise AccuracyError(
                    f"an item needs {len(ids) + max_tokens} tokens, more than "
                    f"n_ctx={llm.n_ctx()}; raise --llmperf-n-ctx"
                )
            llm.reset()
            llm.eval(ids)
            while len(out) < max_tokens:
                token = int(np.argmax(self._logits(llm)))
                if token in eog:
                    break
                out.append(token)
                if any(stop and stop in tok.detokenize(out) for stop in until):
                    break
                llm.eval([token])
            llm.reset()
        return _cut(tok.detokenize(out), until)

    def loglikelihood(self, context: str, continuations: Sequence[str]) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        with self._engine.logit_model() as llm:
            for cont in continuations:
                ctx_ids, cont_ids = self.split(context, cont)
                if not cont_ids:
                    out.append((0.0, True))
                    continue
                if len(ctx_ids) + len(cont_ids) > llm.n_ctx():
                    raise AccuracyError(
                        f"an item needs {len(ctx_ids) + len(cont_ids)} tokens, more than "
                        f"n_ctx={llm.n_ctx()}; raise --llmperf-n-ctx"
                    )
                llm.reset()
                llm.eval(ctx_ids)
                total, greedy = 0.0, True
                for i, tid in enumerate(cont_ids):
                    logp = self._logits(llm)
                    total += float(logp[tid])
                    greedy = greedy and int(np.argmax(logp)) == tid
                    if i + 1 < len(cont_ids):
                        llm.eval([tid])
                out.append((total, greedy))
            llm.reset()
        return out


def scorer_for(engine: Engine) -> LogitScorer:
    if engine.has_logits:
        return LogitScorer(engine)
    raise AccuracyError(
        f"multiple-choice (log-likelihood) tasks need an engine that exposes logits; "
        f"{engine.kind!r} does not here: use a generation task, or the llama_cpp engine"
    )


# ------------------------------------------------------------------------- built-in runner

def _select(items: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    return items if limit is None else items[:limit]


def evaluate_builtin(engine: Engine, task: TaskDef, limit: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> AccuracyResult:
    import time

    items = _select(task.load(), limit)
    t0 = time.perf_counter()
    correct: dict[str, bool] = {}
    if task.output_type == "generate_until":
        for k, item in enumerate(items):
            try:
                text = generate_text(engine, item["input"], task.until, task.max_gen_toks)
            except RequestError as exc:
                raise AccuracyError(f"{task.name} item {item['id']}: {exc}") from None
            correct[str(item["id"])] = text.strip() == str(item["target"]).strip()
            if progress:
                progress(k + 1, len(items))
        metric = "exact_match"
    else:
        scorer = scorer_for(engine)
        for k, item in enumerate(items):
            scores = scorer.loglikelihood(item["input"], [" " + c for c in item["choices"]])
            best = int(np.argmax([s for s, _ in scores]))
            correct[str(item["id"])] = best == int(item["gold"])
            if progress:
                progress(k + 1, len(items))
        metric = "acc"
    n = len(correct)
    return AccuracyResult(task=task.name, accuracy=sum(correct.values()) / n if n else 0.0,
                          n=n, correct=correct, backend="builtin", metric=metric,
                          model=_model_name(engine), seconds=time.perf_counter() - t0)


def _model_name(engine: Engine) -> str:
    try:
        return str(engine.info().get("model", ""))
    except Exception:
        return ""


# ------------------------------------------------------------------------- lm-eval backend

def lm_eval_available() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


def _import_lm_eval() -> Any:
    try:
        import lm_eval
        import lm_eval.api.model
    except ImportError as exc:
        raise AccuracyError(
            f"lm-eval is not installed ({exc}): pip install 'pytest-llmperf[accuracy]'"
        ) from None
    return lm_eval


def make_engine_lm(engine: Engine) -> Any:
    """An lm-eval ``LM`` that drives ``engine`` (built lazily: lm-eval is optional)."""
    lm_eval = _import_lm_eval()

    class EngineLM(lm_eval.api.model.LM):  # type: ignore[name-defined]
        """lm-eval model backed by a pytest-llmperf engine."""

        def __init__(self) -> None:
            super().__init__()
            self.engine = engine
            self._scorer: LogitScorer | None = None

        @property
        def scorer(self) -> LogitScorer:
            if self._scorer is None:
                self._scorer = scorer_for(self.engine)
            return self._scorer

        def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
            return [self.scorer.loglikelihood(r.args[0], [r.args[1]])[0] for r in requests]

        def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
            return [self.scorer.loglikelihood("", [r.args[0]])[0][0] for r in requests]

        def generate_until(self, requests: list[Any]) -> list[str]:
            out = []
            for r in requests:
                context, kwargs = r.args[0], dict(r.args[1])
                until = kwargs.get("until") or []
                if isinstance(until, str):
                    until = [until]
                max_tokens = int(kwargs.get("max_gen_toks", 256))
                out.append(generate_text(self.engine, context, until, max_tokens))
            return out

    return EngineLM()


_MANAGERS: dict[tuple[Any, ...], Any] = {}


def _builtin_include_dir() -> Path:
    return write_lm_eval_tasks(cache_dir() / "lm_eval_tasks")


def evaluate_lm_eval(engine: Engine, task: str, limit: int | None = None,
                     include_path: str | Path | None = None) -> AccuracyResult:
    """Score ``task`` (a built-in task or any lm-eval task name) with lm-eval."""

    builtin = task in TASKS
    with _Offline(builtin):
        return _evaluate_lm_eval(engine, task, limit, include_path, builtin)


class _Offline:
    """HF_DATASETS_OFFLINE=1 (and HF_HUB_OFFLINE=1) for the built-in tasks, restored after."""

    KEYS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")

    def __init__(self, active: bool) -> None:
        self.active = active
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        if self.active:
            for key in self.KEYS:
                self.saved[key] = os.environ.get(key)
                os.environ[key] = "1"

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _evaluate_lm_eval(engine: Engine, task: str, limit: int | None,
                      include_path: str | Path | None, builtin: bool) -> AccuracyResult:
    import time

    lm_eval = _import_lm_eval()
    from lm_eval.tasks import TaskManager

    paths = [str(_builtin_include_dir())]
    if include_path:
        paths.append(str(include_path))
    # lm-eval's own task index (thousands of YAMLs) is only scanned for tasks found in
    # neither the built-in set nor the user's include_path.
    manager = None
    for defaults in (False, True):
        key = (tuple(paths), defaults)
        if key not in _MANAGERS:
            _MANAGERS[key] = TaskManager(include_path=paths, include_defaults=defaults)
        manager = _MANAGERS[key]
        if task in manager.all_tasks:
            break
    assert manager is not None
    if task not in manager.all_tasks:
        raise AccuracyError(
            f"unknown lm-eval task {task!r}: built-in tasks are {', '.join(TASKS)}; other "
            "names must be lm-eval tasks (lm-eval --tasks list) or YAMLs under include_path"
        )
    t0 = time.perf_counter()
    try:
        results = lm_eval.simple_evaluate(
            model=make_engine_lm(engine), tasks=[task], task_manager=manager, limit=limit,
            log_samples=True, bootstrap_iters=0, num_fewshot=None,
        )
    except AccuracyError:
        raise
    except Exception as exc:  # dataset download refused offline, bad YAML, ...
        hint = ("" if builtin else
                "; tasks other than the built-in ones need their dataset from the hub "
                "(unset HF_DATASETS_OFFLINE, or pre-download it)")
        raise AccuracyError(f"lm-eval could not run {task!r}: {exc}{hint}") from None
    if results is None:
        raise AccuracyError(f"lm-eval returned no results for {task!r}")
    samples = results["samples"][task]
    metric = next((m for m in ("exact_match", "acc") if m in samples[0]), None) if samples \
        else None
    if metric is None:
        raise AccuracyError(f"lm-eval task {task!r} has no exact_match or acc metric")
    correct: dict[str, bool] = {}
    for s in samples:
        doc = s.get("doc") or {}
        item_id = str(doc.get("id", s["doc_id"])) if builtin else str(s["doc_id"])
        correct[item_id] = bool(float(s[metric]) >= 1.0)
    n = len(correct)
    return AccuracyResult(task=task, accuracy=sum(correct.values()) / n if n else 0.0, n=n,
                          correct=correct, backend="lm-eval", metric=metric,
                          model=_model_name(engine), seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------- entry point

def evaluate_accuracy(engine: Engine, task: str = "llmperf_arith", *, limit: int | None = None,
                      backend: str = "auto",
                      include_path: str | Path | None = None) -> AccuracyResult:
    """Accuracy of ``engine`` on ``task``, item by item.

    backend: "lm-eval", "builtin" (built-in tasks only), or "auto" (lm-eval when installed).
    """
    if backend not in BACKENDS:
        raise AccuracyError(f"unknown accuracy backend {backend!r}: use {', '.join(BACKENDS)}")
    if limit is not None and limit < 1:
        raise AccuracyError(f"limit={limit!r} must be >= 1")
    if backend == "auto":
        backend = "lm-eval" if lm_eval_available() else "builtin"
    if backend == "builtin":
        if task not in TASKS:
            raise AccuracyError(
                f"unknown task {task!r}: the built-in tasks are {', '.join(TASKS)}; any other "
                "lm-eval task needs lm-eval: pip install 'pytest-llmperf[accuracy]'"
            )
        return evaluate_builtin(engine, TASKS[task], limit)
    return evaluate_lm_eval(engine, task, limit, include_path)


@dataclass
class AccuracyRecord:
    """What one test measured: the result and, when asked, its comparison to a reference."""

    result: AccuracyResult
    comparison: PairedComparison | None = None
    reference: AccuracyResult | None = None


def combine(results: Sequence[AccuracyResult]) -> AccuracyResult:
    """Several tasks' results as one (item ids prefixed with the task)."""
    if not results:
        raise AccuracyError("nothing to combine")
    correct = {f"{r.task}:{k}": v for r in results for k, v in r.correct.items()}
    n = len(correct)
    return AccuracyResult(
        task="+".join(r.task for r in results), accuracy=sum(correct.values()) / n, n=n,
        correct=correct, backend=results[0].backend,
        metric="+".join(sorted({r.metric for r in results})), model=results[0].model,
        seconds=sum(r.seconds for r in results),
    )


def combined_comparison(records: Sequence[AccuracyRecord]) -> PairedComparison | None:
    """One paired comparison over every item of every task that had a reference."""
    pairs = [(r.reference, r.result) for r in records if r.reference is not None]
    if not pairs:
        return None
    return compare_paired(combine([p[0] for p in pairs]),
                          combine([p[1] for p in pairs]))
