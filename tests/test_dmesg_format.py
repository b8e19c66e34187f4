"""dmesg's stack and lock lines are Linux 4.6's (issue #10): khungtaskd's
report as 4.6 x86_64 prints it, a call trace of kernel symbols (synthetic
addresses), lockdep's lock lines; the model's own Python stack goes to the
lab's stream only.

Each line is checked against a regex built from 4.6's printf format."""

import re

import pytest

from kthreads import Completion, VmaSpec, schedule_timeout
from kthreads.kallsyms import (EXIT_KILLED, KERNEL_FRAMES, KERNEL_TEXT, KTHREAD_TAIL, SITE_FAULT,
                               SITE_MMAP, SITE_SYSCALL, SITE_WRITE, TEXT_SPAN, ip_sym,
                               return_offset, symbol_size, symbol_start)
from kthreads.mm import vm_mmap_write_lock
from kthreads.stacktrace import (DIRECT_MAP, THREAD_SIZE, kernel_call_trace, model_call_trace,
                                 model_call_traces, sched_show_task, thread_saved_pc)
from stress import EpisodeConfig, SCENARIOS, get_scenario, run_episode
from util import CONTROLLED, exited, killed_in_exit_mm, sleepers_of_every_kind, spinning

# -- 4.6's formats ----------------------------------------------------------------
#: check_hung_task()
INFO = re.compile(r"^INFO: task (?P<comm>.{1,15}):(?P<pid>\d+) blocked for more than \d+ seconds\.$")
TAINT = re.compile(r"^      Not tainted \S+ #\d+$")
ECHO = '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.'
#: sched_show_task(): "%-15.15s %c", " %016lx " or "  running task    ", "%5lu %5d %6d 0x%08lx"
PS = re.compile(r"^(?P<comm>.{15}) (?P<state>[RSDTtXZxKWPN])"
                r"(?: (?P<pc>[0-9a-f]{16}) |  running task    )"
                r"(?P<free>[ \d]{4}\d) (?P<pid>[ \d]{4}\d) (?P<ppid>[ \d]{5}\d) 0x(?P<flags>[0-9a-f]{8})$")
#: show_trace_log_lvl() and printk_stack_address(): " [<%p>] %s%pB"
TRACE = re.compile(r"^ \[<(?P<ip>ffffffff8[0-9a-f]{7})>\] (?P<sym>\w+)\+0x(?P<off>[0-9a-f]+)"
                   r"/0x(?P<size>[0-9a-f]+)$")
#: lockdep_print_held_locks(), print_lock(), print_ip_sym()
HELD = re.compile(r"^(?P<n>\d+) locks? held by (?P<comm>.{1,15})/(?P<pid>\d+):$")
NONE_HELD = re.compile(r"^no locks held by (?P<comm>.{1,15})/(?P<pid>\d+)\.$")
LOCK = re.compile(r"^ #(?P<i>\d+):  \((?P<name>[^)]+)\)\{(?P<usage>[-+?.]{6})\}, at: "
                  r"\[<(?P<ip>ffffffff8[0-9a-f]{7})>\] (?P<sym>\w+)\+0x(?P<off>[0-9a-f]+)"
                  r"/0x(?P<size>[0-9a-f]+)$")
#: What the lab's own frames looked like in dmesg before: never again.
PYTHON_FRAME = re.compile(r"<locals>|\.__enter__|^ [\w.<>]+\+\d+$")
#: The lab's line with the model's stack (no line numbers).
MODEL_STACK = re.compile(r"^# lab +\d+\.\d{6}  model stack of (?P<comm>.{1,15})/(?P<pid>\d+): "
                         r"(?P<frames>[\w.<> ]+)$")

LOCK_CALLS = {"mutex_lock_nested", "mutex_lock_killable_nested", "down_read", "down_write"}
ENTRIES = {"entry_SYSCALL_64_fastpath", "page_fault", "ret_from_fork"}


def check_symbol(m: re.Match) -> None:
    """A %pS text is consistent with the synthetic kallsyms: the address is
    the symbol's start plus the offset, inside the symbol."""
    sym, ip, off, size = m["sym"], int(m["ip"], 16), int(m["off"], 16), int(m["size"], 16)
    assert size == symbol_size(sym) and 0 < off < size
    assert ip == symbol_start(sym) + off


