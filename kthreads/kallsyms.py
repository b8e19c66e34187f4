"""Kernel symbols for the model's call traces and lock dumps (the lab's).

Two things, both needed to print what Linux 4.6 prints about a task's stack:

* **Which kernel function a model frame stands for.** ``frame_symbols``
  classifies a Python frame by its module and function name: the lab's
  machinery (the stack reader, the controlled CPU, the lock slow paths'
  private helpers, the standard library) has no kernel counterpart; a
  kernel-named model function stands for the kernel functions in
  ``KERNEL_FRAMES`` (``sleep_on`` is ``schedule``; ``Mutex.__enter__`` is
  ``mutex_lock_nested`` above ``schedule_preempt_disabled``; the slow path's
  helpers are inlined into ``__alloc_pages_nodemask``), or, if unlisted, for
  the kernel function of its own name; anything else (a scenario's or a
  test's body, the harness) is user code, which a kernel stack never shows.
  ``user_site`` names the kernel code a user body's lock stands for (the
  system call that would take it), since lockdep's ``at:`` and a call trace
  must name a kernel function.
* **A synthetic kallsyms.** 4.6 prints a return address as
  ``[<ffffffff8xxxxxxx>] symbol+0xoff/0xsize``. The model has no kernel
  image: ``ip_sym`` makes up a stable start address and size for every
  symbol, and an offset for every call site (caller, callee), from a hash of
  the names. The same call site prints the same address in every run, in
  the call trace and in lockdep's ``at:``; nothing of it is real.

Later trees print other names for the same frames: ``KernelSymbols`` and
``RENAMES`` rewrite 4.6's names into 4.14's or 5.x's (``tree_trace``,
``tree_symbol``), behind ``PolicyOps.kernel_symbols``; what was seen in real
logs and what is inferred is listed at ``RENAMES``.

Which functions 4.6 inlines, and where a stack ends, were checked against
linux-mm console logs of that time (4.3 to 4.5-rc6 linux-next trees with
the OOM reaper series, 2015-2016) and a stored copy of v4.6's
kernel/locking/mutex.c: ``out_of_memory`` is called from
``__alloc_pages_nodemask`` (the slow path and ``__alloc_pages_may_oom``
inlined; lockdep shows oom_lock taken "at: __alloc_pages_nodemask"), a mutex
sleeps in ``schedule_preempt_disabled`` under ``mutex_lock_nested`` (lockdep
on), a reader in ``rwsem_down_read_failed`` under
``call_rwsem_down_read_failed`` and ``down_read``, ``alloc_pages_current``
calls ``__alloc_pages_nodemask``, a page fault ends ``__do_page_fault`` /
``do_page_fault`` / ``page_fault``, and a kernel thread's stack ends
``kthread`` / ``ret_from_fork``. From recollection, not verified at the 4.6
source: the exit path of a killed task (``do_group_exit`` ..
``syscall_return_slowpath``), the write(2) and mmap(2) chains of
``user_site`` (by analogy with the read(2) chain in those logs), and
``entry_SYSCALL_64_fastpath`` as the end of every system call (with syscall
auditing on, as on the machines of those logs, 4.6 goes through
``do_syscall_64`` / ``entry_SYSCALL64_slow_path`` instead).
"""

from __future__ import annotations

import enum
import hashlib
import os
import threading
from functools import lru_cache
from types import CodeType

#: x86_64's kernel text starts here (no KASLR); the synthetic symbols are
#: laid out in the first 8 MiB of it.
KERNEL_TEXT = 0xffffffff81000000
TEXT_SPAN = 0x800000


class FrameKind(enum.Enum):
    MACHINERY = "machinery"  # the lab's: no kernel counterpart, left out
    KERNEL = "kernel"  # a model function standing for kernel functions
    USER = "user"  # a task body or the harness: where the kernel stack ends


