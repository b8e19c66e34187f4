"""The ftrace view of an episode: its events as ``/sys/kernel/tracing/trace``
would show them on the kernel tree the policy names.

The flight recorder keeps the lab's own event names; this module picks the
ones that were tracepoints in the tree being modelled and prints each with
that tree's TP_printk format, behind ftrace's context columns:
``%16s-%-5d [%03d] %4s %5lu.%06lu: name: args``, where the comm and pid are
the task *running* when the event fired (ftrace's ``current``), not the task
the event is about.

What is traced, for Linux 4.6 (both ``none``, aac45363^, and ``patch1``):

- ``sched_switch`` and ``sched_wakeup``: from the controlled CPU's scheduler
  records. A controlled episode is a uniprocessor, so every switch is there,
  in order; a free run (real threads on real cores) has none.
- ``task_newtask``, ``signal_generate``, ``sched_process_exit``,
  ``sched_process_hang`` (khungtaskd's), and ``console`` (printk's lines,
  as the kernel passes them to the console, with their timestamp prefix).
- No oom or reaper tracepoint: 4.6's ``include/trace/events/oom.h`` had only
  ``oom_score_adj_update`` (fired by writes to /proc, which the model has
  none of). ``mark_victim``, ``wake_reaper``, ``start_task_reaping``,
  ``finish_task_reaping`` and ``skip_task_reaping`` came in 4.13 and print
  ``pid=%d``; a policy whose tree had them says so
  (``PolicyOps.oom_reaper_tracepoints``).
- No kmem page events: the model does not record every page it allocates.

Simplifications, not the kernel's values: the latency flags column is always
``....`` (the model has no interrupts and does not track the preempt count
at an event); every task's prio is 120 (nice 0, as every task here is); pid
0 (``<idle>``, ``swapper/0``) also stands for the lab's harness, which
creates the tasks and runs when no task does. These are said in the file's
own header, on lines marked ``# lab:``, which trace readers skip as comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

from kthreads import SCHED_SWITCH, SCHED_WAKEUP, Ev, Kernel, Policy
from kthreads.jiffies import dmesg_stamp
from kthreads.kernel import POLICY_OPS

#: ``task->prio`` of a nice-0 task, which every task of the model is.
DEFAULT_PRIO = 120
#: The preempted bit sched_switch adds to prev_state (TASK_STATE_MAX in 4.6).
TASK_STATE_MAX = 0x800
#: sched_switch's prev_state letters in 4.6, lowest bit first.
STATE_LETTERS = ((0x1, "S"), (0x2, "D"), (0x4, "T"), (0x8, "t"), (0x10, "Z"), (0x20, "X"),
                 (0x40, "x"), (0x80, "K"), (0x100, "W"), (0x200, "P"), (0x400, "N"))
#: clone_flags as task_newtask prints them, for the three ways the model
#: creates a task: fork() is SIGCHLD; a thread is pthread_create's flags
#: (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|
#: CHILD_CLEARTID); a kthread is kthreadd's kernel_thread (CLONE_FS|FILES|
#: SIGCHLD, plus CLONE_VM|UNTRACED).
CLONE_FORK = 0x11
CLONE_THREAD_FLAGS = 0x3d0f00
CLONE_KTHREAD = 0x800711
#: signal_generate's code for the OOM killer's SIGKILL: 4.6's
#: TP_STORE_SIGINFO stores SI_USER for SEND_SIG_FORCED (and SEND_SIG_NOINFO);
#: res=0 is TRACE_SIGNAL_DELIVERED.
SI_USER = 0
REAPER_TRACEPOINTS = frozenset({Ev.MARK_VICTIM, Ev.WAKE_REAPER, Ev.START_TASK_REAPING,
                                Ev.FINISH_TASK_REAPING, Ev.SKIP_TASK_REAPING})


class FtraceError(ValueError):
    """The source cannot give a trace (the message says why, in one line)."""


@dataclass(frozen=True)
class TraceInput:
    """What a trace is made from, whether from a live kernel or a log."""

    policy: str
    controlled: bool
    #: (t, name, pid, comm, fields, cur, pos), in ring order
    events: list[tuple[float, str, int, str, dict[str, Any], int, int]]
    sched: list[tuple[int, float, str, int, int, int]] = field(default_factory=list)
    comms: dict[int, str] = field(default_factory=dict)
    lost: int = 0
    sched_expected: int | None = None  # scheduler records the log's header announces

    @classmethod
    def from_kernel(cls, k: Kernel) -> "TraceInput":
        events = [(e.t, e.name, e.pid, e.comm, e.fields, e.cur, e.pos) for e in k.tracer.events()]
        return cls(k.policy.value, k.controlled, events, k.tracer.sched_log(), k.comms(),
                   k.tracer.lost())

    @classmethod
    def from_log(cls, log: Any) -> "TraceInput":
        """From a ``FlightLog``; ``FtraceError`` if the log predates positions."""
        header = log.header
        if any(e.pos < 0 for e in log.events):
            raise FtraceError("the log has no event positions (written before format 2): "
                              "run the episode again with --log to get a trace")
        policy = header.get("policy")
        if not isinstance(policy, str) or policy not in {p.value for p in Policy}:
            raise FtraceError(f"the log names no known policy ({str(policy)[:20]!r})")
        sched = header.get("config", {}).get("sched", {}) if isinstance(header.get("config"), dict) else {}
        controlled = isinstance(sched, dict) and sched.get("strategy") not in (None, "free")
        comms: dict[int, str] = {}
        raw = header.get("comms")
        if isinstance(raw, dict):
            comms = {int(pid): str(comm) for pid, comm in raw.items() if str(pid).isdigit()}
        events = [(e.t, e.name, e.pid, e.comm, e.fields, e.cur, e.pos) for e in log.events]
        expected = header.get("sched_records")
        expected = expected if isinstance(expected, int) and not isinstance(expected, bool) else None
        return cls(policy, controlled, events, list(log.sched), comms, log.lost, expected)


def task_column(comm: str, pid: int) -> str:
    """ftrace's context: the comm right-aligned in 16 columns, a dash, the pid."""
    return f"{comm[:15]:>16}-{pid:<5}"


