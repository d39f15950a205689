"""Turning a user-facing error into one clean test failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def call_or_fail(
    fn: Callable[[], T],
    errors: type[Exception] | tuple[type[Exception], ...],
    prefix: str = "llmperf: ",
) -> T:
    """``fn()``, or a test failure whose message is the error's: no traceback and no
    "during handling of the above exception" chain (pytest.fail is called outside the
    ``except`` block on purpose)."""
    try:
        return fn()
    except errors as exc:
        message = f"{prefix}{exc}"
    pytest.fail(message, pytrace=False)