def check_report(text: list[str], i: int) -> int:
    """The hung-task report starting at ``text[i]`` is 4.6's, line by line;
    returns the index after it."""
    info = INFO.match(text[i])
    assert info, text[i]
    assert TAINT.match(text[i + 1]) and text[i + 2] == ECHO
    ps = PS.match(text[i + 3])
    assert ps, text[i + 3]
    assert ps["comm"].rstrip() == info["comm"] and int(ps["pid"]) == int(info["pid"])
    assert ps["state"] == "D" and int(ps["free"]) == 0
    pc = int(ps["pc"], 16)
    assert DIRECT_MAP <= pc < DIRECT_MAP + (1 << 32) and pc % 8 == 0
    assert text[i + 4] == "Call Trace:"
    j, trace = i + 5, []
    while (m := TRACE.match(text[j])) is not None:
        check_symbol(m)
        trace.append(m)
        j += 1
    assert trace and trace[0]["sym"] == "schedule" and trace[-1]["sym"] in ENTRIES
    if (none := NONE_HELD.match(text[j])) is not None:
        assert none["pid"] == info["pid"]
        return j + 1
    held = HELD.match(text[j])
    assert held and held["pid"] == info["pid"], text[j]
    locks = [LOCK.match(line) for line in text[j + 1:j + 1 + int(held["n"])]]
    assert all(locks), text[j + 1:j + 1 + int(held["n"])]
    for k, m in enumerate(locks):
        assert int(m["i"]) == k
        check_symbol(m)
    if any(m["sym"] in LOCK_CALLS for m in trace[:4]):
        # Asleep acquiring the last lock: lockdep's acquire_ip is the return
        # address into the frame that called the lock function.
        assert locks[-1]["ip"] in {m["ip"] for m in trace}
    return j + 1 + len(locks)


# -- every hung-task report of every scenario -------------------------------------
@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("policy", ["none", "patch1"])
def test_hung_task_reports_are_4_6s_lines_and_the_model_stack_is_the_labs(name, policy):
    res = run_episode(get_scenario(name), EpisodeConfig(sched=CONTROLLED, policy=policy))
    assert res.grade.ok and res.error is None
    text = [line.text for line in res.kernel.dmesg()]
    assert not any(PYTHON_FRAME.search(line) for line in text)
    reports = [i for i, line in enumerate(text) if line.startswith("INFO: task ")]
    # every lockup has a hung task in D, but an orphaned futex waiter sleeps in S
    assert reports or not res.outcome.is_lockup or res.shape == "futex"
    for i in reports:
        check_report(text, i)
    # After each printed report, the lab's line with the model's stack of that
    # task, by function name (line numbers would move the event digest).
    stacks = [MODEL_STACK.match(line) for line in res.console if "model stack of" in line]
    assert all(stacks)
    hung = {INFO.match(text[i])["pid"] for i in reports}
    assert hung <= {m["pid"] for m in stacks}
    assert all(not re.search(r"\+\d", m["frames"]) for m in stacks)


# -- the call trace a task's model stack stands for -------------------------------
def trace_of(t):
    return kernel_call_trace(t, model_call_trace(t))


def asleep_on(task, obj):
    return lambda: task.state_letter == "D" and task.wchan is obj


def test_user_and_kernel_threads_end_their_stacks_where_4_6_does(boot):
    k = boot()
    z = sleepers_of_every_kind(k)
    h, p, w, f, kt = z.tasks()
    completion = ["schedule", "schedule_timeout", "wait_for_completion"]
    assert trace_of(p) == completion + list(SITE_SYSCALL)
    assert trace_of(kt) == completion + list(KTHREAD_TAIL)
    # Holding a mutex and mmap_sem for write, asleep on a completion: inside
    # the system call of the innermost lock its body took.
    assert trace_of(h) == completion + list(SITE_MMAP)
    assert trace_of(w) == ["schedule", "schedule_preempt_disabled", "mutex_lock_nested",
                           *SITE_WRITE]
    assert trace_of(f) == ["schedule", "rwsem_down_read_failed", "call_rwsem_down_read_failed",
                           "down_read", *SITE_FAULT]
    # One read, the same traces.
    stacks = model_call_traces([p, kt])
    assert kernel_call_trace(p, stacks[p.pid]) == trace_of(p)
    ps = PS.match(sched_show_task(kt, stacks[kt.pid])[0])
    assert int(ps["ppid"]) == 2 and ps["state"] == "D"  # kthreadd's child
    assert int(PS.match(sched_show_task(p)[0])["ppid"]) == 1
    z.finish(k)
    # A task that is gone has no stack: the header and an empty trace.
    assert sched_show_task(p)[1:] == ["Call Trace:"]


