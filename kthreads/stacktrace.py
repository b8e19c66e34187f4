"""Task stacks: every thread's Python stack read in one go, as call traces.

Reading another thread's stack means ``sys._current_frames()``. CPython 3.11
can deadlock in it (python/cpython#106883): it takes the interpreter's frame
lock, and a garbage collection triggered while that lock is held can wait
for the GIL held by a thread that waits for the lock. So the model reads all
the stacks it needs in *one* call, with the cyclic garbage collector paused
around it, and formats them afterwards: ``model_call_traces(tasks)`` for
khungtaskd and lockup reports, ``thread_stacks(threads)`` for a shutdown that
names the threads that did not stop.

Reading stacks is lab machinery (a call trace is the Python stack, not a
kernel one). ``sched_show_task`` prints in Linux 4.6's format, see there.
"""

from __future__ import annotations

import enum
import gc
import sys
import threading
import traceback
from types import FrameType
from typing import TYPE_CHECKING, Iterable

from . import cpu

if TYPE_CHECKING:
    from .sched import Task

#: How long a reader waits for another reader to finish (real seconds).
GC_PAUSE_DEADLINE = 5.0

#: gc.disable()/gc.enable() switch the whole process. Two threads pausing it
#: at once must not overlap: the first to finish would re-enable collection
#: while the second is still inside sys._current_frames(). Process-wide on
#: purpose (the switch it guards is process-wide); it holds no run state.
_gc_pause = threading.Lock()


class TIF(enum.IntFlag):
    """``thread_info`` flags as ``sched_show_task`` prints them (x86's bits:
    TIF_MEMDIE is bit 20 there; bit 18 is TIF_FORK)."""

    TIF_SIGPENDING = 1 << 2
    TIF_MEMDIE = 1 << 20


#: The controlled CPU's source file, whose frames no call trace shows.
_CPU_FILE = cpu.__file__


def current_frames() -> dict[int, FrameType]:
    """``sys._current_frames()`` with the garbage collector paused around it
    (its previous state restored)."""
    if not _gc_pause.acquire(True, GC_PAUSE_DEADLINE):
        raise RuntimeError("another thread has been reading stacks for "
                           f"{GC_PAUSE_DEADLINE:g} s")
    try:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return sys._current_frames()
        finally:
            if was_enabled:
                gc.enable()
    finally:
        _gc_pause.release()


def _call_trace(frame: FrameType | None, depth: int) -> list[str]:
    """A stack, innermost first, as kernel-ish function names."""
    names: list[str] = []
    while frame is not None and len(names) < depth:
        code = frame.f_code
        # co_qualname (3.11+) names the class too: "Mutex.__enter__". Never
        # read another thread's f_locals here: that frame is running.
        name = getattr(code, "co_qualname", code.co_name)
        # Left out: threading's and the controlled CPU's machinery (a sleep
        # ends in sleep_on either way), the thread's entry, private helpers.
        if "threading" not in code.co_filename and code.co_filename != _CPU_FILE and \
                code.co_name not in ("run", "task_main") and \
                not (code.co_name.startswith("_") and not code.co_name.startswith("__")):
            names.append(f"{name}+{frame.f_lineno}")
        frame = frame.f_back
    return names


def model_call_traces(tasks: Iterable["Task"], depth: int = 12) -> dict[int, list[str]]:
    """pid -> the task's call trace (empty for a thread not running), from
    one read of every stack."""
    tasks = list(tasks)
    frames = current_frames()
    return {t.pid: _call_trace(frames.get(t.thread.ident or -1), depth) for t in tasks}


def model_call_trace(t: "Task", depth: int = 12) -> list[str]:
    """One task's call trace. To trace several tasks, call
    ``model_call_traces`` once: every call reads every thread's stack."""
    return model_call_traces([t], depth)[t.pid]


def thread_stacks(threads: Iterable[threading.Thread]) -> dict[threading.Thread, str]:
    """thread -> its formatted Python stack ("(no frame)" if it is not running)."""
    threads = list(threads)
    frames = current_frames()
    return {th: "".join(traceback.format_stack(frames[th.ident]))
            if th.ident in frames else "(no frame)" for th in threads}


def sched_show_task(t: "Task", trace: list[str] | None = None) -> list[str]:
    """The lines of Linux 4.6's ``sched_show_task()``: a ps-like line and the
    call trace (``trace`` if the caller already read it with
    ``model_call_traces``). Differences: 4.6 also prints the task's saved PC
    (``thread_saved_pc``) between the state letter and the free-stack
    column, which the model leaves out (from memory, not verified at the
    source); free stack is printed as 0 and the parent pid as 1."""
    flags = (TIF.TIF_MEMDIE if t.tif_memdie else 0) | (TIF.TIF_SIGPENDING if t.sigkill_pending else 0)
    lines = [f"{t.comm:<15.15} {t.state_letter} {0:5d} {t.pid:5d} {1:6d} 0x{int(flags):08x}",
             "Call Trace:"]
    if trace is None:
        trace = model_call_trace(t)
    lines += [f" {name}" for name in trace]
    return lines
