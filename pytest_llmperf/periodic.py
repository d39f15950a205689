"""A background thread that calls a sampling function at a fixed interval while a run is
measured (the memory, GPU and CPU samplers share it)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """``Periodic(fn, interval_s, name).start()`` calls ``fn()`` every ``interval_s`` seconds
    in a daemon thread; ``stop()`` ends it and waits for it (idempotent, also before start)."""

    def __init__(self, fn: Callable[[], object], interval_s: float, name: str) -> None:
        self._fn = fn
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._fn()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
