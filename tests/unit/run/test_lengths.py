"""Length distributions (run/lengths.py) and their use in Workload: moments, clipping,
determinism, validation, and the prompts built from them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_llmperf.run.lengths import LengthError, describe, parse_lengths, read_lengths
from pytest_llmperf.run.workload import (
    INPUT_STREAM,
    OUTPUT_STREAM,
    Workload,
    WorkloadError,
    build_prompts,
    jsonl_prompts,
)
from pytest_llmperf.testing.oracle import WordTokenizer

N = 20_000


def draws(spec: Any, n: int = N, seed: int = 1) -> np.ndarray:
    return np.asarray(parse_lengths("x", spec).draw(n, seed, 5))


def test_a_number_is_a_fixed_length() -> None:
    lengths = parse_lengths("x", 64)
    assert lengths.fixed and (lengths.minimum, lengths.maximum) == (64, 64)
    assert lengths.draw(3, 0, 1) == [64, 64, 64]


def test_normal_has_the_asked_mean_and_std_and_aiperf_guidellm_spellings() -> None:
    x = draws({"dist": "normal", "mean": 200, "std": 40})
    assert x.mean() == pytest.approx(200, abs=1.5)
    assert x.std() == pytest.approx(40, rel=0.03)
    for key in ("stddev", "stdev"):  # aiperf's and guidellm's words for it
        same = draws({"dist": "normal", "mean": 200, key: 40})
        assert (same == x).all()


def test_lognormal_by_mean_and_std_of_the_lengths_or_by_mu_and_sigma() -> None:
    x = draws({"dist": "lognormal", "mean": 300, "std": 150, "max": 100_000}, n=200_000)
    assert x.mean() == pytest.approx(300, rel=0.02)
    assert x.std() == pytest.approx(150, rel=0.05)
    assert np.median(x) < x.mean()  # right-skewed
    y = draws({"dist": "lognormal", "mu": math.log(100), "sigma": 0.5})
    assert np.median(y) == pytest.approx(100, abs=2)  # median = e**mu
    assert np.log(y).std() == pytest.approx(0.5, rel=0.05)


def test_uniform_covers_min_to_max_evenly() -> None:
    x = draws({"dist": "uniform", "min": 10, "max": 19})
    assert x.min() == 10 and x.max() == 19
    counts = np.bincount(x - 10)
    assert len(counts) == 10 and counts.min() > N / 10 * 0.9


def test_empirical_draws_only_the_given_values_in_their_proportions(tmp_path: Path) -> None:
    x = draws({"dist": "empirical", "values": [10, 10, 10, 50]})
    assert set(x.tolist()) == {10, 50}
    assert (x == 50).mean() == pytest.approx(0.25, abs=0.02)
    lines = tmp_path / "lengths.txt"
    lines.write_text("# observed\n10\n10\n\n10\n50\n")
    listed = tmp_path / "lengths.json"
    listed.write_text(json.dumps([10, 10, 10, 50]))
    for path in (lines, listed):
        assert (draws({"dist": "empirical", "file": str(path)}) == x).all()


def test_clipping_keeps_every_draw_within_min_and_max() -> None:
    x = draws({"dist": "normal", "mean": 100, "std": 80, "min": 50, "max": 150})
    assert x.min() == 50 and x.max() == 150
    assert (x == 50).mean() == pytest.approx(0.266, abs=0.02)  # P(z < -0.625)
    # No min: a draw is never below 1; no max: capped at mean + 6 std.
    lengths = parse_lengths("x", {"dist": "normal", "mean": 10, "std": 20})
    assert (lengths.minimum, lengths.maximum) == (1, 130)
    assert draws({"dist": "normal", "mean": 10, "std": 20}).min() == 1
    e = parse_lengths("x", {"dist": "empirical", "values": [5, 900], "max": 100})
    assert sorted(set(e.draw(100, 0, 1))) == [5, 100]


def test_draws_are_deterministic_for_a_seed_and_prefix_stable() -> None:
    spec = {"dist": "lognormal", "mean": 100, "std": 50}
    assert (draws(spec, seed=3) == draws(spec, seed=3)).all()
    assert not (draws(spec, seed=3) == draws(spec, seed=4)).all()
    assert (draws(spec, n=10, seed=3) == draws(spec, seed=3)[:10]).all()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"dist": "gauss", "mean": 1}, "['dist']='gauss' must be one of: normal, lognormal"),
        ({"dist": "normal", "mean": 10}, "needs 'mean' and 'std'"),
        ({"dist": "normal", "mean": 10, "std": -1}, "['std']=-1 must be >= 0"),
        ({"dist": "normal", "mean": 0, "std": 1}, "['mean']=0 must be > 0"),
        ({"dist": "normal", "mean": 10, "std": 1, "sd": 2}, "unknown key(s) sd; valid:"),
        ({"dist": "normal", "mean": "10", "std": 1}, "['mean']='10' must be a finite number"),
        ({"dist": "normal", "mean": 10, "std": 1, "min": 20, "max": 5}, "min=20 must be <="),
        ({"dist": "uniform", "min": 5}, "needs 'min' and 'max'"),
        ({"dist": "uniform", "min": 0, "max": 5}, "['min']=0 must be a whole number >= 1"),
        ({"dist": "lognormal", "mean": 10, "std": 1, "mu": 2}, "not both"),
        ({"dist": "empirical"}, "needs one of 'values'"),
        ({"dist": "empirical", "values": [3, 0]}, "['values'][1]=0 must be a whole number"),
        ({"dist": "normal", "mean": 1e9, "std": 1e6}, "is above the limit"),
        ({"dist": "normal", "mean": 5e6, "std": 5e6}, "lengths up to 35,000,000 (the "
                                                      "one-in-a-billion point) could be drawn"),
        ({"dist": "empirical", "file": "/"}, "['file']: /: a directory, not a regular file"),
        (2.5, "=2.5 must be a whole number >= 1 or a distribution"),
    ],
)
def test_a_bad_distribution_is_one_line_naming_the_field(spec: Any, fragment: str) -> None:
    with pytest.raises(WorkloadError) as exc:
        Workload(input_tokens=spec)
    message = str(exc.value)
    assert "\n" not in message and "Workload.input_tokens" in message
    assert fragment in message


def test_a_bad_lengths_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_text("12\n7\nseven\n")
    with pytest.raises(LengthError, match=r"l\.txt:3: 'seven' is not a whole number"):
        read_lengths(path)
    path.write_text("[1, 2,")
    with pytest.raises(LengthError, match=r"l\.txt:1: not a valid JSON list"):
        read_lengths(path)
    with pytest.raises(WorkloadError, match="cannot read the lengths file"):
        Workload(output_tokens={"dist": "empirical", "file": str(tmp_path / "none.txt")})


def test_workload_limits_use_the_distributions_largest_length() -> None:
    with pytest.raises(WorkloadError, match=r"max input_tokens = .* x 9,000,000"):
        Workload(input_tokens={"dist": "uniform", "min": 1, "max": 9_000_000}, requests=50)
    with pytest.raises(WorkloadError, match=r"shortest input_tokens .*=8"):
        Workload(input_tokens={"dist": "uniform", "min": 8, "max": 90},
                 shared_prefix_tokens=8)
    Workload(input_tokens={"dist": "uniform", "min": 9, "max": 90}, shared_prefix_tokens=8)


def test_the_workload_dict_stays_json_and_the_same() -> None:
    spec = {"dist": "normal", "mean": 64, "std": 8, "min": 16}
    a = Workload(input_tokens=spec, output_tokens={"dist": "uniform", "min": 4, "max": 8})
    b = Workload(input_tokens=dict(spec), output_tokens={"dist": "uniform", "min": 4, "max": 8})
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
    assert a.to_dict()["input_tokens"] == spec
    assert describe(spec) == "normal(mean 64, std 8) in [16, 112]"
    assert describe(128) == "128"
    assert describe({"dist": "empirical", "file": "/data/lens.txt", "max": 9}) == (
        "empirical(lens.txt) max 9")
    assert describe({"dist": "empirical", "values": [3, 5]}) == "empirical(2 values) in [1, 5]"
    assert describe({"dist": "zipf"}) == "zipf"  # an edited file: shown as it is


def test_synthetic_prompts_have_each_requests_drawn_length() -> None:
    tok = WordTokenizer()
    w = Workload(input_tokens={"dist": "uniform", "min": 8, "max": 40},
                 output_tokens={"dist": "normal", "mean": 20, "std": 5, "min": 2},
                 requests=200, warmup=0, seed=7)
    prompts = build_prompts(tok, w)
    want_in = w.input_lengths.draw(200, 7, INPUT_STREAM)
    assert [p.input_tokens for p in prompts] == want_in
    assert [len(tok.tokenize(p.text)) for p in prompts] == want_in  # exact, as built
    assert [p.output_tokens for p in prompts] == w.output_lengths.draw(200, 7, OUTPUT_STREAM)
    assert len(set(want_in)) > 20
    assert [p.text for p in build_prompts(tok, w)] == [p.text for p in prompts]


def test_a_prompts_file_line_without_its_length_draws_the_workloads(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a b"}\n{"prompt": "c", "output_tokens": 3}\n')
    w = Workload(prompts_file=str(path), requests=6, warmup=0,
                 output_tokens={"dist": "uniform", "min": 10, "max": 99})
    outs = [p.output_tokens for p in jsonl_prompts(None, w)]
    drawn = w.output_lengths.draw(6, 0, OUTPUT_STREAM)
    assert outs == [drawn[0], 3, drawn[2], 3, drawn[4], 3]


def test_a_draw_too_short_for_the_special_tokens_names_the_request() -> None:
    class BOS(WordTokenizer):
        def tokenize(self, text: str, add_special: bool = True) -> list[int]:
            return ([1] if add_special else []) + super().tokenize(text, add_special=False)

    w = Workload(input_tokens={"dist": "uniform", "min": 1, "max": 3}, requests=30)
    with pytest.raises(WorkloadError, match=r"input_tokens=1 \(request \d+'s draw\).*'min'"):
        build_prompts(BOS(), w)


def test_a_workload_with_distributions_travels_to_load_workers() -> None:
    """--llmperf-load-workers sends the workload to other processes (pickled)."""
    import pickle

    w = Workload(input_tokens={"dist": "normal", "mean": 64, "std": 8},
                 output_tokens={"dist": "empirical", "values": [4, 8]})
    again = pickle.loads(pickle.dumps(w))
    assert again == w
    assert again.output_lengths.draw(50, 1, 2) == w.output_lengths.draw(50, 1, 2)


def test_a_workload_without_a_dataset_compares_as_it_did_before() -> None:
    """The stored workload's ``workload_key`` is what runs are compared by (verdict/gate.py):
    the unused dataset fields (at their defaults) are not part of it, so older baselines
    still match."""
    from pytest_llmperf.run.workload import workload_key

    older = {k: v for k, v in Workload().to_dict().items() if not k.startswith("dataset")}
    assert workload_key({"workload": Workload().to_dict()}) == workload_key({"workload": older})
    assert Workload(input_tokens=32).to_dict()["input_tokens"] == 32


def test_a_dataset_workload_stores_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "x"}\n')
    stored = Workload(dataset=str(path), dataset_columns={"prompt": "prompt"}).to_dict()
    assert stored["dataset"] == str(path) and stored["dataset_columns"] == {"prompt": "prompt"}
    assert stored["dataset_split"] is None
    as_path = Workload(dataset=path).to_dict()  # type: ignore[arg-type]
    assert json.loads(json.dumps(as_path))["dataset"] == str(path)
