"""Task stacks: every thread's Python stack read in one go, and what Linux
4.6's ``sched_show_task()`` prints from it.

Reading another thread's stack means ``sys._current_frames()``. CPython 3.11
can deadlock in it (python/cpython#106883): it takes the interpreter's frame
lock, and a garbage collection triggered while that lock is held can wait
for the GIL held by a thread that waits for the lock. So the model reads all
the stacks it needs in *one* call, with the cyclic garbage collector paused
around it, and formats them afterwards: ``model_call_traces(tasks)`` for
khungtaskd and lockup reports, ``thread_stacks(threads)`` for a shutdown that
names the threads that did not stop.

A ``ModelStack`` is the lab's: the task's Python frames, innermost first.
Two views of it are printed. ``kernel_call_trace`` is the kernel stack 4.6
would show for the task (``kallsyms`` says which kernel functions each model
frame stands for, and ends a user task's stack at its kernel entry, a kernel
thread's at ``kthread``/``ret_from_fork``); ``sched_show_task`` prints it in
4.6's format, for dmesg. ``model_stack_line`` prints the Python stack itself,
for the lab's stream.
"""

from __future__ import annotations

import enum
import gc
import sys
import threading
import traceback
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Iterable

from . import cpu
from .kallsyms import (EXIT_KILLED, EXIT_OWN, KTHREAD_TAIL, SITE_SYSCALL, SYSCALL_FUNCTIONS, FrameKind,
                       frame_symbols, ip_sym, stable_hash, taken_by_user, tree_trace, user_site)
from .lockdep import lockdep_held

if TYPE_CHECKING:
    from .sched import Task

#: How long a reader waits for another reader to finish (real seconds).
GC_PAUSE_DEADLINE = 5.0

#: Python frames kept per task (innermost first): deep enough to reach the
#: task's body under the controlled CPU's and threading's frames.
RAW_DEPTH = 64

#: gc.disable()/gc.enable() switch the whole process. Two threads pausing it
#: at once must not overlap: the first to finish would re-enable collection
#: while the second is still inside sys._current_frames(). Process-wide on
#: purpose (the switch it guards is process-wide); it holds no run state.
_gc_pause = threading.Lock()

#: x86_64 (4.6): kernel stacks are THREAD_SIZE (16 KiB) in the direct map,
#: which starts at 0xffff880000000000; the entry code's pt_regs sit at the
#: top of the stack.
THREAD_SIZE = 0x4000
DIRECT_MAP = 0xffff880000000000
PT_REGS_SIZE = 0xa8
#: The synthetic stack a call trace takes, per frame (4.6 logs show 0x40 to
#: 0x50 bytes a frame on average).
FRAME_BYTES = 0x48


class TIF(enum.IntFlag):
    """``thread_info`` flags as ``sched_show_task`` prints them (x86's bits:
    TIF_MEMDIE is bit 20 there; bit 18 is TIF_FORK)."""

    TIF_SIGPENDING = 1 << 2
    TIF_MEMDIE = 1 << 20


#: The controlled CPU's source file, whose frames no lab trace shows.
_CPU_FILE = cpu.__file__


@dataclass(frozen=True)
class ModelFrame:
    """One Python frame of a task: where the model is, not a kernel frame."""

    filename: str
    name: str  # co_name
    qualname: str  # co_qualname (3.11+), else co_name
    lineno: int

    def __str__(self) -> str:
        return f"{self.qualname}+{self.lineno}"

    @property
    def shown_in_lab_trace(self) -> bool:
        """Left out of the lab's view: threading's and the controlled CPU's
        machinery (a sleep ends in sleep_on either way), the thread's entry,
        private helpers."""
        name = self.name
        return "threading" not in self.filename and self.filename != _CPU_FILE and \
            name not in ("run", "task_main") and \
            not (name.startswith("_") and not name.startswith("__"))


@dataclass(frozen=True)
class ModelStack:
    """A task's Python stack, innermost first, as one read of every stack saw
    it (empty: the thread was not running)."""

    frames: tuple[ModelFrame, ...] = ()

    def lab_trace(self, depth: int = 12) -> list[str]:
        """The lab's call trace: "sleep_on+321", "Mutex.__enter__+129", ..."""
        return [str(f) for f in self.frames if f.shown_in_lab_trace][:depth]

    def lab_names(self, depth: int = 12) -> list[str]:
        """The lab's call trace without line numbers (they move with every
        edit of the source, and the event digest must not)."""
        return [f.qualname for f in self.frames if f.shown_in_lab_trace][:depth]


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


def _model_stack(frame: FrameType | None) -> ModelStack:
    """A stack, innermost first. Never reads another thread's f_locals: that
    frame is running."""
    frames: list[ModelFrame] = []
    while frame is not None and len(frames) < RAW_DEPTH:
        code = frame.f_code
        frames.append(ModelFrame(code.co_filename, code.co_name,
                                 getattr(code, "co_qualname", code.co_name), frame.f_lineno))
        frame = frame.f_back
    return ModelStack(tuple(frames))


