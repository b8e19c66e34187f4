"""Ordering scenario steps across real threads, with a deadline on every step."""

from __future__ import annotations

from typing import Callable

from kthreads import Kernel


class StepTimeout(RuntimeError):
    """A step did not happen in time: the sequence is broken, loudly."""


class Sequencer:
    """``seq.until("victim sleeps on inode_lock", predicate)`` waits on model state."""

    def __init__(self, kernel: Kernel, timeout: float = 5.0) -> None:
        self.kernel = kernel
        self.timeout = timeout
        self.steps: list[str] = []

    def until(self, what: str, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        t = self.timeout if timeout is None else timeout
        if not self.kernel.wait_until(predicate, t):
            raise StepTimeout(f"step {len(self.steps) + 1} '{what}' did not happen within {t:g} s "
                              f"(after: {', '.join(self.steps) or 'start'})")
        self.steps.append(what)
