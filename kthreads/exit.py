"""A task's life on its thread, and its death: do_exit -> exit_mm -> mmput.

``task_main`` is what the kernel hands every task's thread to run (the
lab's). The exit path follows Linux 4.6's kernel/exit.c, which could not be
read at v4.6: the tail of ``exit_mm`` (mmput, then exit_oom_victim if
TIF_MEMDIE) is from the v6 reaper patch hunks, the rest from recollection
and other versions (see KERNEL-HISTORY.md). Both trees the lab models
(aac45363^, aac45363) are taken to have the same exit path (not verified
at the source).
"""

from __future__ import annotations

from .errors import ModelBug, OomPanic, PlugPulled, SigKill
from .events import Ev
from .futex import exit_robust_list
from .lockdep import held_lock_name
from .mm import mmdrop, mmgrab, mmput
from .oom_kill import exit_oom_victim
from .sched import PF, Task, TaskState, return_to_user


def task_main(task: Task) -> None:
    """What a TaskThread runs: the body, then do_exit, whatever happened
    (the lab's; a body's uncaught exception counts as an oops)."""
    kernel = task.kernel
    try:
        if kernel.plug_pulled:  # started only to be run down at shutdown
            raise PlugPulled()
        task.body(task)
        # The body is done and heads back to user space to exit: a SIGKILL
        # that arrived meanwhile is noticed on the way.
        return_to_user(task)
        task.exit_reason = "exit"
    except SigKill:
        task.exit_reason = "SIGKILL"
    except PlugPulled:
        task.exit_reason = "plug pulled"
    except OomPanic:
        task.exit_reason = "panic"
    except ModelBug as e:
        task.exit_reason = "BUG"
        task.error = e
        kernel.report_bug(task, e)
    except BaseException as e:  # a broken task body: an oops, not a model bug
        task.exit_reason = "oops"
        task.error = e
        kernel.report_oops(task, e)
    try:
        do_exit(task)
    except ModelBug as e:
        kernel.report_bug(task, e)
    except BaseException as e:
        kernel.report_oops(task, e)
    finally:
        kernel.poke()


def do_exit(task: Task) -> None:
    """Linux 4.6's order: PF_EXITING (exit_signals), exit_mm, then the
    task's other resources (exit_sem, exit_files, exit_fs, ...), then
    exit_notify. So a task stuck in exit_mm still holds everything but its
    address space: the pages it allocated for itself come back only after.
    Not modelled: everything else do_exit does (exit_sem etc. are reduced to
    ``exit_task_pages``); 4.6 checks held locks with
    debug_check_no_locks_held(), the lab records an event instead.
    """
    kernel = task.kernel
    task.flags |= PF.PF_EXITING
    kernel.tracer.record(Ev.SCHED_PROCESS_EXIT_START, task.pid, task.comm, reason=task.exit_reason)
    for held in list(task.held_locks):
        # Exiting with a lock held: lockdep would complain; the model keeps
        # the lock held (nobody can release it any more) and records it.
        kernel.tracer.record(Ev.EXIT_WITH_LOCK_HELD, task.pid, task.comm, lock=held_lock_name(held))
    try:
        exit_mm(task)
    finally:
        # Also when exit_mm broke (a model bug, reported by task_main): the
        # pages are not left owned by a dead task on top of that.
        exit_task_pages(task)
    exit_notify(task)


def exit_task_pages(task: Task) -> None:
    """What the task allocated for itself and still holds goes back: the
    model's stand-in for the per-task kernel memory that 4.6 releases after
    exit_mm (open files, fs and namespace references, semaphore undo lists)."""
    pages, task.kernel_pages = task.kernel_pages, []
    task.kernel.zone.free_pages(pages, task)


def exit_mm(task: Task) -> None:
    """Detach the mm, as 4.6's exit_mm: mmap_sem for read first
    (uninterruptibly; the core-dump handshake, not modelled, needs it), an
    mm_count reference for lazy TLB, ->mm cleared under task_lock, mmput,
    then exit_oom_victim() if the task has TIF_MEMDIE (at aac45363 that
    function takes no argument and acts on current; 36324a99 added one).

    That down_read is where an exiting victim gets stuck when a writer holds,
    or waits for, its mmap_sem (lockup B).

    It starts with ``mm_release``'s robust-futex walk (``exit_robust_list``:
    4.6's mm_release, 5.5's futex_exit_release, same place), which reads
    the list head from the task's own memory: a reaped head reads as zero.
    The kernel walks it before testing ``->mm``; the model after, which is
    the same for every task the lab builds (a task with a robust list has
    an mm).
    """
    mm = task.mm
    if mm is None:
        return
    kernel = task.kernel
    exit_robust_list(task)
    held = False
    try:
        mm.mmap_sem.down_read()
        held = True
    except PlugPulled:
        pass  # shutting down: detach without the lock
    # The lazy-TLB reference the exiting task keeps until its last schedule.
    mmgrab(mm)
    with task.alloc_lock:  # task_lock(): the OOM killer reads ->mm under it
        task.mm = None
    if held:
        mm.mmap_sem.up_read()
    mmput(mm)
    # Read after ->mm was cleared under task_lock: a mark_oom_victim() that
    # saw our mm has set it by now, so TIF_MEMDIE is never left behind.
    if task.tif_memdie:
        exit_oom_victim(kernel, task)
    # finish_task_switch(): the last context switch drops the lazy-TLB mm.
    mmdrop(mm)


def exit_notify(task: Task) -> None:
    """Much simplified from 4.6's exit_notify: no parent to signal and no
    wait(); a thread is reaped at once (EXIT_DEAD), and a group leader with
    live threads stays EXIT_ZOMBIE until its last thread is gone (as 4.6's
    delay_group_leader keeps it)."""
    kernel = task.kernel
    with kernel.tasklist_lock:
        task.state = TaskState.EXIT_DEAD
        leader = task.group_leader
        others_alive = any(t is not task and not t.state & (TaskState.EXIT_DEAD | TaskState.EXIT_ZOMBIE)
                           for t in task.thread_group())
        if task is leader and others_alive:
            # The leader stays a zombie until its last thread is gone.
            task.state = TaskState.EXIT_ZOMBIE
        elif not others_alive and leader is not task and leader.state & TaskState.EXIT_ZOMBIE:
            leader.state = TaskState.EXIT_DEAD
        # Counted under tasklist_lock, which pulling the plug takes too: an
        # exit is counted only if it finished before the pull.
        if not kernel.plug_pulled:
            kernel.stats.task_exits += 1
        # Recorded with the state change, preemption off: nobody (the
        # harness deciding a verdict included) sees the task dead before
        # its exit is in the log.
        kernel.tracer.record(Ev.SCHED_PROCESS_EXIT, task.pid, task.comm, reason=task.exit_reason)
        # 4.9's signal->oom_mm pin lives as long as the signal struct: the
        # model drops it when the last thread of the group is gone (the
        # pointer stays, for whoever still holds the task).
        oom_mm = None
        if task.signal.oom_mm_pinned and all(t.state & TaskState.EXIT_DEAD for t in task.thread_group()):
            oom_mm, task.signal.oom_mm_pinned = task.signal.oom_mm, False
    if oom_mm is not None:
        mmdrop(oom_mm)  # outside tasklist_lock: the last drop frees the mm
    kernel.note_progress()
