"""``struct completion``: how scenarios order steps across task threads.

Plug-aware like every wait in the model, so a scenario blocked on a step
that never comes is still unwound by ``Kernel.shutdown()``.

Two spellings of a killable wait: ``wait_for_completion_killable()`` is the
kernel's (returns 0, or -EINTR and leaves unwinding to the caller);
``wait_killable()`` is the Pythonic one (raises ``SigKill``, so the task
unwinds into do_exit by itself).

Semantics: Linux 4.6's kernel/sched/completion.c, except how
``complete_all()`` is spelled: the model sets ``done`` to a marker that no
later wait consumes, where 4.6 adds UINT_MAX/2 and lets every wait take one
(the same in practice; which later kernel switched to the marker was not
verified at the source). ``wait(timeout)`` in real seconds, ``wait_killable()``
and the plug are the lab's.
"""

from __future__ import annotations

import threading

from .cpu import monotonic, sched_point
from .errors import Errno, SigKill
from .sched import Parker, SleepResult, TaskState, current, current_parker, sleep_on

#: complete_all() leaves done at this value: every later wait passes at once.
COMPLETE_ALL = 1 << 31


class Completion:
    def __init__(self, name: str = "completion") -> None:
        self.name = name
        self.done = 0
        # Protects done and the list of sleeping events.
        self._lock = threading.Lock()
        self._sleepers: list[Parker] = []

    def __repr__(self) -> str:
        return f"<completion {self.name} done={self.done}>"

    def complete(self) -> None:
        sched_point()
        with self._lock:
            if self.done != COMPLETE_ALL:
                self.done += 1
            sleepers = list(self._sleepers)
        for p in sleepers:
            p.unpark()

    def complete_all(self) -> None:
        sched_point()
        with self._lock:
            self.done = COMPLETE_ALL
            sleepers = list(self._sleepers)
        for p in sleepers:
            p.unpark()

    def completion_done(self) -> bool:
        return self.done > 0

    def try_wait_for_completion(self) -> bool:
        sched_point()
        with self._lock:
            if self.done == 0:
                return False
            if self.done != COMPLETE_ALL:
                self.done -= 1
            return True

    def wait_for_completion(self) -> None:
        """Uninterruptible, no timeout (a task only; the plug still unwinds it)."""
        self._wait(TaskState.TASK_UNINTERRUPTIBLE, None)

    def wait_for_completion_killable(self) -> int:
        """TASK_KILLABLE: 0 once completed, -EINTR if a fatal signal woke the
        task first (the caller decides how to unwind, as in the kernel)."""
        res = self._wait(TaskState.TASK_KILLABLE, None)
        return 0 if res is SleepResult.WOKEN else -Errno.EINTR

    def wait_killable(self) -> None:
        """TASK_KILLABLE; raises ``SigKill`` if a fatal signal wakes the task
        first, so the body unwinds (its ``with`` blocks release their locks)
        into do_exit. From a task only: a harness thread has no signals."""
        if self.wait_for_completion_killable() != 0:
            raise SigKill()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` real seconds (harness threads and tasks)."""
        return self._wait(TaskState.TASK_UNINTERRUPTIBLE, monotonic() + timeout) \
            is SleepResult.WOKEN

    def _wait(self, state: TaskState, deadline: float | None) -> SleepResult:
        sched_point()
        task = current()
        parker = task.parker if task is not None else current_parker()
        with self._lock:
            self._sleepers.append(parker)
        try:
            return sleep_on(state, self, self.try_wait_for_completion, deadline)
        finally:
            with self._lock:
                self._sleepers.remove(parker)