def stamp(t: float) -> str:
    """``%5lu.%06lu``: seconds and microseconds."""
    us = int(round(t * 1_000_000))
    return f"{us // 1_000_000:5d}.{us % 1_000_000:06d}"


def prev_state(state: int) -> str:
    """sched_switch's prev_state: the letters of the set bits joined by "|",
    "R" when none, and "+" for a preempted task."""
    bits = state & (TASK_STATE_MAX - 1)
    text = "|".join(letter for bit, letter in STATE_LETTERS if bits & bit) if bits else "R"
    return text + ("+" if state & TASK_STATE_MAX else "")


class _Writer:
    def __init__(self, src: TraceInput) -> None:
        self.src = src
        self.comms = dict(src.comms)
        reaper = getattr(POLICY_OPS[Policy(src.policy)], "oom_reaper_tracepoints", False)
        self.reaper = bool(reaper)
        self.lines: list[str] = []

    def comm(self, pid: int) -> str:
        return "<idle>" if pid == 0 else self.comms.get(pid, "<...>")

    def next_comm(self, pid: int) -> str:
        return "swapper/0" if pid == 0 else self.comms.get(pid, "<...>")

    def emit(self, t: float, cur: int, name: str, args: str) -> None:
        self.lines.append(f"{task_column(self.comm(cur), cur)} [000] .... {stamp(t)}: {name}: {args}")

    def event(self, t: float, name: str, pid: int, comm: str, fields: dict[str, Any], cur: int) -> None:
        if pid and comm:
            self.comms.setdefault(pid, comm)
        if name == Ev.TASK_NEWTASK:
            # copy_process fires it before the child is renamed, so the comm
            # is the parent's: kthreadd for a kthread, the process for a
            # thread. A process's parent is the lab's harness, which the
            # kernel never saw: its own name stands in.
            tgid = fields.get("tgid", pid)
            if fields.get("kthread"):
                flags, comm = CLONE_KTHREAD, "kthreadd"
            elif tgid != pid:
                flags, comm = CLONE_THREAD_FLAGS, self.comms.get(tgid, comm)
            else:
                flags = CLONE_FORK
            self.emit(t, cur, "task_newtask", f"pid={pid} comm={comm[:15]} clone_flags={flags:x} "
                      f"oom_score_adj={int(fields.get('oom_score_adj', 0))}")
        elif name == Ev.SIGNAL_GENERATE:
            self.emit(t, cur, "signal_generate", f"sig={int(fields.get('sig', 9))} errno=0 code={SI_USER} "
                      f"comm={comm[:15]} pid={pid} grp=1 res=0")
        elif name == Ev.SCHED_PROCESS_EXIT:
            self.emit(t, cur, "sched_process_exit", f"comm={comm[:15]} pid={pid} prio={DEFAULT_PRIO}")
        elif name == Ev.HUNG_TASK:
            self.emit(t, cur, "sched_process_hang", f"comm={comm[:15]} pid={pid}")
        elif name == Ev.PRINTK:
            self.emit(t, cur, "console", f"{dmesg_stamp(t)} {fields.get('text', '')}")
        elif self.reaper and name in REAPER_TRACEPOINTS:
            self.emit(t, cur, str(name), f"pid={pid}")

    def sched(self, t: float, kind: str, a: int, b: int, c: int) -> None:
        if kind == SCHED_SWITCH:
            self.emit(t, a, "sched_switch",
                      f"prev_comm={self.next_comm(a)[:15]} prev_pid={a} prev_prio={DEFAULT_PRIO} "
                      f"prev_state={prev_state(b)} ==> next_comm={self.next_comm(c)[:15]} "
                      f"next_pid={c} next_prio={DEFAULT_PRIO}")
        elif kind == SCHED_WAKEUP:
            self.emit(t, a, "sched_wakeup",
                      f"comm={self.next_comm(b)[:15]} pid={b} prio={DEFAULT_PRIO} target_cpu=000")