#: (module, function) -> the kernel functions that frame stands for,
#: innermost first; () for a model frame with no kernel counterpart of its
#: own (a wrapper, a loop the lab split out, a function 4.6 inlines).
KERNEL_FRAMES: dict[tuple[str, str], tuple[str, ...]] = {
    # The one sleep primitive, and the timed sleeps built on it (4.6's
    # schedule_timeout_*() call schedule_timeout(), which calls schedule()).
    ("sched", "sleep_on"): ("schedule",),
    ("sched", "return_to_user"): (),
    ("sched", "run"): (),  # TaskThread.run, named for Python 3.10 (no co_qualname)
    # 4.6's wait_for_completion*() reach schedule_timeout() through the
    # inlined do_wait_for_common().
    ("completion", "wait_for_completion"): ("schedule_timeout", "wait_for_completion"),
    ("completion", "wait_for_completion_killable"): ("schedule_timeout",
                                                     "wait_for_completion_killable"),
    ("completion", "wait"): ("schedule_timeout", "wait_for_completion_timeout"),
    ("completion", "wait_killable"): (),
    ("completion", "complete"): ("complete",),
    ("completion", "complete_all"): ("complete_all",),
    # Mutexes with lockdep on (CONFIG_DEBUG_LOCK_ALLOC): mutex_lock() is
    # mutex_lock_nested(), __mutex_lock_common() is inlined into it.
    ("mutex", "lock"): ("schedule_preempt_disabled", "mutex_lock_nested"),
    ("mutex", "__enter__"): ("schedule_preempt_disabled", "mutex_lock_nested"),
    ("mutex", "acquire"): ("schedule_preempt_disabled", "mutex_lock_nested"),
    ("mutex", "lock_killable"): ("schedule_preempt_disabled", "mutex_lock_killable_nested"),
    ("mutex", "killable"): ("schedule_preempt_disabled", "mutex_lock_killable_nested"),
    ("mutex", "trylock"): ("mutex_trylock",),
    ("mutex", "unlock"): ("mutex_unlock",),
    ("mutex", "release"): ("mutex_unlock",),
    ("mutex", "__exit__"): ("mutex_unlock",),
    ("mutex", "mutex_lock"): (),
    ("mutex", "mutex_lock_killable"): (),
    ("mutex", "mutex_trylock"): (),
    ("mutex", "mutex_unlock"): (),
    # x86's rwsem: the inline fast path calls an assembly thunk into the
    # slow path. The killable ones are not 4.6's (4.7, 4.15).
    ("rwsem", "down_read"): ("rwsem_down_read_failed", "call_rwsem_down_read_failed", "down_read"),
    ("rwsem", "acquire_read"): ("rwsem_down_read_failed", "call_rwsem_down_read_failed",
                                "down_read"),
    ("rwsem", "read"): ("rwsem_down_read_failed", "call_rwsem_down_read_failed", "down_read"),
    ("rwsem", "down_read_killable"): ("rwsem_down_read_failed_killable",
                                      "call_rwsem_down_read_failed_killable", "down_read_killable"),
    ("rwsem", "down_write"): ("rwsem_down_write_failed", "call_rwsem_down_write_failed",
                              "down_write"),
    ("rwsem", "acquire_write"): ("rwsem_down_write_failed", "call_rwsem_down_write_failed",
                                 "down_write"),
    ("rwsem", "write"): ("rwsem_down_write_failed", "call_rwsem_down_write_failed", "down_write"),
    ("rwsem", "down_write_killable"): ("rwsem_down_write_failed_killable",
                                       "call_rwsem_down_write_failed_killable",
                                       "down_write_killable"),
    ("rwsem", "down_read_trylock"): ("down_read_trylock",),
    ("rwsem", "down_write_trylock"): ("down_write_trylock",),
    ("rwsem", "up_read"): ("up_read",),
    ("rwsem", "release_read"): ("up_read",),
    ("rwsem", "up_write"): ("up_write",),
    ("rwsem", "release_write"): ("up_write",),
    # The page allocator: alloc_pages() is alloc_pages_current() on a NUMA
    # build; 4.6 inlines the slow path and __alloc_pages_may_oom() into
    # __alloc_pages_nodemask(), and the per-iteration helper is the lab's.
    ("page_alloc", "alloc_pages"): ("__alloc_pages_nodemask", "alloc_pages_current"),
    ("page_alloc", "__alloc_pages_slowpath"): (),
    ("page_alloc", "__alloc_pages_slowpath_once"): (),
    ("page_alloc", "__alloc_pages_may_oom"): (),
    ("page_alloc", "free_page"): ("free_pages",),
    # mmap_sem for write as an mm syscall takes it: the lab's helper stands
    # for vm_mmap_pgoff and the mmap(2) entry above it (SITE_MMAP; the
    # kernel-entry frame comes from the tail).
    ("mm", "vm_mmap_write_lock"): ("vm_mmap_pgoff", "SyS_mmap_pgoff", "SyS_mmap"),
    # exit: the task's thread entry is the lab's; exit_task_pages stands
    # for several exit_* calls, none of which sleeps in the model.
    ("exit", "task_main"): (),
    ("exit", "exit_task_pages"): (),
    # khungtaskd: the lab split check_hung_task()'s reporting half out.
    ("hung_task", "report_hung_tasks"): (),
    ("hung_task", "report_hung_task"): ("check_hung_task",),
}

