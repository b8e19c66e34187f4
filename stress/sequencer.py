"""Ordering scenario steps across real threads, with a deadline on every step."""

from __future__ import annotations

from typing import Callable

from kthreads import Completion, Deadlock, Kernel, current


class StepTimeout(RuntimeError):
    """A step did not happen in time: the sequence is broken, loudly."""


class Sequencer:
    """``seq.until("victim sleeps on inode_lock", predicate)`` waits on model state."""

    def __init__(self, kernel: Kernel, timeout: float = 5.0) -> None:
        self.kernel = kernel
        self.timeout = timeout
        self.steps: list[str] = []
        self.broken: str | None = None
        self._gates: dict[str, Completion] = {}

    def _check(self) -> None:
        if self.broken is not None:
            raise StepTimeout(f"the sequence is broken: {self.broken}")

    def _break(self, why: str) -> StepTimeout:
        """Break the sequence: later steps fail at once, gate waiters wake and fail."""
        self.broken = why
        for gate in list(self._gates.values()):
            gate.complete_all()
        return StepTimeout(why)

    def until(self, what: str, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait (real seconds; virtual ones on the controlled CPU, where a
        step that nothing can bring about fails at once, naming the blocked
        tasks) until ``predicate()`` holds over model state."""
        self._check()
        t = self.timeout if timeout is None else timeout
        if not self.kernel.wait_until(predicate, t):
            stuck = self.kernel.stuck_report()
            when = (f"and cannot: {stuck}" if stuck else f"within {t:g} s")
            raise self._break(f"step {len(self.steps) + 1} '{what}' did not happen {when} "
                              f"(after: {', '.join(self.steps) or 'start'})")
        self.steps.append(what)

    def gate(self, name: str) -> Completion:
        return self._gates.setdefault(name, Completion(f"seq:{name}"))

    def release(self, name: str) -> None:
        """Open gate ``name``: every task waiting on it, or arriving later, goes on."""
        self._check()
        self.gate(name).complete_all()
        self.steps.append(f"release {name}")

    def wait(self, name: str, timeout: float | None = None) -> None:
        """In a task (or the harness): block until gate ``name`` is released."""
        self._check()
        t = self.timeout if timeout is None else timeout
        try:
            released = self.gate(name).wait(t)
        except Deadlock as e:  # the harness, on the controlled CPU: nobody left to release it
            raise self._break(f"the harness waits for gate '{name}', which nobody can release: {e}") from None
        if not released:
            where = f"{current().comm}" if current() is not None else "the harness"
            raise self._break(f"{where} waited {t:g} s for gate '{name}', never released")
        self._check()