def ftrace_lines(src: TraceInput) -> list[str]:
    """The trace's lines, up to the end of the recording (the harness's
    shutdown), without the header."""
    w = _Writer(src)
    items: list[tuple[int, int, tuple[Any, ...]]] = []
    first_pos = None
    for i, (t, name, pid, comm, fields, cur, pos) in enumerate(src.events):
        if name == Ev.SHUTDOWN:
            break
        items.append((pos, 1, (t, name, pid, comm, fields, cur)))
        if first_pos is None or pos < first_pos:
            first_pos = pos
    end = max((p for p, _, _ in items), default=-1)
    for r in src.sched:
        # Only the stretch the ring still holds, so that the two agree.
        if first_pos is not None and first_pos <= r[0] <= end:
            items.append((r[0], 0, r[1:]))
    items.sort(key=lambda item: (item[0], item[1]))
    for _, kind, payload in items:
        if kind == 1:
            w.event(*payload)
        else:
            w.sched(*payload)
    return w.lines


HEADER = """\
# tracer: nop
#
# entries-in-buffer/entries-written: {entries}/{written}   #P:1
#
#                              _-----=> irqs-off
#                             / _----=> need-resched
#                            | / _---=> hardirq/softirq
#                            || / _--=> preempt-depth
#                            ||| /     delay
#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION
#              | |       |   ||||       |         |
"""


def lab_notes(src: TraceInput) -> list[str]:
    notes = [f"# lab: written by the OOM-reaper lab for policy {src.policy}; pid 0 (<idle>) also "
             f"stands for the lab's harness; latency flags not modelled"]
    if not src.controlled:
        notes.append("# lab: a free run (real threads): no sched_switch or sched_wakeup was recorded")
    elif src.sched_expected is not None and src.sched_expected > len(src.sched):
        notes.append(f"# lab: {src.sched_expected - len(src.sched)} of {src.sched_expected} scheduler "
                     f"records are missing from the log (it is partial): switches and wake-ups are incomplete")
    if src.lost:
        notes.append(f"# lab: the flight recorder's ring overwrote {src.lost} earlier events")
    return notes


def write_ftrace(src: TraceInput, out: TextIO) -> int:
    """Write the whole file; returns the number of trace lines."""
    lines = ftrace_lines(src)
    out.write(HEADER.format(entries=len(lines), written=len(lines)))
    for note in lab_notes(src):
        out.write(note + "\n")
    for line in lines:
        out.write(line + "\n")
    return len(lines)