#: Where a lock taken inside a frame with no symbol of its own was really
#: taken: the function 4.6 inlines it into.
INLINED_INTO: dict[tuple[str, str], str] = {
    ("page_alloc", "__alloc_pages_slowpath"): "__alloc_pages_nodemask",
    ("page_alloc", "__alloc_pages_slowpath_once"): "__alloc_pages_nodemask",
    ("page_alloc", "__alloc_pages_may_oom"): "__alloc_pages_nodemask",
}

#: kthreads modules that are the lab's machinery through and through.
MACHINERY_MODULES = frozenset({"cpu", "handoff", "trace", "stacktrace", "kallsyms", "events",
                               "schedule", "strategy", "snapshot", "lockdep", "errors", "kernel"})
#: Modules whose functions take locks for their caller: a lock taken there
#: (through the module-level ``mutex_lock(m)`` and the like) was taken by
#: code the acquire site does not name.
LOCK_API_MODULES = frozenset({"mutex", "rwsem"})

#: The kernel code a lock taken by a user body stands for: the function that
#: takes it (lockdep's ``at:``), up to where the kernel was entered.
#: mmap_sem for read: a page fault; for write: mmap(2); any other lock: the
#: write(2) path, where 4.6 takes the inode's i_mutex (``inode_lock()`` in
#: ``generic_file_write_iter``), the lab's stand-in for every other
#: syscall-level lock.
SITE_FAULT = ("__do_page_fault", "do_page_fault", "page_fault")
SITE_MMAP = ("vm_mmap_pgoff", "SyS_mmap_pgoff", "SyS_mmap", "entry_SYSCALL_64_fastpath")
SITE_WRITE = ("generic_file_write_iter", "__vfs_write", "vfs_write", "SyS_write",
              "entry_SYSCALL_64_fastpath")
#: A user task whose body holds no lock: the system call itself is not modelled.
SITE_SYSCALL = ("entry_SYSCALL_64_fastpath",)
#: A user task in do_exit: killed (the signal noticed on the way back to user
#: space), or exiting on its own (exit_group(2)).
EXIT_KILLED = ("do_group_exit", "get_signal", "do_signal", "exit_to_usermode_loop",
               "syscall_return_slowpath", "entry_SYSCALL_64_fastpath")
EXIT_OWN = ("do_group_exit", "SyS_exit_group", "entry_SYSCALL_64_fastpath")
#: Where every kernel thread's stack ends.
KTHREAD_TAIL = ("kthread", "ret_from_fork")
#: The system-call functions the chains above end in, just under the entry:
#: a trace whose kernel frames already reach one of them ends at the entry.
SYSCALL_FUNCTIONS = frozenset({"SyS_write", "SyS_mmap", "SyS_exit_group"})


class KernelSymbols(enum.Enum):
    """Whose function names a policy's call traces and lockdep's ``at:`` print
    (``PolicyOps.kernel_symbols``): the model's frames map to 4.6's names
    (``KERNEL_FRAMES``, the ``SITE_*`` chains), and ``RENAMES`` rewrites them
    into a later tree's. 5.18 uses ``V5_15``'s table: no difference was
    found for the model's frames (not read at either tag)."""

    V4_6 = "4.6"
    V4_14 = "4.14"
    V5_15 = "5.15"


