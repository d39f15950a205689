"""The ``llmperf`` command: baselines, reports and bisect (``main.py`` dispatches)."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