def model_call_traces(tasks: Iterable["Task"]) -> dict[int, ModelStack]:
    """pid -> the task's Python stack (empty for a thread not running), from
    one read of every stack."""
    tasks = list(tasks)
    frames = current_frames()
    return {t.pid: _model_stack(frames.get(t.thread.ident or -1)) for t in tasks}


def model_call_trace(t: "Task") -> ModelStack:
    """One task's Python stack. To read several tasks, call
    ``model_call_traces`` once: every call reads every thread's stack."""
    return model_call_traces([t])[t.pid]


def thread_stacks(threads: Iterable[threading.Thread]) -> dict[threading.Thread, str]:
    """thread -> its formatted Python stack ("(no frame)" if it is not running)."""
    threads = list(threads)
    frames = current_frames()
    return {th: "".join(traceback.format_stack(frames[th.ident]))
            if th.ident in frames else "(no frame)" for th in threads}


def _user_entry(t: "Task") -> tuple[str, ...]:
    """Where a user task's kernel stack ends when its body is below: the
    system call of the innermost lock its body holds or waits for (as lockdep
    lists them), or a bare system-call entry."""
    for lock, read, at in reversed(lockdep_held(t)):
        if taken_by_user(at):
            return user_site(lock, read)
    return SITE_SYSCALL


def kernel_call_trace(t: "Task", stack: ModelStack) -> list[str]:
    """The kernel functions a call trace of ``t`` would show, innermost
    first, for the model's ``stack`` (empty if the task was not running).

    Each model frame contributes its kernel functions (``kallsyms``), the
    lab's machinery nothing; the walk stops at the first frame of user code
    (the task's body). The tail: ``kthread``/``ret_from_fork`` for a kernel
    thread; for a user task stopped at its body, the system call of its
    innermost body-taken lock (``_user_entry``); for one in do_exit (no body
    left), the signal-delivery path if it was killed, exit_group(2) if not.
    A body under a model frame that already ends in a system call (the
    lab's ``vm_mmap_write_lock`` stands for vm_mmap_pgoff .. SyS_mmap) gets
    the bare entry. Unverified: which tail 4.6 shows for an oops'd task
    (taken as exit_group).

    The names are then the policy's tree's (``policy_ops.kernel_symbols``,
    ``kallsyms.RENAMES``: 4.14's and 5.x's, evidence and inferences there)."""
    if not stack.frames:
        return []
    syms: list[str] = []
    in_body = False
    for f in stack.frames:
        kind, names = frame_symbols(f.filename, f.name, f.qualname)
        if kind is FrameKind.USER:
            in_body = True
            break
        for name in names:
            if not syms or syms[-1] != name:
                syms.append(name)
    if t.is_kthread:
        tail = KTHREAD_TAIL
    elif in_body and syms and syms[-1] in SYSCALL_FUNCTIONS:
        tail = SITE_SYSCALL
    elif in_body:
        tail = _user_entry(t)
    elif "do_exit" in syms:
        tail = EXIT_KILLED if t.exit_reason == "SIGKILL" else EXIT_OWN
    else:
        tail = SITE_SYSCALL
    return tree_trace(syms + list(tail), t.kernel.policy_ops.kernel_symbols)


def print_trace(trace: list[str], address: bool = True) -> list[str]:
    """4.6 x86_64's ``Call Trace:`` entries (``printk_stack_address()``, all
    reliable, no "? " guesses): " [<address>] symbol+0xoff/0xsize", each a
    return address into the symbol's call of the one inside it (synthetic,
    see ``kallsyms``). 5.x (``address=False``; ``policy_ops.
    call_trace_no_address``) prints ``"%s %s%pB"``: " symbol+0xoff/0xsize"
    (5.10.13's arch/x86/kernel/dumpstack.c, read)."""
    return [f" {ip_sym(sym, trace[i - 1] if i else '', address)}" for i, sym in enumerate(trace)]


def show_stack(t: "Task", trace: list[str]) -> list[str]:
    """x86_64's ``show_trace_log_lvl()`` for a task not current: "Call Trace:"
    and the entries. From 5.16 (``policy_ops.call_trace_task_markers``) the
    task stack is framed by ``" <TASK>"`` and ``" </TASK>"`` (``printk("%s
    <%s>\n")`` with stack_type_name(STACK_TYPE_TASK) = "TASK"), read in a
    6.6 copy; 5.10.13 prints no marker for the task stack. Left out in every
    tree: the user registers x86 prints when the unwinder reaches the
    syscall's pt_regs (``show_regs_if_on_stack``: "RIP: 0033:...", "RSP:
    002b:...", the general registers; 4.14 and 5.x, the model has no user
    registers to show; which 4.x tree began it is not verified)."""
    ops = t.kernel.policy_ops
    entries = print_trace(trace, address=not ops.call_trace_no_address)
    if ops.call_trace_task_markers and entries:
        entries = [" <TASK>", *entries, " </TASK>"]
    return ["Call Trace:", *entries]