#: Per tree: a 4.6 name -> the names that tree shows in its place, innermost
#: first (``()``: inlined away, or gone). Unlisted names are unchanged.
#: Evidence (none read at the v4.14/v5.15/v5.18 tags; "inferred" marks a name
#: taken from logs of nearby releases or from the commit that made it):
#:
#: * ``__schedule`` above ``schedule`` for a sleeping task from 4.9's
#:   switch_to() rewrite on: 4.14 ARM hung-task logs ("(__schedule) from
#:   (schedule+0x50/0xa8)", raspberrypi/linux#2798, 4.14.79), x86_64 4.18
#:   and 5.4 logs (" __schedule+0x2a6/0x700", Open-CAS#746; s3backer#163).
#:   Whether v4.9 shows it too was not checked, so v4.9 keeps 4.6's names.
#: * ``__mutex_lock`` between ``schedule_preempt_disabled`` and
#:   ``mutex_lock_nested`` with lockdep on (4.10's mutex rewrite): a
#:   lockdep 6.9 log (sched-ext/sched_ext#198: "schedule_preempt_disabled,
#:   __mutex_lock, mutex_lock_nested") and 4.14.67 ARM without lockdep
#:   ("__mutex_lock.constprop.4"); 4.14 and 5.x with lockdep inferred.
#: * 4.14's page allocator: ``__alloc_pages_slowpath`` is its own frame under
#:   ``__alloc_pages_nodemask`` (a 5.4 UEK log, db1000n#555, shows
#:   "__alloc_pages_slowpath+0xd40/0xe24, __alloc_pages_nodemask+0x2df,
#:   alloc_pages_current"); 4.14 inferred. 5.13 renamed them ``__alloc_pages``
#:   and ``alloc_pages``; the slow path is ``__alloc_pages_slowpath.constprop.0``
#:   (a 6.16 log, relate#1383; the suffix is the compiler's, 5.15 inferred).
#: * 5.x rwsems (5.3's rwsem rework, x86's asm thunks gone in 5.2):
#:   ``rwsem_down_read_slowpath`` under ``down_read`` (5.4 log, s3backer#163),
#:   ``rwsem_down_write_slowpath`` under ``down_write`` (inferred).
#: * 5.x system calls: ``do_syscall_64`` and ``entry_SYSCALL_64_after_hwframe``
#:   under the syscall (5.4 log, s3backer#163; 6.12's, amazon-linux-2023#993),
#:   the ``__x64_sys_*`` wrapper (4.17) above them ("__x64_sys_madvise" in
#:   the 5.4 log), ``ksys_write``/``ksys_mmap_pgoff`` (4.17/4.19) and
#:   ``new_sync_write`` under ``vfs_write`` (``__vfs_write`` folded away in
#:   5.8): inferred, whether a wrapper is a tail call depends on the build.
#:   The return to user space with a signal: ``arch_do_signal_or_restart``,
#:   ``exit_to_user_mode_prepare``, ``syscall_exit_to_user_mode`` (5.11's
#:   generic entry code; inferred, ``exit_to_user_mode_loop`` taken as inlined).
#: * 5.8's idtentry page fault: ``do_user_addr_fault``, ``exc_page_fault``,
#:   ``asm_exc_page_fault`` (a 6.17 log, systemd#40208; 5.15 inferred).
RENAMES: dict[KernelSymbols, dict[str, tuple[str, ...]]] = {
    KernelSymbols.V4_6: {},
    KernelSymbols.V4_14: {
        "schedule": ("__schedule", "schedule"),
        "mutex_lock_nested": ("__mutex_lock", "mutex_lock_nested"),
        "mutex_lock_killable_nested": ("__mutex_lock", "mutex_lock_killable_nested"),
        "__alloc_pages_nodemask": ("__alloc_pages_slowpath", "__alloc_pages_nodemask"),
    },
    KernelSymbols.V5_15: {
        "schedule": ("__schedule", "schedule"),
        "mutex_lock_nested": ("__mutex_lock", "mutex_lock_nested"),
        "mutex_lock_killable_nested": ("__mutex_lock", "mutex_lock_killable_nested"),
        "rwsem_down_read_failed": ("rwsem_down_read_slowpath",),
        "call_rwsem_down_read_failed": (),
        "rwsem_down_read_failed_killable": ("rwsem_down_read_slowpath",),
        "call_rwsem_down_read_failed_killable": (),
        "rwsem_down_write_failed": ("rwsem_down_write_slowpath",),
        "call_rwsem_down_write_failed": (),
        "rwsem_down_write_failed_killable": ("rwsem_down_write_slowpath",),
        "call_rwsem_down_write_failed_killable": (),
        "__vfs_write": ("new_sync_write",),
        "SyS_write": ("ksys_write", "__x64_sys_write"),
        "SyS_mmap_pgoff": ("ksys_mmap_pgoff",),
        "SyS_mmap": ("__x64_sys_mmap",),
        "SyS_exit_group": ("__x64_sys_exit_group",),
        "do_signal": ("arch_do_signal_or_restart",),
        "exit_to_usermode_loop": (),
        "syscall_return_slowpath": ("exit_to_user_mode_prepare", "syscall_exit_to_user_mode"),
        "entry_SYSCALL_64_fastpath": ("do_syscall_64", "entry_SYSCALL_64_after_hwframe"),
        "__do_page_fault": ("do_user_addr_fault",),
        "do_page_fault": ("exc_page_fault",),
        "page_fault": ("asm_exc_page_fault",),
        "__alloc_pages_nodemask": ("__alloc_pages_slowpath.constprop.0", "__alloc_pages"),
        "alloc_pages_current": ("alloc_pages",),
    },
}


