"""A soak worker process: runs one seeded episode at a time, stops when asked,
and exits by itself when its parent dies.

The worker's stop flag is process-wide state on purpose: a worker process is
one soak slot, and a pool's initializer can hand state to the calls it runs
later no other way. ``run_one`` also runs in the parent for replays, where no
worker state exists.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Callable

from kthreads import Policy, SchedConfig

from ..episode import EpisodeConfig, EpisodeResult, Keep, WorkloadDriver, run_episode, write_log
from ..signals import STOP_SIGNALS
from .settings import SoakSettings, episode_sched, replay_command

#: Real seconds a worker whose parent died gives its running episode to
#: unwind (every thread joined) before it exits anyway.
ORPHAN_GRACE = 2.0


@dataclass
class WorkerState:
    """Set by SIGUSR1 or SIGTERM (the parent stops the soak) or by the parent's
    death. The handler only sets a flag (raising from a handler could land
    anywhere, even inside Thread.start()); the episode polls it and unwinds."""

    stop: bool = False
    parent_gone: threading.Event = field(default_factory=threading.Event)


_worker: WorkerState | None = None  # this process's slot state; None outside a worker


def worker_init() -> None:
    """The pool's initializer, first thing in a new worker process."""
    global _worker
    state = _worker = WorkerState()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        state.stop = True

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGUSR1, on_stop)
    # The parent spawned us with the stop signals blocked (see signals_blocked):
    # now that they are handled, let them in.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    threading.Thread(target=watch_parent, args=(state,), name="soak-parent-watch", daemon=True).start()


def watch_parent(state: WorkerState) -> None:
    """Stop, then exit, once the parent process is gone (killed, crashed)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    while not multiprocessing.connection.wait([parent.sentinel], timeout=1.0):
        pass
    state.stop = True
    state.parent_gone.set()
    time.sleep(ORPHAN_GRACE)  # the episode polls the flag and unwinds meanwhile
    os._exit(70)  # EX_SOFTWARE: an orphan has nobody to report to


def worker_pid() -> int:
    return os.getpid()


def stop_requested() -> bool:
    return _worker is not None and _worker.stop


def run_one(seed: int, policy: Policy, settings: SoakSettings,
            stop: Callable[[], bool] = stop_requested, sched: SchedConfig | None = None) -> EpisodeResult:
    """One soak episode in the calling process; raises ``Interrupted`` once
    ``stop()`` holds (its threads are joined first). ``sched`` overrides the
    episode's own schedule (a replay of a recorded one)."""
    for kind, injected in settings.inject:
        if injected == seed and kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if injected == seed and kind == "hang":
            while True:  # until the parent's episode timeout kills this worker
                time.sleep(1)
    driver = WorkloadDriver.from_seed(seed, settings.params)
    cfg = EpisodeConfig(policy=policy, seed=seed, timing=settings.timing, trace=settings.trace,
                        sched=sched if sched is not None else episode_sched(settings.sched, seed))
    res = run_episode(driver, cfg, keep=settings.keep, stop=stop)
    if settings.log_dir and (settings.keep is Keep.ALL or res.interesting):
        path = Path(settings.log_dir) / f"seed{seed}-{policy.value}.jsonl"
        try:
            write_log(res, path, {"replay": replay_command(seed, policy.value, settings),
                                  "workload": asdict(settings.params)})
        except OSError as e:
            res.notes.append(f"flight recorder not written to {path}: {e.strerror or e}")
    if not res.interesting:
        res.schedule = None  # only what may be replayed crosses the process boundary
    return res.detached()