def test_a_killed_task_stuck_in_exit_mm_shows_the_signal_exit_path(boot):
    k = boot()
    v, m, release = killed_in_exit_mm(k)
    assert trace_of(v) == ["schedule", "rwsem_down_read_failed", "call_rwsem_down_read_failed",
                           "down_read", "exit_mm", "do_exit", *EXIT_KILLED]
    lines = sched_show_task(v)
    ps = PS.match(lines[0])
    assert ps and int(ps["flags"], 16) & 1 << 2  # TIF_SIGPENDING
    assert all(TRACE.match(line) for line in lines[2:])
    release.complete()
    assert k.wait_until(exited(v, m), 2)


def test_a_running_task_prints_running_task_instead_of_a_saved_pc(boot):
    k = boot()
    with spinning(k) as s:
        line = sched_show_task(s)[0]
        assert PS.match(line) and line.startswith("spinner         R  running task        0 ")


def test_the_saved_pc_is_a_stable_address_in_the_tasks_own_stack_page(boot):
    k = boot()
    t = k.fork("x", lambda t: None)
    trace = ["schedule", "schedule_timeout", "wait_for_completion", "entry_SYSCALL_64_fastpath"]
    pc = thread_saved_pc(t, trace)
    assert pc == thread_saved_pc(t, list(trace)) and pc % 8 == 0
    page = pc & ~(THREAD_SIZE - 1)
    assert DIRECT_MAP <= page and pc < page + THREAD_SIZE
    assert thread_saved_pc(t, trace[:2]) > pc  # a longer trace sits deeper
    assert k.wait_until(exited(t), 2)


def test_synthetic_symbols_are_stable_and_inside_the_kernel_text():
    syms = {s for names in KERNEL_FRAMES.values() for s in names}
    syms |= set(SITE_FAULT + SITE_MMAP + SITE_WRITE + EXIT_KILLED + KTHREAD_TAIL)
    for sym in syms:
        start, size = symbol_start(sym), symbol_size(sym)
        assert KERNEL_TEXT <= start < KERNEL_TEXT + TEXT_SPAN and start % 16 == 0
        assert 0x20 <= size < 0x600
        off = return_offset(sym, "schedule")
        assert 5 <= off < size
        m = TRACE.match(" " + ip_sym(sym, "schedule"))
        assert m and m["sym"] == sym
        check_symbol(m)
    # The same call site prints the same address in every run (and process).
    assert ip_sym("schedule", "") == "[<ffffffff816050ac>] schedule+0x2c/0x40"


def test_the_labs_mmap_write_helper_prints_as_vm_mmap_pgoff(boot):
    """``mm.vm_mmap_write_lock`` is the lab's helper: its frame stands for
    vm_mmap_pgoff .. SyS_mmap, and the lock it takes was taken "at:
    vm_mmap_pgoff" (it printed as a kernel function of its own before)."""
    k = boot()
    release = Completion()

    def reader(t):
        with t.mm.mmap_sem.read():
            release.wait_for_completion()

    def mmapper(t):
        with vm_mmap_write_lock(t.mm):
            pass

    r = k.fork("reader", reader, vmas=[VmaSpec(pages=2)])
    sem = r.mm.mmap_sem
    assert k.wait_until(lambda: r.state_letter == "D" and r.wchan is release, 2)
    w = k.clone_thread(r, "mmapper", mmapper)
    assert k.wait_until(asleep_on(w, sem), 2)
    assert trace_of(w) == ["schedule", "rwsem_down_write_failed", "call_rwsem_down_write_failed",
                           "down_write", *SITE_MMAP]
    release.complete()
    assert k.wait_until(exited(r, w), 2)
