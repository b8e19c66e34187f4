"""Stopping from outside: SIGINT and SIGTERM as one stop request, never lost.

A ``StopSignals`` turns either signal into a request the harness answers the
same way (stop, join every thread and worker, report what was done). Where an
interruption would leave threads or half-started workers behind (booting a
kernel, spawning a worker), the request is *deferred*: noted at once and
raised as ``KeyboardInterrupt`` when the critical section ends. A section that
waits for long (an episode, a whole soak) is *polled*: it checks
``requested()`` at every wait and winds down by itself.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received
        self._defer = 0

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_status(self) -> int:
        """128 + the signal, as a shell reports a process killed by it."""
        return 128 + (self.signum or signal.SIGINT)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self._defer == 0:
            raise KeyboardInterrupt()

    @contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        """Handle SIGINT and SIGTERM while inside (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A critical section: a stop signal arriving inside is raised at its end
        (unless an enclosing ``polled()`` section polls for it instead)."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1
        if self._defer == 0 and self.signum is not None:
            raise KeyboardInterrupt()

    @contextmanager
    def polled(self) -> Iterator[None]:
        """A section that polls ``requested()`` at every wait and stops by itself:
        a stop signal inside is only noted, never raised."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1


@contextmanager
def signals_blocked() -> Iterator[None]:
    """Block the stop signals in this thread. A process spawned meanwhile
    inherits the mask across exec, so it cannot be interrupted while it is
    still importing; threads started meanwhile never take the signals."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