def tree_trace(trace: list[str], syms: KernelSymbols = KernelSymbols.V4_6) -> list[str]:
    """A 4.6 call trace (innermost first) in ``syms``'s names (``RENAMES``),
    a repeated name kept once."""
    table = RENAMES[syms]
    out: list[str] = []
    for name in trace:
        for n in table.get(name, (name,)):
            if not out or out[-1] != n:
                out.append(n)
    return out


def tree_symbol(name: str, syms: KernelSymbols = KernelSymbols.V4_6) -> str:
    """The function a return address inside 4.6's ``name`` falls in, in
    ``syms``'s tree: the innermost of its replacements (the slow path for
    4.6's inlined allocator code, ``do_user_addr_fault`` for a fault)."""
    names = RENAMES[syms].get(name, (name,))
    return names[0] if names else name


def tree_callee(name: str, syms: KernelSymbols = KernelSymbols.V4_6) -> str:
    """The function a caller of 4.6's ``name`` calls in ``syms``'s tree: the
    outermost of its replacements (``mutex_lock_nested``, not ``__mutex_lock``)."""
    names = RENAMES[syms].get(name, (name,))
    return names[-1] if names else name

_KTHREADS_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(threading.__file__))


@lru_cache(maxsize=None)
def frame_symbols(filename: str, name: str, qualname: str) -> tuple[FrameKind, tuple[str, ...]]:
    """What a frame running ``qualname`` (``name`` on Python 3.10) from
    ``filename`` stands for: its kind and, for a kernel frame, the kernel
    functions, innermost first."""
    path = os.path.abspath(filename)
    if os.path.dirname(path) != _KTHREADS_DIR:
        if path.startswith(_STDLIB_DIR + os.sep) or filename.startswith("<"):
            return FrameKind.MACHINERY, ()
        return FrameKind.USER, ()
    module = os.path.splitext(os.path.basename(path))[0]
    if module in MACHINERY_MODULES:
        return FrameKind.MACHINERY, ()
    syms = KERNEL_FRAMES.get((module, name))
    if syms is not None:
        return FrameKind.KERNEL, syms
    # Unlisted: a module-level function is the kernel function it is named
    # after (the model's names are the kernel's); a method or a private
    # helper is the lab's.
    private = name.startswith("_") and not name.startswith("__") or \
        name.startswith("__") and name.endswith("__")
    if "." in qualname or private or name == "<module>":
        return FrameKind.MACHINERY, ()
    return FrameKind.KERNEL, (name,)


#: inspect.CO_NESTED: the code of a function defined inside another.
CO_NESTED = 0x10


def code_symbols(code: CodeType) -> tuple[FrameKind, tuple[str, ...]]:
    qualname = getattr(code, "co_qualname", None)
    if qualname is None:
        # Python 3.10 has no co_qualname: tell a method (its first argument
        # is self or cls) or a nested function by other means, so that a
        # frame maps to the same symbols on every version.
        method = code.co_argcount > 0 and code.co_varnames[0] in ("self", "cls")
        qualname = f"?.{code.co_name}" if method or code.co_flags & CO_NESTED else code.co_name
    return frame_symbols(code.co_filename, code.co_name, qualname)


