"""Ctrl-C and SIGTERM during a local run, taken at safe points.

A KeyboardInterrupt raised wherever the main thread happens to be can leave a lock of the
process pool's futures held, and the pool's manager thread then waits on it for ever when the
program exits. While the detection processes run, the signals only note the request; the run
checks it between steps and raises KeyboardInterrupt there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# How often a waiting run looks at the request (seconds).
CHECK_SECONDS = 0.2


class StopRequest:
    """Whether Ctrl-C or SIGTERM has arrived since the block began."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def check(self) -> None:
        """Raise KeyboardInterrupt once a stop was asked for."""
        if self.signal is not None:
            raise KeyboardInterrupt


@contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the request instead of interrupting (main thread only: elsewhere
    signals cannot be handled, and the request never fires)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def note(signum, frame) -> None:
        request.signal = signum

    previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
