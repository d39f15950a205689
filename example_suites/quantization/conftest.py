"""Collects one table row per format and prints the table at the end of the session
(and writes it to $LLMPERF_QUANT_TABLE as Markdown when that is set)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.report.quant_table import markdown_table

ROWS: list[dict[str, str]] = []


@pytest.fixture(scope="session")
def quant_table() -> list[dict[str, str]]:
    return ROWS


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not ROWS:
        return
    source = ROWS[0].get("source format", "-")
    lines = [
        f"Reference: the source file itself ({source}); every other row was made from it, so "
        "it carries the source's quantization loss as well as its own.",
        markdown_table(ROWS),
    ]
    terminalreporter.section("quantization: speed vs quality")
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("LLMPERF_QUANT_TABLE")
    if target:
        Path(target).write_text("\n\n".join(lines) + "\n")