def lock_call(lock: object, read: bool) -> str:
    """The kernel function a sleeping acquisition of ``lock`` calls (4.6,
    lockdep on): what a lock's ``at:`` address returns into."""
    if getattr(lock, "kind", "") == "rw_semaphore":
        return "down_read" if read else "down_write"
    return "mutex_lock_nested"


def user_site(lock: object, read: bool) -> tuple[str, ...]:
    """The kernel code a user body's acquisition of ``lock`` stands for,
    innermost first, down to where the kernel was entered."""
    if getattr(lock, "name", "") == "&mm->mmap_sem":
        return SITE_FAULT if read else SITE_MMAP
    return SITE_WRITE


def _module(code: CodeType) -> str:
    return os.path.splitext(os.path.basename(code.co_filename))[0]


def taken_by_user(at: object) -> bool:
    """Whether a held lock's acquire site (lockdep's ``acquire_ip``: the code
    object of the function that took it) is user code: anything but a
    kernel frame of the model, or a lock wrapper whose caller is unknown."""
    if not isinstance(at, CodeType):
        return False
    kind, _ = code_symbols(at)
    return kind is not FrameKind.KERNEL or _module(at) in LOCK_API_MODULES


def acquire_symbol(at: object, lock: object, read: bool) -> str:
    """The kernel function lockdep's ``acquire_ip`` falls in for a lock taken
    at ``at``: that function's own symbol, the function 4.6 inlines it into,
    or, for user code, ``user_site``'s first. A name (not a code object) is
    taken as the symbol."""
    if not isinstance(at, CodeType):
        return str(at)
    if taken_by_user(at):
        return user_site(lock, read)[0]
    _, syms = code_symbols(at)
    if syms:
        return syms[0]
    return INLINED_INTO.get((_module(at), at.co_name), at.co_name)


def stable_hash(*parts: str) -> int:
    """A hash of the strings, the same in every run (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest(), "big")


def symbol_size(sym: str) -> int:
    """The symbol's synthetic size: 0x20 to 0x5f0 bytes, 16-aligned."""
    return 0x20 + (stable_hash(sym, "size") % 0x5e) * 0x10


def symbol_start(sym: str) -> int:
    """The symbol's synthetic start address in the kernel text, 16-aligned."""
    return KERNEL_TEXT + (stable_hash(sym, "start") % (TEXT_SPAN // 0x10)) * 0x10


def return_offset(sym: str, callee: str) -> int:
    """The offset in ``sym`` of the return address of its call to ``callee``:
    past a 5-byte call, inside the function."""
    return 5 + stable_hash(sym, callee) % (symbol_size(sym) - 5)


def ip_sym(sym: str, callee: str, address: bool = True) -> str:
    """4.6's ``print_ip_sym()``/``printk_stack_address()`` text for the return
    address in ``sym`` of a call to ``callee``: ``[<%p>] %pS``; with
    ``address=False`` the ``%pS``/``%pB`` text alone, ``symbol+0xoff/0xsize``,
    as 5.x's x86 call trace and lockdep's ``at:`` print it (5.10.13's
    dumpstack.c and lockdep.c, read)."""
    off = return_offset(sym, callee)
    text = f"{sym}+{off:#x}/{symbol_size(sym):#x}"
    return f"[<{symbol_start(sym) + off:016x}>] {text}" if address else text


#: Where the synthetic lock instances live: a lock defined statically
#: (DEFINE_MUTEX, such as oom_lock) in the kernel image's data, after its
#: text; a lock embedded in an allocated object (lockdep names those
#: "&struct->field", such as &mm->mmap_lock) in the direct map, which starts
#: at 0xffff888000000000 on x86_64 from 4.20 on (5-level paging layout; not
#: re-verified). Both the lab's: lockdep prints ``%px`` of the instance.
KERNEL_DATA = 0xffffffff82000000
DATA_SPAN = 0x1000000
DIRECT_MAP_5X = 0xffff888000000000


def lock_instance_address(name: str, lock_id: int) -> int:
    """The synthetic address of a lock instance (its ``lockdep_map``), the same
    in every run: static for a plain name, a slab address for "&...". 8-aligned."""
    if name.startswith("&"):
        return DIRECT_MAP_5X + (stable_hash("lock", name, str(lock_id)) % (1 << 32)) * 8
    return KERNEL_DATA + (stable_hash("lock", name) % (DATA_SPAN // 8)) * 8
