"""do_exit's order (Linux 4.6): exit_mm first, the task's own memory after it."""

from kthreads import GFP_KERNEL, Completion, Ev, VmaSpec, alloc_pages
from util import CONTROLLED, exited


def test_a_task_stuck_in_exit_mm_still_holds_the_pages_it_allocated_for_itself(boot):
    k = boot(nr_pages=1024, sched=CONTROLLED, hung_task_timeout=0)
    leave, release = Completion("leave"), Completion("release")

    def main_thread(t):
        for _ in range(5):
            assert alloc_pages(GFP_KERNEL) is not None  # the task's own (kernel) pages
        leave.wait_for_completion_killable()

    def mmapper(t):
        with t.mm.mmap_sem.write():
            release.wait_for_completion()

    e = k.fork("exiter", main_thread, vmas=[VmaSpec(pages=10)])
    m = k.clone_thread(e, "mmapper", mmapper)
    sem = e.mm.mmap_sem
    assert k.wait_until(lambda: sem.owner is m and len(e.kernel_pages) == 5, 5)
    leave.complete()
    assert k.wait_until(lambda: e.exiting and e.wchan is sem and e.state_letter == "D", 5)
    # In exit_mm's down_read: the files, fs and such that 4.6 releases after
    # exit_mm, stood for by the task's own pages, are still held.
    assert k.zone.pages_owned_by(e) == 5 and len(e.kernel_pages) == 5
    release.complete()
    assert k.wait_until(exited(e, m), 5)
    assert k.zone.pages_owned_by(e) == 0 and e.kernel_pages == []
    assert k.zone.nr_free == k.zone.nr_pages
    names = [ev.name for ev in k.tracer.events() if ev.pid == e.pid]
    assert names.index(Ev.SCHED_PROCESS_EXIT_START) < names.index(Ev.SCHED_PROCESS_EXIT)


def test_a_task_that_exits_at_once_gives_its_own_pages_back(boot):
    k = boot(nr_pages=256, sched=CONTROLLED, hung_task_timeout=0)

    def body(t):
        for _ in range(3):
            alloc_pages(GFP_KERNEL)

    t = k.fork("quick", body, vmas=[VmaSpec(pages=4)])
    assert k.wait_until(exited(t), 5)
    assert k.zone.pages_owned_by(t) == 0 and k.zone.nr_free == k.zone.nr_pages
