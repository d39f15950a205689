"""Local datasets (run/datasets.py) and the prompts a Workload builds from them: ShareGPT,
JSONL, CSV, Parquet and a real ``save_to_disk`` dataset, written to tmp_path; errors name
the file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.run.datasets import DatasetError, Row, guess_format, read_rows
from pytest_llmperf.run.workload import OUTPUT_STREAM, Workload, WorkloadError, build_prompts
from pytest_llmperf.testing.oracle import WordTokenizer

QA = [{"question": f"what is {w}", "answer_len": n, "answer": "the answer is " + w}
      for w, n in (("alpha", 3), ("beta", 5), ("gamma", 7), ("delta", 9))]


def sharegpt_item(human: str, gpt: str | None) -> dict[str, Any]:
    conv = [{"from": "system", "value": "be brief"}, {"from": "human", "value": human}]
    if gpt is not None:
        conv.append({"from": "gpt", "value": gpt})
    return {"id": human, "conversations": conv}


def test_sharegpt_json_and_jsonl_take_the_first_human_turn_and_gpt_answer(
        tmp_path: Path) -> None:
    items = [sharegpt_item("hello there", "one two three"), sharegpt_item("bye", None),
             {"conversations": [{"from": "gpt", "value": "no human"}]}]
    as_json = tmp_path / "sg.json"
    as_json.write_text(json.dumps(items))
    as_jsonl = tmp_path / "sg.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    want = [Row("hello there", answer="one two three"), Row("bye")]  # no human turn: skipped
    assert guess_format(as_json) == guess_format(as_jsonl) == "sharegpt"
    assert read_rows(as_json) == read_rows(as_jsonl) == want
    # The answer's token count is the asked length; without an answer, output_tokens.
    w = Workload(dataset=str(as_json), requests=4, warmup=0, output_tokens=11)
    prompts = build_prompts(WordTokenizer(), w)
    by_text = {p.text: p.output_tokens for p in prompts}
    assert by_text == {"hello there": 3, "bye": 11}


def test_jsonl_csv_parquet_and_saved_dataset_give_the_same_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in QA))
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer_len,answer\n" + "".join(
        f'"{r["question"]}",{r["answer_len"]},"{r["answer"]}"\n' for r in QA))
    parquet = tmp_path / "qa.parquet"
    pq.write_table(pa.Table.from_pylist(QA), parquet)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(QA).save_to_disk(str(saved))
    split = tmp_path / "split"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(QA[:2]),
                          "test": datasets.Dataset.from_list(QA)}).save_to_disk(str(split))
    columns = {"prompt": "question", "output_tokens": "answer_len"}
    want = [Row(r["question"], r["answer_len"]) for r in QA]
    assert [guess_format(p) for p in (jsonl, csv, parquet, saved, split)] == [
        "jsonl", "csv", "parquet", "hf", "hf"]
    for path in (jsonl, csv, parquet, saved):
        assert read_rows(path, None, columns) == want, path
    assert read_rows(split, "hf", columns, "test") == want
    assert read_rows(split, "hf", columns, "train") == want[:2]
    # The saved dataset's own Parquet files (a folder of them) read the same.
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(pa.Table.from_pylist(QA[:2]), shards / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(QA[2:]), shards / "train-00001-of-00002.parquet")
    assert read_rows(shards, None, columns) == want
    # An answer column is tokenized for the asked length.
    w = Workload(dataset=str(parquet), dataset_columns={"prompt": "question",
                                                        "answer": "answer"},
                 requests=4, warmup=0)
    prompts = build_prompts(WordTokenizer(), w)
    assert sorted(p.output_tokens for p in prompts) == [4, 4, 4, 4]
    assert sorted(p.text for p in prompts) == sorted(r["question"] for r in QA)


def test_rows_are_shuffled_by_the_seed_and_cycled(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(10)))

    def texts(seed: int, n: int) -> list[str]:
        w = Workload(dataset=str(path), requests=n, warmup=0, seed=seed)
        return [p.text for p in build_prompts(None, w)]

    first = texts(1, 25)
    assert first == texts(1, 25)  # deterministic
    assert sorted(first[:10]) == sorted(f"p{i}" for i in range(10))  # every row once
    assert first[10:20] == first[:10] and first[20:] == first[:5]  # then cycled
    assert first[:10] != [f"p{i}" for i in range(10)]  # shuffled
    assert texts(2, 10) != first[:10]  # another seed, another order


def test_without_a_length_column_each_request_draws_output_tokens(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("prompt\nfirst\nsecond\n")
    w = Workload(dataset=str(path), requests=8, warmup=0,
                 output_tokens={"dist": "uniform", "min": 5, "max": 500})
    assert [p.output_tokens for p in build_prompts(None, w)] == w.output_lengths.draw(
        8, 0, OUTPUT_STREAM)


@pytest.mark.parametrize(
    ("name", "text", "kwargs", "fragment"),
    [
        ("a.jsonl", '{"question": "q"}\n{"prompt": 1}\n', {},
         "a.jsonl:1: no column 'prompt' (the prompt, from Workload.dataset_columns); the "
         "columns are: question"),
        ("a.jsonl", '{"prompt": "q"}\n{"prompt": "r"\n', {}, "a.jsonl:2: not valid JSON"),
        ("a.jsonl", '{"prompt": "q"}\n{"prompt": 5}\n', {},
         "a.jsonl:2: column 'prompt' (the prompt) must be text, not 5"),
        ("a.csv", "q,n\nhi,3\nho,x\n", {"dataset_columns": {"prompt": "q",
                                                           "output_tokens": "n"}},
         "a.csv:3: column 'n' (output_tokens) must be a whole number >= 1, not 'x'"),
        ("a.csv", "q,n\nhi,3\n", {"dataset_columns": {"prompt": "text"}},
         "a.csv:1: no column 'text' (the prompt, from Workload.dataset_columns); the columns "
         "are: n, q"),
        ("a.json", '[{"conversations": [{"from": "human"}]}]', {},
         'a.json: item 0: conversations[0] must be an object with "from" and "value"'),
        ("a.jsonl", '{"conversations": []}\n{"turns": []}\n', {},
         'a.jsonl:2: expected an object with a "conversations" list'),
        ("a.txt", "hello\n", {}, "cannot tell the dataset's format"),
        ("a.jsonl", "", {}, "no prompts in the dataset"),
    ],
)
def test_a_bad_dataset_is_one_line_naming_file_line_and_column(
        tmp_path: Path, name: str, text: str, kwargs: dict[str, Any], fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    w = Workload(dataset=str(path), **kwargs)
    with pytest.raises(WorkloadError) as exc:
        build_prompts(None, w)
    assert "\n" not in str(exc.value)
    assert fragment in str(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"dataset_format": "xml"}, "dataset_format='xml' must be one of: sharegpt, jsonl, "
                                    "csv, parquet, hf"),
        ({"dataset_columns": {"text": "q"}}, "unknown key(s) text; valid: prompt, "
                                             "output_tokens, answer"),
        ({"dataset_columns": {"prompt": ""}}, "dataset_columns['prompt']='' must be a column"),
        ({"dataset_columns": {"output_tokens": "n", "answer": "a"}}, "not both"),
        ({"turns": 2}, "cannot be combined"),
        ({"shared_prefix_tokens": 4}, "shared_prefix_tokens does not apply to a dataset"),
    ],
)
def test_bad_dataset_fields_are_named(tmp_path: Path, kwargs: dict[str, Any],
                                      fragment: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"prompt": "x"}\n')
    with pytest.raises(WorkloadError) as exc:
        Workload(dataset=str(path), **kwargs)
    assert fragment in str(exc.value)
    with pytest.raises(WorkloadError, match="does not exist"):
        Workload(dataset=str(tmp_path / "missing.jsonl"))
    with pytest.raises(WorkloadError, match="dataset_split is for a dataset"):
        Workload(dataset_split="train")


def test_a_dataset_dict_needs_its_split_named(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "a"}]),
                          "test": datasets.Dataset.from_list([{"prompt": "b"}])}
                         ).save_to_disk(str(path))
    with pytest.raises(DatasetError, match=r"give Workload\.dataset_split, one of: test, train"):
        read_rows(path)
    with pytest.raises(DatasetError, match=r"'dev' is not in .*the splits are: test, train"):
        read_rows(path, split="dev")
    assert read_rows(path, split="train") == [Row("a")]
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DatasetError, match=r"bad\.parquet: not a readable Parquet file"):
        read_rows(bad)


def test_without_pyarrow_or_datasets_the_error_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    parquet = tmp_path / "a.parquet"
    parquet.write_bytes(b"PAR1")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_info.json").write_text("{}")
    for name in ("pyarrow", "pyarrow.parquet", "datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(DatasetError, match=r"needs pyarrow: pip install "
                                           r"'pytest-llmperf\[datasets\]'"):
        read_rows(parquet)
    with pytest.raises(DatasetError, match=r"needs the datasets package: pip install "
                                           r"'pytest-llmperf\[datasets\]'"):
        read_rows(saved)


def test_a_missing_column_of_parquet_or_saved_dataset_names_the_columns(
        tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "n": 2}]), parquet)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list([{"question": "q", "n": 2}]).save_to_disk(str(saved))
    for path in (parquet, saved):
        with pytest.raises(DatasetError) as exc:
            read_rows(path, None, {"prompt": "text"})
        assert str(exc.value) == (f"{path}: no column 'text' (the prompt, from "
                                  "Workload.dataset_columns); the columns are: n, question")
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "n": 0}]), parquet)
    with pytest.raises(DatasetError, match=r"a\.parquet: row 0: column 'n' \(output_tokens\) "
                                           r"must be a whole number >= 1, not 0"):
        read_rows(parquet, None, {"output_tokens": "n"})
