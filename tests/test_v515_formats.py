"""dmesg under v5.15 and v5.18 is 5.x's: every line of every scenario parses
as one of 5.x's printf formats (5.10.13's text, docs/KERNEL-FORMATS.md), and
renders back to itself through that format, widths included; focused tests
for the OOM header and summary, the kill line, the no-victim panic,
khungtaskd's blocked seconds, sched_show_task's 5.9 line, the call trace and
lockdep's 5.x lock line; and v4.14 keeps its 4.x lines."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from kthreads import Completion, Mutex, Policy, TaskState, VmaSpec, schedule_timeout
from kthreads.kallsyms import symbol_size, symbol_start
from kthreads.lockdep import debug_show_all_locks, debug_show_held_locks, print_lock
from kthreads.stacktrace import kernel_call_trace, model_call_trace, sched_show_task
from stress import SCENARIOS
from util import (CONTROLLED, dmesg_texts, exited, killed_in_exit_mm, park_uninterruptible, run_controlled,
                  sleepers_of_every_kind, spinning)

FIVE = [Policy.V5_15, Policy.V5_18]

# -- 5.x's formats, as printf has them (5.10.13 unless noted) ----------------------------
#: %pGg, %*pbl, %px and %pS/%pB are written as what they print: %s, or %016lx.
#: %s matches no blank (the model's names have none); %S is free text.
FORMATS: dict[str, str] = {
    # mm/oom_kill.c
    "header": "%s invoked oom-killer: gfp_mask=%#x(%s), order=%d, oom_score_adj=%hd",
    "tasks_state": "Tasks state (memory values in pages):",
    "tasks_header": "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
    "task_row": "[%7d] %5d %5d %8lu %8lu %8ld %8lu         %5hd %s",
    "summary": "oom-kill:constraint=%s,nodemask=%s,cpuset=%s,mems_allowed=%s,global_oom,task_memcg=%s,"
               "task=%s,pid=%d,uid=%d",
    "killed": "%S: Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB, file-rss:%lukB, "
              "shmem-rss:%lukB, UID:%u pgtables:%lukB oom_score_adj:%hd",
    "exiting": "%S: OOM victim %d (%s) is already exiting. Skip killing the task",
    "no_killable": "Out of memory and no killable processes...",
    "pinned": "oom killer %d (%s) has mm pinned by %d (%s)",
    "reaped": "oom_reaper: reaped process %d (%s), now anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB",
    "unable": "oom_reaper: unable to reap pid:%d (%s)",
    # kernel/panic.c; lib/ratelimit.c
    "panic": "Kernel panic - not syncing: %S",
    "suppressed": "%s: %d callbacks suppressed",
    # fs/proc/base.c (4.8 on)
    "adj_shared": "updating oom_score_adj for %d (%s) from %d to %d because it shares mm with %d (%s). "
                  "Report if this is unexpected.",
    # kernel/hung_task.c
    "hung": "INFO: task %s:%d blocked for more than %ld seconds.",
    "taint": "      %S %s #%d",
    "echo": '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
    # kernel/sched/core.c (5.9): with and without "  running task    "
    "sched": "task:%-15.15s state:%c stack:%5lu pid:%5d ppid:%6d flags:0x%08lx",
    "sched_running": "task:%-15.15s state:%c  running task     stack:%5lu pid:%5d ppid:%6d flags:0x%08lx",
    # arch/x86/kernel/dumpstack.c: "%s %s%pB" (reliable), "%s <%s>" (5.16+)
    "call_trace": "Call Trace:",
    "trace_entry": " %s+%#x/%#x",
    "stack_close": " </%s>",
    "stack_open": " <%s>",
    # kernel/locking/lockdep.c
    "showing": "Showing all locks held in the system:",
    "rule": "=============================================",
    "blank": "",
    "held": "%d lock%s held by %s/%d:",
    "none_held": "no locks held by %s/%d.",
    "lock": " #%d: %016lx (%s){%s}-{%hd:%hd}, at: %s+%#x/%#x",
}

SPEC = re.compile(r"%(?P<flags>[-#0]*)(?P<width>\d*)(?:\.(?P<prec>\d+))?(?P<len>l|h)?(?P<conv>[sSducx])")


@dataclass(frozen=True)
class Format:
    name: str
    fmt: str
    regex: re.Pattern[str]
    convs: tuple[str, ...]
    pyfmt: str

    def parse(self, line: str) -> tuple | None:
        """The values, if ``line`` matches and renders back to itself exactly."""
        m = self.regex.fullmatch(line)
        if m is None:
            return None
        values = tuple(int(v, 16) if c == "x" else int(v) if c in "du" else v
                       for v, c in zip(m.groups(), self.convs))
        return values if self.pyfmt % values == line else None


def compile_format(name: str, fmt: str) -> Format:
    """A printf format as a regex (each conversion what printf can print for
    it) and as a Python %-format (length modifiers dropped) to re-render."""
    out, py, convs, i = "", "", [], 0
    for m in SPEC.finditer(fmt):
        out += re.escape(fmt[i:m.start()])
        py += fmt[i:m.start()].replace("%", "%%")
        conv = m["conv"]
        if conv == "S":
            out += r"(.+?)"
            conv = "s"
        elif conv == "s":
            out += r"(\S*?)" if m["prec"] is None else rf"(.{{{m['prec']}}})"
        elif conv == "x":
            out += r" *(?:0x)?([0-9a-f]+)" if "#" in m["flags"] else r" *([0-9a-f]+)"
        elif conv == "c":
            out += r"(.)"
            conv = "s"
        else:
            out += r" *(-?\d+)"
        py += f"%{m['flags']}{m['width']}{'.' + m['prec'] if m['prec'] else ''}{conv}"
        convs.append(conv)
        i = m.end()
    out += re.escape(fmt[i:])
    py += fmt[i:].replace("%", "%%")
    return Format(name, fmt, re.compile(out), tuple(convs), py)


COMPILED = [compile_format(n, f) for n, f in FORMATS.items()]


def classify(line: str) -> tuple[str, tuple]:
    """The name of the 5.x format ``line`` is printed in, and its values."""
    for f in COMPILED:
        values = f.parse(line)
        if values is not None:
            return f.name, values
    raise AssertionError(f"not a 5.x line: {line!r}")


def check_symbol(sym: str, off: int, size: int) -> None:
    """A %pS/%pB text agrees with the synthetic kallsyms."""
    assert size == symbol_size(sym) and 0 < off < size, (sym, off, size)


# -- every line of every scenario -------------------------------------------------------
CASES = [(name, policy) for name in SCENARIOS for policy in FIVE]


@pytest.mark.parametrize("name, policy", CASES, ids=[f"{n}-{p.value}" for n, p in CASES])
def test_every_dmesg_line_is_in_a_5x_format(name, policy):
    res = run_controlled(name, policy)
    text = dmesg_texts(res.kernel)
    kinds = [classify(line) for line in text]
    names = [k for k, _ in kinds]
    assert "sacrifice child" not in "\n".join(text) and "nodemask=(null),  order" not in "\n".join(text)
    assert "[ pid ]" not in names and "Kill process" not in "\n".join(text)
    for i, (kind, values) in enumerate(kinds):
        if kind == "header":
            # dump_header: the line, then dump_tasks (show_mem is the lab's line).
            assert names[i + 1: i + 3] == ["tasks_state", "tasks_header"]
        elif kind == "summary":
            constraint, nodemask, cpuset, mems, memcg, comm, pid, uid = values
            assert (constraint, nodemask, cpuset, mems, memcg, uid) == ("CONSTRAINT_NONE", "(null)", "/", "0",
                                                                      "/", 0)
            # After the task rows, and the kill line (if any) names the same process.
            assert names[i - 1] in ("task_row", "tasks_header")
            if i + 1 < len(names) and names[i + 1] == "killed":
                assert kinds[i + 1][1][1] == pid or kinds[i + 1][1][2] == comm
        elif kind == "killed":
            assert values[0] == "Out of memory" and values[7] == 0  # UID
        elif kind == "hung":
            assert values[2] >= 1
            assert names[i + 1: i + 5] == ["taint", "echo", names[i + 3], "call_trace"]
            assert names[i + 3] in ("sched", "sched_running")
            assert text[i + 1] == f"      Not tainted {policy.value[1:]}.0 #1"
            assert kinds[i + 1][1] == ("Not tainted", f"{policy.value[1:]}.0", 1)
        elif kind in ("sched", "sched_running"):
            assert text[i + 1] == "Call Trace:"
        elif kind == "call_trace":
            # 5.18 frames the task stack in <TASK> ... </TASK> (5.16); 5.15 not.
            j = i + 1
            framed = j < len(names) and names[j] == "stack_open"
            assert framed == (policy is Policy.V5_18 and names[j] != "blank" and kinds[j][0] != "showing"
                              and names[j] in ("stack_open", "trace_entry"))
            if framed:
                assert kinds[j][1] == ("TASK",)
                j += 1
            while j < len(names) and names[j] == "trace_entry":
                check_symbol(*kinds[j][1])
                assert "[<" not in text[j]
                j += 1
            if framed:
                assert names[j] == "stack_close" and kinds[j][1] == ("TASK",)
        elif kind == "lock":
            _, addr, lock_name, usage, outer, inner, sym, off, size = values
            assert len(usage) == 4 and set(usage) <= set("+-?.") and (outer, inner) == (3, 3)
            assert addr >> 40 in (0xffffff, 0xffff88)
            assert lock_name != "&mm->mmap_sem"
            check_symbol(sym, off, size)
        elif kind == "panic":
            assert values == ("System is deadlocked on memory",)
            assert names[i - 1] == "no_killable"


# -- focused: the OOM lines ---------------------------------------------------------------
@pytest.mark.parametrize("policy", FIVE)
def test_the_header_tasks_summary_and_kill_line_are_5xs_in_5xs_order(policy):
    res = run_controlled("lockup-mutex", policy)
    text = dmesg_texts(res.kernel)
    victim = res.roles["victim"]
    i = next(i for i, line in enumerate(text) if " invoked oom-killer: " in line)
    # 5.1+ numbering: GFP_KERNEL is 0xcc0 (gfp.GfpLayout.V5_15/V5_18).
    assert text[i] == "writer invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
    assert text[i + 1:i + 3] == ["Tasks state (memory values in pages):",
                                 "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"]
    rows = text[i + 3:i + 5]
    assert all(classify(r)[0] == "task_row" for r in rows)
    row = next(r for r in rows if r.endswith(" victim"))
    # pgtables_bytes: the model's page-table pages times 4096.
    assert classify(row)[1][5] % 4096 == 0 and classify(row)[1][5] > 0
    assert text[i + 5] == ("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
                           f"global_oom,task_memcg=/,task=victim,pid={victim},uid=0")
    kill = text[i + 6]
    name, values = classify(kill)
    assert name == "killed" and values[:3] == ("Out of memory", victim, "victim")
    assert values[8] == classify(row)[1][5] >> 10  # pgtables:%lukB is mm_pgtables_bytes >> 10
    assert values[9] == 0  # oom_score_adj
    assert not any("Kill process" in line or "sacrifice child" in line for line in text)
    levels = {line.text: line.level.name for line in res.kernel.dmesg()}
    assert levels[text[i]] == "KERN_WARNING" and levels[text[i + 5]] == "KERN_INFO"
    assert levels[kill] == "KERN_ERR"


@pytest.mark.parametrize("policy", FIVE)
def test_no_killable_task_warns_and_panics_system_is_deadlocked_on_memory(policy):
    res = run_controlled("no-killable-task", policy)
    assert res.outcome.value == "oom_panic"
    lines = res.kernel.dmesg()
    assert [(line.text, line.level.name) for line in lines[-2:]] == [
        ("Out of memory and no killable processes...", "KERN_WARNING"),
        ("Kernel panic - not syncing: System is deadlocked on memory", "KERN_ERR")]
    assert res.kernel.panic_reason == "System is deadlocked on memory"
    # dump_header(oc, NULL): no victim, no summary line.
    assert not any(line.text.startswith("oom-kill:") for line in lines)


def test_v414_still_prints_the_4x_oom_lines():
    res = run_controlled("lockup-mutex", Policy.V4_14)
    text = dmesg_texts(res.kernel)
    victim = res.roles["victim"]
    assert any(re.fullmatch(r"writer invoked oom-killer: gfp_mask=0x[0-9a-f]+\(GFP_KERNEL\), nodemask=\(null\),  "
                            r"order=0, oom_score_adj=0", line) for line in text)
    assert "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name" in text
    assert "Tasks state (memory values in pages):" not in text
    assert any(re.fullmatch(rf"Out of memory: Kill process {victim} \(victim\) score \d+ or sacrifice child", line)
               for line in text)
    assert any(re.fullmatch(rf"Killed process {victim} \(victim\) total-vm:\d+kB, anon-rss:\d+kB, file-rss:\d+kB, "
                            r"shmem-rss:\d+kB", line) for line in text)
    assert not any(line.startswith("oom-kill:") for line in text)
    res = run_controlled("no-killable-task", Policy.V4_14)
    assert dmesg_texts(res.kernel)[-1] == "Kernel panic - not syncing: Out of memory and no killable processes..."


# -- focused: khungtaskd ------------------------------------------------------------------
T = 2.0  # hung_task_timeout, model seconds
EPS = 1e-6


def hung_lines(k, comm, pid):
    pat = re.compile(rf"INFO: task {comm}:{pid} blocked for more than (\d+) seconds\.")
    return [int(m[1]) for line in dmesg_texts(k) if (m := pat.fullmatch(line))]


def after_check(k, n):
    state = k.khungtaskd
    assert k.wait_until(lambda: state.checks >= n, 10 * (n + 1) * T / k.clock.speed, idle_ok=True)


@pytest.mark.parametrize("policy, seconds", [(Policy.V5_15, [2, 4, 6]), (Policy.V5_18, [2, 4, 6]),
                                             (Policy.V4_14, [2, 2, 2])])
def test_khungtaskd_prints_the_continuous_blocked_time_from_5x(boot, policy, seconds):
    """Checks at T, 2T, 3T, 4T; a task asleep from 0 has its count stored at
    T and is reported at 2T, 3T, 4T: 5.x prints (jiffies - last_switch_time)
    / HZ, T, 2T, 3T; 4.x the timeout every time."""
    k = boot(sched=CONTROLLED, hung_task_timeout=T, policy=policy)
    never = Completion()
    d = k.fork("stuck", park_uninterruptible(never))
    after_check(k, 4)
    assert hung_lines(k, "stuck", d.pid) == seconds
    # The recorded event carries the printed number.
    events = [e for e in k.tracer.events() if e.name == "hung_task" and e.pid == d.pid]
    assert [e.fields["seconds"] for e in events] == seconds
    never.complete_all()
    assert k.wait_until(exited(d), 5)


def test_khungtaskd_checks_every_check_interval_when_it_is_shorter(boot):
    """5.x: min(check_interval, timeout); the task is still reported only
    once blocked for the timeout since its count was stored, in whole jiffies."""
    k = boot(sched=CONTROLLED, hung_task_timeout=T, policy=Policy.V5_15)
    k.khungtaskd.check_interval = T / 2  # the sysctl, before khungtaskd's first wait
    never = Completion()
    d = k.fork("stuck", park_uninterruptible(never))
    # Checks every T/2 (from the first or, if khungtaskd already waited on
    # the timeout, the second): stored at the first, reported from 2 s on.
    after_check(k, 6)
    assert hung_lines(k, "stuck", d.pid) == [2, 3, 4, 5]
    never.complete_all()
    assert k.wait_until(exited(d), 5)


# -- focused: sched_show_task, the call trace, lockdep -------------------------------------
@pytest.mark.parametrize("policy", FIVE)
def test_sched_show_task_prints_59s_labelled_line_and_an_addressless_trace(boot, policy):
    k = boot(policy=policy)
    never = Completion()
    kt = k.kthread_run("kt", park_uninterruptible(never))
    assert k.wait_until(lambda: kt.state_letter == "D", 2)
    lines = sched_show_task(kt)
    assert lines[0] == f"task:kt              state:D stack:    0 pid:{kt.pid:5d} ppid:     2 flags:0x00000000"
    assert lines[1] == "Call Trace:"
    body = lines[2:]
    if policy is Policy.V5_18:
        assert body[0] == " <TASK>" and body[-1] == " </TASK>"
        body = body[1:-1]
    entries = [classify(line) for line in body]
    assert [n for n, _ in entries] == ["trace_entry"] * len(body)
    # 5.x names (kallsyms.RENAMES): __schedule above schedule.
    assert [v[0] for _, v in entries] == ["__schedule", "schedule", "schedule_timeout", "wait_for_completion",
                                         "kthread", "ret_from_fork"]
    never.complete_all()
    assert k.wait_until(exited(kt), 2)


def test_a_running_task_prints_running_task_in_the_labelled_line(boot):
    k = boot(policy=Policy.V5_15)
    with spinning(k) as s:
        line = sched_show_task(s)[0]
        assert classify(line)[0] == "sched_running"
        assert line.startswith("task:spinner         state:R  running task     stack:    0 pid:")


def test_v414s_sched_show_task_and_trace_keep_their_4x_form(boot):
    k = boot(policy=Policy.V4_14)
    never = Completion()
    kt = k.kthread_run("kt", park_uninterruptible(never))
    assert k.wait_until(lambda: kt.state_letter == "D", 2)
    lines = sched_show_task(kt, model_call_trace(kt))
    assert re.fullmatch(rf"kt              D    0 {kt.pid:5d}      2 0x00000000", lines[0])
    assert lines[1] == "Call Trace:" and all(line.startswith(" [<ffffffff8") for line in lines[2:])
    never.complete_all()
    assert k.wait_until(exited(kt), 2)


@pytest.mark.parametrize("policy, usage, five", [(Policy.V4_9, "+.+.+.", False), (Policy.V4_14, "+.+.", False),
                                                 (Policy.V5_15, "+.+.", True), (Policy.V5_18, "+.+.", True)])
def test_lockdeps_lock_line_per_tree(boot, policy, usage, five):
    k = boot(policy=policy)
    m = Mutex("lock0", k)
    release = Completion()

    def holder(t):
        with m:
            release.wait_for_completion()

    h = k.fork("holder", holder)
    assert k.wait_until(lambda: m.owner is h and h.state_letter == "D", 2)
    lines = debug_show_held_locks(h)
    assert lines[0] == f"1 lock held by holder/{h.pid}:"
    if five:
        name, values = classify(lines[1])
        assert name == "lock"
        i, addr, lock_name, got_usage, outer, inner, sym, off, size = values
        assert (i, lock_name, got_usage, outer, inner) == (0, "lock0", usage, 3, 3)
        assert addr >> 32 == 0xffffffff  # a static lock, in the kernel image's data
        assert lines[1] == f" #0: {print_lock(h.held_locks[0], k.policy_ops)}"
    else:
        assert re.fullmatch(rf" #0:  \(lock0\)\{{{re.escape(usage)}\}}, at: \[<ffffffff8[0-9a-f]{{7}}>\] \w+\+0x[0-9a-f]+"
                            r"/0x[0-9a-f]+", lines[1]), lines[1]
    release.complete()
    assert k.wait_until(exited(h), 2)


def test_5x_lists_a_running_tasks_locks_by_its_count_alone(boot):
    k = boot(policy=Policy.V5_15)
    m = Mutex("lock0", k)
    stop: list[bool] = []

    def spinner(t):
        with m:
            while not stop:
                schedule_timeout(TaskState.TASK_RUNNING, 1)

    s = k.fork("spinner", spinner)
    try:
        assert k.wait_until(lambda: m.owner is s and s.nvcsw > 0, 2)
        lines = debug_show_all_locks(k)
        i = lines.index(f"1 lock held by spinner/{s.pid}:")
        assert not lines[i + 1].startswith(" #0:")
        # The lab's lockup report still lists them all.
        full = debug_show_all_locks(k, running=True)
        assert full[full.index(f"1 lock held by spinner/{s.pid}:") + 1].startswith(" #0: ")
    finally:
        stop.append(True)
    assert k.wait_until(exited(s), 2)


def test_the_mmap_lock_is_named_mmap_lock_from_5x(boot):
    from kthreads import VmaSpec
    k = boot(policy=Policy.V5_15)
    release = Completion()

    def mmapper(t):
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    v = k.fork("victim", park_uninterruptible(Completion("never")), vmas=[VmaSpec(pages=2)])
    mm_task = k.clone_thread(v, "mmapper", mmapper)
    assert k.wait_until(lambda: v.mm.mmap_sem.owner is mm_task and mm_task.state_letter == "D", 2)
    line = debug_show_held_locks(mm_task)[1]
    name, values = classify(line)
    assert name == "lock" and values[2] == "&mm->mmap_lock" and values[3] == "++++"
    assert values[1] >> 40 == 0xffff88  # embedded in the mm: the direct map
    release.complete()
    # The victim stays parked; the kernel's shutdown kills it.


# -- each tree's function names (kallsyms.RENAMES) --------------------------------------
SYSCALL_5X = ["do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
#: Policy -> what the model's frames print as in that tree, innermost first.
TREE_NAMES: dict[Policy, dict[str, list[str]]] = {
    Policy.V4_14: {
        "completion": ["__schedule", "schedule", "schedule_timeout", "wait_for_completion"],
        "entry": ["entry_SYSCALL_64_fastpath"],
        "mmap": ["vm_mmap_pgoff", "SyS_mmap_pgoff", "SyS_mmap", "entry_SYSCALL_64_fastpath"],
        "mutex": ["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock", "mutex_lock_nested",
                  "generic_file_write_iter", "__vfs_write", "vfs_write", "SyS_write", "entry_SYSCALL_64_fastpath"],
        "fault": ["__schedule", "schedule", "rwsem_down_read_failed", "call_rwsem_down_read_failed", "down_read",
                  "__do_page_fault", "do_page_fault", "page_fault"],
        "exit": ["__schedule", "schedule", "rwsem_down_read_failed", "call_rwsem_down_read_failed", "down_read",
                 "exit_mm", "do_exit", "do_group_exit", "get_signal", "do_signal", "exit_to_usermode_loop",
                 "syscall_return_slowpath", "entry_SYSCALL_64_fastpath"],
        "fault_at": ["__do_page_fault"],
    },
    **{p: {
        "completion": ["__schedule", "schedule", "schedule_timeout", "wait_for_completion"],
        "entry": SYSCALL_5X,
        "mmap": ["vm_mmap_pgoff", "ksys_mmap_pgoff", "__x64_sys_mmap", *SYSCALL_5X],
        "mutex": ["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock", "mutex_lock_nested",
                  "generic_file_write_iter", "new_sync_write", "vfs_write", "ksys_write", "__x64_sys_write",
                  *SYSCALL_5X],
        "fault": ["__schedule", "schedule", "rwsem_down_read_slowpath", "down_read", "do_user_addr_fault",
                  "exc_page_fault", "asm_exc_page_fault"],
        "exit": ["__schedule", "schedule", "rwsem_down_read_slowpath", "down_read", "exit_mm", "do_exit",
                 "do_group_exit", "get_signal", "arch_do_signal_or_restart", "exit_to_user_mode_prepare",
                 "syscall_exit_to_user_mode", *SYSCALL_5X],
        "fault_at": ["do_user_addr_fault"],
    } for p in FIVE},
}


def trace_of(t) -> list[str]:
    return kernel_call_trace(t, model_call_trace(t))


@pytest.mark.parametrize("policy", [Policy.V4_14, *FIVE])
def test_call_traces_name_each_trees_functions(boot, policy):
    names = TREE_NAMES[policy]
    k = boot(policy=policy)
    z = sleepers_of_every_kind(k)
    h, p, w, f, kt = z.tasks()
    assert trace_of(p) == names["completion"] + names["entry"]
    assert trace_of(kt) == names["completion"] + ["kthread", "ret_from_fork"]
    assert trace_of(h) == names["completion"] + names["mmap"]
    assert trace_of(w) == names["mutex"]
    assert trace_of(f) == names["fault"]
    # lockdep's at: is the same tree's: where the fault took mmap_sem.
    held = debug_show_held_locks(f)
    assert re.search(rf"at: (\[<[0-9a-f]+>\] )?{names['fault_at'][0]}\+0x", held[-1]), held
    # Printed, each entry is still a synthetic symbol+off/size of that name.
    lines = sched_show_task(w)
    entries = [line for line in lines[2:] if "+0x" in line]
    assert [re.search(r"(\S+)\+0x", line)[1] for line in entries] == names["mutex"]
    z.finish(k)


@pytest.mark.parametrize("policy", [Policy.V4_14, *FIVE])
def test_a_killed_task_in_exit_mm_shows_each_trees_signal_path(boot, policy):
    k = boot(policy=policy)
    v, mm_thread, release = killed_in_exit_mm(k)
    assert trace_of(v) == TREE_NAMES[policy]["exit"]
    release.complete()
    assert k.wait_until(exited(v, mm_thread), 2)
