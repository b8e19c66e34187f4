"""Worker slots: one worker process behind its own single-worker executor.

A worker that crashes breaks only its own executor, so the seed it was running
is reported and the slot replaced. Workers are spawned with the stop signals
blocked (they inherit the mask) and deferred in the parent: a Ctrl-C or a
SIGTERM during start-up is neither lost nor able to kill a child mid-import.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from kthreads import Policy

from ..signals import StopSignals, signals_blocked
from .settings import SoakSettings
from .worker import run_one, worker_init, worker_pid

#: Real seconds a new worker may take to start Python and import the lab.
STARTUP_TIMEOUT = 60.0


@dataclass
class Job:
    future: cf.Future
    seed: int
    policy: Policy
    started: float  # when it became the running one (monotonic)


def started(first: cf.Future, stop: StopSignals) -> int:
    """Wait until the new worker answers (with its pid); polls for a stop request meanwhile."""
    end = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            return first.result(timeout=0.05)
        except cf.TimeoutError:
            if stop.requested():
                raise KeyboardInterrupt() from None
            if time.monotonic() > end:
                raise


class WorkerStartError(RuntimeError):
    """A worker process could not be started (spawn failed, it died importing, or timed out)."""


class Slot:
    def __init__(self, ctx: Any, stop: StopSignals) -> None:
        self.ex: cf.ProcessPoolExecutor | None = None
        try:
            with stop.deferred(), signals_blocked():
                self.ex = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=worker_init)
                first = self.ex.submit(worker_pid)  # spawns the process, here, signals blocked
            started(first, stop)
        except BaseException as e:  # stopped meanwhile, or the worker never came up
            self.kill()
            self.close(wait=False)
            if isinstance(e, (OSError, cf.TimeoutError, cf.process.BrokenProcessPool)):
                raise WorkerStartError(f"a worker process could not be started: "
                                       f"{type(e).__name__}: {e}") from None
            raise
        self.queue: list[Job] = []  # in submission order; the first one runs

    def submit(self, seed: int, policy: Policy, settings: SoakSettings) -> None:
        self.queue.append(Job(self.ex.submit(run_one, seed, policy, settings), seed, policy,
                              time.monotonic()))

    def exit_detail(self, e: BaseException) -> str:
        """Why the pool broke: the worker's exit code, or the parent's error."""
        procs = getattr(self.ex, "_processes", None) or {}
        codes = [p.exitcode for p in list(procs.values()) if p.exitcode is not None]
        detail = f": exit code {codes[0]}" if codes else ""
        if e.__cause__ is not None:
            detail += f": {str(e.__cause__).strip()[-300:]}"
        return detail

    def processes(self) -> list[Any]:
        """The executor's live worker process (a private field of the executor:
        the only way to reach its child)."""
        procs = getattr(self.ex, "_processes", None) or {}
        return [p for p in list(procs.values()) if p.is_alive()]

    def signal(self, signum: int) -> None:
        # Only a child still alive and not yet reaped: a stale pid may name another process.
        for proc in self.processes():
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def close(self, wait: bool = True) -> None:
        if self.ex is not None:
            self.ex.shutdown(wait=wait, cancel_futures=True)
