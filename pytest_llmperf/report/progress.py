"""A progress line while a run is going, so a long run is never silent."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest


class ProgressLine:
    """On a terminal: one line rewritten in place. In a CI log: a line every 25% or 10 s."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._tw = config.get_terminal_writer()

    @contextmanager
    def track(self, label: str, total: int) -> Iterator[Callable[[int, int], None]]:
        tw = self._tw
        tty = tw.isatty() if hasattr(tw, "isatty") else False
        start = time.monotonic()
        last = {"t": start, "pct": -1}

        capman = self._config.pluginmanager.getplugin("capturemanager")

        def show(write: Callable[[], None]) -> None:
            # Around the test's output capture, so the line reaches the terminal live.
            if capman is not None:
                with capman.global_and_fixture_disabled():
                    write()
            else:
                write()

        def tick(done: int, total_: int) -> None:
            now = time.monotonic()
            pct = int(100 * done / max(1, total_))
            text = f"[llmperf] {label}: {done}/{total_} requests ({now - start:.1f} s)"
            if tty:
                if now - last["t"] >= 0.2 or done == total_:
                    def redraw() -> None:
                        tw.write("\r" + text + " " * 4)
                        tw.flush()

                    show(redraw)
                    last["t"] = now
            elif done == total_ or pct // 25 > last["pct"] // 25 or now - last["t"] >= 10:
                show(lambda: tw.line(text))
                last["t"], last["pct"] = now, pct

        try:
            yield tick
        finally:
            if tty:
                show(lambda: tw.line(""))
