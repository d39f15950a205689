"""Local datasets as prompts: ShareGPT, JSONL / CSV / Parquet with a column mapping, and a
Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (or its Parquet files).

Nothing is fetched from a hub: every reader takes a local path. ``read_rows`` gives the rows
(a prompt, and the answer's length as a number or as text to tokenize); run.workload turns
them into prompts (``dataset_prompts``).

Formats (``Workload.dataset_format``; None guesses from the path):

- ``sharegpt``: a JSON list or a JSONL file of ``{"conversations": [{"from": "human",
  "value": ...}, {"from": "gpt", "value": ...}, ...]}``. The prompt is the first human turn
  ("human" or "user"); the answer is the first gpt turn after it ("gpt", "chatgpt",
  "assistant" or "model"). A conversation without a human turn is skipped.
- ``jsonl``, ``csv``, ``parquet`` (a file, or a folder of ``*.parquet`` files read in name
  order), ``hf`` (a folder written by ``Dataset.save_to_disk``; a ``DatasetDict`` needs
  ``Workload.dataset_split``): one row per request, the columns named by
  ``Workload.dataset_columns`` (``{"prompt": ..., "output_tokens": ..., "answer": ...}``;
  default ``{"prompt": "prompt"}``, and a column called ``output_tokens`` is used when
  present). ``output_tokens`` names a column of whole numbers; ``answer`` a text column whose
  token count (with the engine's tokenizer) is the asked output length.

Guessing: a folder with ``dataset_info.json`` or ``dataset_dict.json`` is ``hf``, another
folder ``parquet``; ``.parquet`` parquet; ``.csv`` csv; ``.json`` sharegpt; ``.jsonl`` sharegpt
when its first object has "conversations", else jsonl.

pyarrow (Parquet) and datasets (``hf``) are imported only when such a dataset is read; their
absence names the ``pytest-llmperf[datasets]`` extra. Errors are ``DatasetError``: one line
naming the file (and line or row) and the field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..reading import ReadLimitError, read_bytes
from ..values import show

FORMATS = ("sharegpt", "jsonl", "csv", "parquet", "hf")
COLUMN_ROLES = ("prompt", "output_tokens", "answer")
EXTRA = "pip install 'pytest-llmperf[datasets]'"
_HUMAN = ("human", "user")
_GPT = ("gpt", "chatgpt", "assistant", "model")


class DatasetError(ValueError):
    """A dataset that cannot be read as asked (run.workload makes it a WorkloadError)."""


@dataclass(frozen=True)
class Row:
    """One dataset row: the prompt, and the answer's length (a number from the file) or its
    text (to be tokenized), or neither (the workload's output_tokens then)."""

    prompt: str
    output_tokens: int | None = None
    answer: str | None = None


def check_columns(columns: Any, where: str = "Workload.dataset_columns") -> dict[str, str]:
    """The column mapping checked: roles from ``COLUMN_ROLES`` to column names."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping):
        raise DatasetError(f"{where}={show(columns)} must be a dict such as "
                           "{'prompt': 'question', 'output_tokens': 'answer_len'}")
    bad = sorted(str(k) for k in columns if k not in COLUMN_ROLES)
    if bad:
        raise DatasetError(f"{where} has unknown key(s) {', '.join(bad)}; valid: "
                           f"{', '.join(COLUMN_ROLES)}")
    for key, value in columns.items():
        if not isinstance(value, str) or not value:
            raise DatasetError(f"{where}[{key!r}]={show(value)} must be a column name")
    if "output_tokens" in columns and "answer" in columns:
        raise DatasetError(f"{where}: give 'output_tokens' (a number column) or 'answer' (a "
                           "text column to tokenize), not both")
    return dict(columns)


def guess_format(path: Path) -> str:
    """The format of ``path`` from its shape and name (see the module docstring)."""
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        return "parquet"
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":
        return "sharegpt"
    if suffix == ".jsonl":
        first = next((line for line in _text(path).split("\n") if line.strip()), "")
        try:
            obj = json.loads(first)
        except (json.JSONDecodeError, RecursionError):
            return "jsonl"  # the reader names the line
        return "sharegpt" if isinstance(obj, Mapping) and "conversations" in obj else "jsonl"
    raise DatasetError(f"{path}: cannot tell the dataset's format from its name; give "
                       f"Workload.dataset_format, one of: {', '.join(FORMATS)}")


def read_rows(path: str | Path, fmt: str | None = None,
              columns: Mapping[str, str] | None = None, split: str | None = None) -> list[Row]:
    """The dataset's rows, in file order."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"Workload.dataset {str(path)!r} does not exist")
    if fmt is None:
        fmt = guess_format(p)
    if fmt not in FORMATS:
        raise DatasetError(f"Workload.dataset_format={show(fmt)} must be one of: "
                           f"{', '.join(FORMATS)}")
    cols = check_columns(columns)
    if fmt == "sharegpt":
        if columns:
            raise DatasetError("Workload.dataset_columns does not apply to a ShareGPT dataset "
                               "(the prompt is the first human turn)")
        rows = _sharegpt(p)
    elif fmt == "jsonl":
        rows = _jsonl(p, cols)
    elif fmt == "csv":
        rows = _csv(p, cols)
    elif fmt == "parquet":
        rows = _parquet(p, cols)
    else:
        rows = _hf(p, cols, split)
    if not rows:
        raise DatasetError(f"{p}: no prompts in the dataset")
    return rows


def _text(path: Path) -> str:
    try:
        data = read_bytes(path)
    except ReadLimitError as exc:
        raise DatasetError(str(exc)) from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the dataset ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                           "save the dataset as UTF-8") from None


