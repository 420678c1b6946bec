"""A time bound on every invoke of a TFLite interpreter.

LiteRT's Python interpreter cannot be cancelled: the C++ `Interpreter::Cancel` is not exposed
by `ai_edge_litert.interpreter.Interpreter` (nor by tflite-runtime's or TensorFlow's), and an
invoke runs in C++ with the GIL released, where no Python signal handler or exception reaches
it. What can be done is to notice: a watchdog thread checks the invoke in progress a few times
a second, and when one has run longer than its bound calls `on_timeout`, which for the CLI
prints one line, removes partial outputs and ends the process (exit 2). A library never ends
its caller's process, so nothing is bounded until an application asks for it with
`bound_invokes(seconds, on_timeout)`; `TFLiteClassifier.scores` and the batch interpreter of a
folder run (batch.BatchRunner.run) arm it around each invoke.

A model that passed ops.check_operators has no loop (no WHILE) and so finishes in a time set by
its size; the bound matters for files run with `--allow-control-flow`.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

# The watchdog of the running command, or None: invokes are then not bounded.
active: "Watchdog | None" = None


class Watchdog:
    """Calls `on_timeout(seconds, what)` from its own thread when an armed invoke has run longer
    than `seconds`. One invoke is armed at a time (the thread that invokes: batch and
    one-by-one runs invoke from the consumer thread only)."""

    def __init__(self, seconds: float, on_timeout: Callable[[float, str], None]):
        if not seconds > 0:
            raise ValueError(f"an invoke time bound must be > 0 seconds, got {seconds}")
        self.seconds = float(seconds)
        self.on_timeout = on_timeout
        # (monotonic start, what is running) of the invoke in progress; one tuple, so the
        # watchdog reads a consistent pair without a lock.
        self._running: tuple[float, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="edgecls-invoke-watchdog", daemon=True)
        self._thread.start()

    def arm(self, what: str = "the model") -> None:
        self._running = (time.monotonic(), what)

    def disarm(self) -> None:
        self._running = None

    def _watch(self) -> None:
        tick = min(0.25, self.seconds / 4)
        while not self._stop.wait(tick):
            running = self._running
            if running is not None and time.monotonic() - running[0] > self.seconds:
                self.on_timeout(self.seconds, running[1])
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def bound_invokes(seconds: float, on_timeout: Callable[[float, str], None]) -> Watchdog:
    """Bound every following invoke to `seconds`; `stop_bounding()` ends it."""
    global active
    stop_bounding()
    active = Watchdog(seconds, on_timeout)
    return active


def stop_bounding() -> None:
    global active
    watchdog, active = active, None
    if watchdog is not None:
        watchdog.stop()