def thread_saved_pc(t: "Task", trace: list[str]) -> int:
    """What 4.6 x86_64's ``thread_saved_pc()`` shows for a task not running.

    In 4.5/4.6-era logs that value is the word on top of the sleeping task's
    stack, the frame pointer switch_to() saved: an address inside the task's
    kernel stack, the same as the first word of the stack dump (e.g.
    ``a.out D ffff88002e3c7d68`` with a stack page at ffff88002e3c4000). The
    model has no kernel stack: this is a synthetic address in a synthetic
    stack page (from the pid's hash, in the first 4 GiB of the direct map),
    as deep below its top as the call trace is long."""
    base = DIRECT_MAP + (stable_hash("stack", str(t.pid)) % 0x3fffc) * THREAD_SIZE
    return (base + THREAD_SIZE - PT_REGS_SIZE - FRAME_BYTES * len(trace)) & ~0x7


def sched_show_task(t: "Task", stack: ModelStack | None = None) -> list[str]:
    """The lines of Linux 4.6's ``sched_show_task()`` on x86_64: the ps-like
    line, then ``show_stack()``'s call trace, for the model's ``stack``
    (read now if the caller did not read it with ``model_call_traces``).

    The ps-like line is 4.6's printf: ``"%-15.15s %c"``, then for a task not
    in TASK_RUNNING ``" %016lx "`` (``thread_saved_pc()``, synthetic: see
    there) or ``"  running task    "``, then ``"%5lu %5d %6d 0x%08lx"``: free
    stack (0 without CONFIG_DEBUG_STACK_USAGE), pid, parent pid, thread_info
    flags. Checked against 4.5-rc5/rc6 linux-next console logs (the
    kernel/sched/core.c of v4.6 itself could not be read); the saved-PC
    column was gone by 4.9 (a 4.9.79 log prints ``D    0 14018      1``):
    designs with ``policy_ops.sched_show_task_no_pc`` print it so.
    5.9's labelled line (``sched_show_task_labelled``, cc172ff301d8; read in
    the 5.9 diff and a 5.16+ copy per docs/KERNEL-FORMATS.md §6) is
    ``"task:%-15.15s state:%c"``, ``"  running task    "`` if running, then
    ``" stack:%5lu pid:%5d ppid:%6d flags:0x%08lx"``.
    The model has no parent: a user task's is init (1), a kernel thread's
    kthreadd (2).

    Left out: the three lines of raw stack words x86_64's show_stack prints
    before ``Call Trace:`` (the model has no kernel stack to dump), and
    ``print_worker_info()``'s line (the model has no workqueues)."""
    if stack is None:
        stack = model_call_trace(t)
    trace = kernel_call_trace(t, stack)
    flags = (TIF.TIF_MEMDIE if t.tif_memdie else 0) | (TIF.TIF_SIGPENDING if t.sigkill_pending else 0)
    letter = t.state_letter
    ops = t.kernel.policy_ops
    ppid = 2 if t.is_kthread else 1
    if ops.sched_show_task_labelled:
        # 5.9 (cc172ff301d8): pr_info("task:%-15.15s state:%c"), "  running
        # task    " if running, then " stack:%5lu pid:%5d ppid:%6d flags:0x%08lx".
        running = "  running task    " if letter == "R" else ""
        ps = (f"task:{t.comm:<15.15} state:{letter}{running} stack:{0:5d} pid:{t.pid:5d} "
              f"ppid:{ppid:6d} flags:0x{int(flags):08x}")
        return [ps, *show_stack(t, trace)]
    if ops.sched_show_task_no_pc:
        # 4.9 (8243d559): "  running task    " or nothing.
        pc = "  running task    " if letter == "R" else ""
    else:
        pc = "  running task    " if letter == "R" else f" {thread_saved_pc(t, trace):016x} "
    return [f"{t.comm:<15.15} {letter}{pc}{0:5d} {t.pid:5d} {ppid:6d} 0x{int(flags):08x}",
            *show_stack(t, trace)]


def model_stack_line(t: "Task", stack: ModelStack) -> str:
    """The lab's line for the model's own stack of ``t``, innermost first,
    without line numbers: "model stack of victim/101: sleep_on <
    Mutex.__enter__ < lockup_a_setup.<locals>.victim"."""
    names = stack.lab_names()
    return f"model stack of {t.comm}/{t.pid}: " + (" < ".join(names) if names else "(not running)")