def _json_line(path: Path, lineno: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DatasetError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None


def _sharegpt(path: Path) -> list[Row]:
    text = _text(path)
    items: list[tuple[str, Any]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise DatasetError(f"{path}: not valid JSON (nested too deeply)") from None
        items = [(f"{path}: item {i}", item) for i, item in enumerate(data)]
    else:
        items = [(f"{path}:{n}", _json_line(path, n, line))
                 for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    rows = []
    for where, item in items:
        conv = item.get("conversations") if isinstance(item, Mapping) else None
        if not isinstance(conv, list):
            raise DatasetError(f'{where}: expected an object with a "conversations" list '
                               '(ShareGPT)')
        row = _sharegpt_row(where, conv)
        if row is not None:
            rows.append(row)
    return rows


def _sharegpt_row(where: str, conv: list[Any]) -> Row | None:
    prompt: str | None = None
    for k, turn in enumerate(conv):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("from"), str) \
                or not isinstance(turn.get("value"), str):
            raise DatasetError(f'{where}: conversations[{k}] must be an object with "from" '
                               'and "value" strings')
        role = turn["from"].lower()
        if prompt is None and role in _HUMAN:
            prompt = turn["value"]
        elif prompt is not None and role in _GPT:
            return Row(prompt, answer=turn["value"])
    return Row(prompt) if prompt is not None else None


def _missing(where: str, role: str, column: str, present: Iterable[str]) -> DatasetError:
    have = ", ".join(sorted(str(c) for c in present)) or "none"
    return DatasetError(f"{where}: no column {column!r} (the {role}, from "
                        f"Workload.dataset_columns); the columns are: {have}")


def _roles(cols: Mapping[str, str], present: Sequence[str]) -> dict[str, str]:
    """Role -> column, with the defaults: "prompt", and "output_tokens" when present."""
    roles = dict(cols)
    roles.setdefault("prompt", "prompt")
    if "answer" not in roles and "output_tokens" not in roles and "output_tokens" in present:
        roles["output_tokens"] = "output_tokens"
    return roles


def _row(where: str, values: Mapping[str, Any], roles: Mapping[str, str],
         numbers_as_text: bool = False) -> Row:
    """One row from its values by column (``where`` names it: file:line or file: row n)."""
    prompt = values.get(roles["prompt"])
    if not isinstance(prompt, str):
        raise DatasetError(f"{where}: column {roles['prompt']!r} (the prompt) must be text, "
                           f"not {show(prompt)}")
    out: int | None = None
    answer: str | None = None
    if "output_tokens" in roles:
        raw = values.get(roles["output_tokens"])
        if numbers_as_text and isinstance(raw, str):
            raw = int(raw) if raw.strip().isdigit() else raw
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise DatasetError(f"{where}: column {roles['output_tokens']!r} (output_tokens) "
                               f"must be a whole number >= 1, not {show(raw)}")
        out = raw
    if "answer" in roles:
        text = values.get(roles["answer"])
        if not isinstance(text, str):
            raise DatasetError(f"{where}: column {roles['answer']!r} (the answer) must be "
                               f"text, not {show(text)}")
        answer = text
    return Row(prompt, out, answer)


def _jsonl(path: Path, cols: Mapping[str, str]) -> list[Row]:
    rows = []
    for lineno, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        obj = _json_line(path, lineno, line)
        where = f"{path}:{lineno}"
        if not isinstance(obj, Mapping):
            raise DatasetError(f"{where}: expected an object (one row per line)")
        roles = _roles(cols, list(obj))
        for role, column in roles.items():
            if column not in obj:
                raise _missing(where, role, column, obj)
        rows.append(_row(where, obj, roles))
    return rows


def _csv(path: Path, cols: Mapping[str, str]) -> list[Row]:
    text = _text(path)
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    try:
        header = list(reader.fieldnames or [])
        roles = _roles(cols, header)
        for role, column in roles.items():
            if column not in header:
                raise _missing(f"{path}:1", role, column, header)
        rows = []
        for values in reader:
            # The line where the row ends (a quoted field may span lines).
            rows.append(_row(f"{path}:{reader.line_num}", values, roles, numbers_as_text=True))
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _columns_rows(where: str, present: Sequence[str], cols: Mapping[str, str],
                  column: Any) -> list[Row]:
    """Rows of a columnar source: ``column(name)`` gives that column's values as a list."""
    roles = _roles(cols, present)
    for role, name in roles.items():
        if name not in present:
            raise _missing(where, role, name, present)
    data = {name: column(name) for name in set(roles.values())}
    n = len(next(iter(data.values())))
    return [_row(f"{where}: row {i}", {k: v[i] for k, v in data.items()}, roles)
            for i in range(n)]


def _parquet(path: Path, cols: Mapping[str, str]) -> list[Row]:
    try:
        import pyarrow.parquet as pq  # heavy: only for a Parquet dataset
    except ImportError:
        raise DatasetError(f"{path}: reading Parquet needs pyarrow: {EXTRA}") from None
    files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"{path}: a folder without .parquet files (and not a dataset "
                           "saved with save_to_disk)")
    rows: list[Row] = []
    for f in files:
        try:
            present = list(pq.read_schema(f).names)
            roles = _roles(cols, present)
            # Only the mapped columns are read (a dataset may carry large others).
            table = pq.read_table(f, columns=sorted({c for c in roles.values()
                                                     if c in present}))
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DatasetError(f"{f}: not a readable Parquet file ({exc})") from None
        rows += _columns_rows(str(f), present, cols,
                              lambda name, t=table: t.column(name).to_pylist())
    return rows


def _hf(path: Path, cols: Mapping[str, str], split: str | None) -> list[Row]:
    try:
        import datasets  # heavy: only for a saved Hugging Face dataset
    except ImportError:
        raise DatasetError(f"{path}: reading a saved Hugging Face dataset needs the datasets "
                           f"package: {EXTRA}") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise DatasetError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = sorted(ds)
        if split is None:
            raise DatasetError(f"{path}: a DatasetDict: give Workload.dataset_split, one of: "
                               f"{', '.join(splits)}")
        if split not in ds:
            raise DatasetError(f"Workload.dataset_split={show(split)} is not in {path}; the "
                               f"splits are: {', '.join(splits)}")
        ds = ds[split]
    elif split is not None:
        raise DatasetError(f"Workload.dataset_split={show(split)}: {path} is one Dataset, "
                           "without splits")
    return _columns_rows(str(path), list(ds.column_names), cols, lambda name: list(ds[name]))
