"""Built-in accuracy tasks, written for this project and shipped with it (no hub access).

Each task is a JSONL file next to this module plus an entry in TASKS. ``lm_eval_yaml`` renders
the same definition as an lm-eval task YAML (``dataset_path: json`` with an absolute
``data_files`` path), so lm-eval and the built-in runner score the same items the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass(frozen=True)
class TaskDef:
    name: str
    output_type: str  # "generate_until" or "multiple_choice"
    description: str
    until: tuple[str, ...] = ("\n",)
    max_gen_toks: int = 8

    @property
    def data_file(self) -> Path:
        return HERE / f"{self.name}.jsonl"

    def load(self) -> list[dict[str, Any]]:
        with self.data_file.open() as fh:
            return [json.loads(line) for line in fh if line.strip()]


TASKS: dict[str, TaskDef] = {
    "llmperf_arith": TaskDef(
        "llmperf_arith", "generate_until",
        "two-number addition and subtraction after four worked examples; exact match",
    ),
    "llmperf_words": TaskDef(
        "llmperf_words", "multiple_choice",
        "word facts (antonyms, capitals, categories, counting, plurals, colours); "
        "four choices scored by log-likelihood",
    ),
}


def lm_eval_yaml(task: TaskDef) -> str:
    """The task as lm-eval YAML (JSON is YAML, so no YAML writer is needed)."""
    config: dict[str, Any] = {
        "task": task.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(task.data_file)}},
        "test_split": "test",
        "output_type": task.output_type,
        "doc_to_text": "{{input}}",
        "num_fewshot": 0,
        "metadata": {"version": 1.0},
    }
    if task.output_type == "generate_until":
        config.update({
            "doc_to_target": "{{target}}",
            "generation_kwargs": {"until": list(task.until), "max_gen_toks": task.max_gen_toks,
                                  "do_sample": False, "temperature": 0.0},
            "filter_list": [{"name": "strip", "filter": [{"function": "remove_whitespace"},
                                                         {"function": "take_first"}]}],
            "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                             "higher_is_better": True}],
        })
    else:
        config.update({
            "doc_to_target": "{{gold}}",
            "doc_to_choice": "{{choices}}",
            "target_delimiter": " ",
            "metric_list": [{"metric": "acc", "aggregation": "mean",
                             "higher_is_better": True}],
        })
    return json.dumps(config, indent=2) + "\n"


def write_lm_eval_tasks(directory: Path) -> Path:
    """Write every built-in task as a YAML file into ``directory`` (an lm-eval include_path)."""
    directory.mkdir(parents=True, exist_ok=True)
    for task in TASKS.values():
        target = directory / f"{task.name}.yaml"
        text = lm_eval_yaml(task)
        if not target.is_file() or target.read_text() != text:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(target)
    return directory
