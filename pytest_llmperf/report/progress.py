"""A progress line while a run is going, so a long run is never silent, and never in the way.

On a terminal: one line of its own under pytest's line of dots, rewritten in place, and erased
when the run ends, so pytest's dots and percentages carry on as without the plugin. In a log
(not a terminal): plain lines, only for a run that is slow (``SLOW_S``), then one every
``LOG_EVERY_S`` and one when it ends, each on a line of its own. Under ``-q``: nothing for a
run shorter than ``SLOW_S``, on a terminal too. In a log, after a run that showed lines, pytest
goes on with its next result on a fresh line that starts with the file's name, as its own
lines do, so no dot lands behind a progress line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SLOW_S = 10.0  # a run shorter than this shows nothing in a log or under -q
LOG_EVERY_S = 30.0  # in a log: one line this often while a slow run goes on
REDRAW_S = 0.2  # on a terminal: at most this often
ERASE = "\r\x1b[2K"  # to the line's start, and clear it
UP = "\x1b[1A"


class ProgressLine:
    """``track(label, total)``: a ``tick(done, total)`` for one run (see the module)."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._tw = config.get_terminal_writer()

    @contextmanager
    def track(self, label: str, total: int) -> Iterator[Callable[[int, int], None]]:
        tw = self._tw
        tty = tw.hasmarkup  # a terminal (or --color=yes): escapes draw in place
        quiet = (self._config.getoption("verbose", 0) or 0) < 0
        start = time.monotonic()
        state: dict[str, Any] = {"last": start, "shown": False, "col": 0, "line": None}
        capman = self._config.pluginmanager.getplugin("capturemanager")
        reporter = self._config.pluginmanager.getplugin("terminalreporter")

        def show(write: Callable[[], None]) -> None:
            # Around the test's output capture, so the line reaches the terminal live.
            if capman is not None:
                with capman.global_and_fixture_disabled():
                    write()
            else:
                write()

        def tick(done: int, total_: int) -> None:
            now = time.monotonic()
            elapsed = now - start
            if not state["shown"] and (quiet or not tty) and elapsed < SLOW_S:
                return
            if state["shown"] and done < total_ and now - state["last"] < (
                    REDRAW_S if tty else LOG_EVERY_S):
                return
            text = f"[llmperf] {label}: {done}/{total_} requests ({elapsed:.1f} s)"

            def write() -> None:
                if not state["shown"]:  # below pytest's line, remembering where it ended
                    state["shown"] = True
                    state["col"] = tw.width_of_current_line
                    state["line"] = getattr(tw, "_current_line", None)
                    if state["col"]:
                        tw.write("\n")
                elif not tty:
                    tw.write("\n")
                tw.write((ERASE if tty else "") + text)
                tw.flush()

            show(write)
            state["last"] = now

        try:
            yield tick
        finally:
            if state["shown"]:
                show(lambda: self._end(tty, state, reporter))

    def _end(self, tty: bool, state: dict[str, Any], reporter: Any) -> None:
        """After a run that showed a line: pytest's line as it was, so its dots go on."""
        tw = self._tw
        col = int(state["col"])
        if tty:  # erase our line, back to the end of pytest's (it goes on writing there)
            tw.write(ERASE + (UP + f"\x1b[{col + 1}G" if col else ""))
            if state["line"] is not None and hasattr(tw, "_current_line"):
                tw._current_line = state["line"]  # its width: where pytest's [ 50%] goes
            tw.flush()
            return
        tw.line()  # a log: our last line ends, pytest's results start a fresh line
        where = getattr(reporter, "currentfspath", None)
        if isinstance(where, Path) and col:  # its file's name first, as pytest writes it
            tw.write(os.path.relpath(where, getattr(reporter, "startpath", Path.cwd())) + " ")
        elif reporter is not None and not isinstance(where, Path):
            reporter.currentfspath = None  # -v: pytest writes the test's line again
