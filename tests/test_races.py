"""Regression tests for races found in review: each failed before its fix."""

import threading

from kthreads import (GFP, GFP_KERNEL, OOM_SCORE_ADJ_MIN, Completion, Kernel, OomControl,
                      VmaSpec, alloc_pages, do_mmap, mmdrop, mmgrab, oom_badness,
                      select_bad_process)
from kthreads.oom_kill import dump_tasks
from kthreads.oom_reaper import wake_oom_reaper
from util import park_killable, park_uninterruptible


def test_oom_scans_never_touch_an_mm_being_torn_down(boot):
    """find_lock_task_mm holds task_lock: exit_mm cannot clear ->mm under it."""
    k = boot(nr_pages=4096)
    stop = threading.Event()
    errors: list[BaseException] = []

    def scanner() -> None:
        while not stop.is_set():
            try:
                for p in k.processes():
                    oom_badness(p, 4096)
                dump_tasks(k)
                select_bad_process(k, OomControl(GFP_KERNEL))
            except BaseException as e:  # noqa: BLE001 - any failure is the finding
                errors.append(e)
                return

    th = threading.Thread(target=scanner)
    th.start()
    try:
        for i in range(150):
            t = k.fork(f"short{i}", lambda t: None, vmas=[VmaSpec(pages=20)])
            k.wait_until(lambda: t.state_letter == "X", 2)
    finally:
        stop.set()
        th.join(10)
    assert errors == [] and k.breaches == []


def test_no_reap_request_is_queued_once_the_plug_is_pulled():
    """The reaper unwinds when the plug is pulled; an OOM kill racing with
    that must not queue an mm (and pin it) behind its back."""
    k = Kernel(policy="patch1")
    done = Completion()
    p = k.fork("p", park_killable(done), vmas=[VmaSpec(pages=10)])
    mm = p.mm
    mmgrab(mm)  # the OOM killer's pin on the victim's mm
    reaper = k.reaper.task
    k.pull_plug()
    for t in (reaper, p):
        t.thread.join(5)
        assert not t.thread.is_alive()
    assert not wake_oom_reaper(k, p, mm)
    assert mm.mm_count.read() == 1 and k.reaper_status().busy_mm is None  # no second pin
    mmdrop(mm)
    report = k.shutdown()
    assert report.clean and mm.freed and k.check_quiescent() == []


def test_fork_racing_shutdown_never_leaks_or_starts_a_thread_twice():
    for _ in range(30):
        k = Kernel(nr_pages=2048, hung_task_timeout=0)

        def forker(t):
            for i in range(50):
                try:
                    k.fork(f"child{i}", lambda c: None, vmas=[VmaSpec(pages=4)])
                except RuntimeError:
                    return

        k.fork("forker", forker)
        report = k.shutdown()
        assert report.clean, report.format()
        assert k.check_quiescent() == []


def test_noretry_allocations_fail_without_calling_the_oom_killer(boot):
    k = boot(nr_pages=1024)
    never = Completion()
    k.fork("hog", park_killable(never), vmas=[VmaSpec(pages=1000)])
    got = []
    a = k.fork("noretry", lambda t: got.append(alloc_pages(GFP_KERNEL | GFP.NORETRY)))
    assert k.wait_until(lambda: a.state_letter == "X", 2)
    assert got == [None] and k.stats.oom_invocations == 0 and k.stats.oom_kills == 0
    never.complete()


def test_do_mmap_unwound_by_a_panic_gives_its_page_tables_back():
    k = Kernel(nr_pages=1024)
    never = Completion()
    k.fork("hog", park_uninterruptible(never), vmas=[VmaSpec(pages=1000)],
           oom_score_adj=OOM_SCORE_ADJ_MIN)

    def mapper(t):
        with t.mm.mmap_sem.write():
            do_mmap(t.mm, VmaSpec().kind, 512 * 8)  # needs 8 page-table pages

    m = k.fork("mapper", mapper, oom_score_adj=OOM_SCORE_ADJ_MIN)
    assert k.wait_until(lambda: k.panic_reason is not None, 3)
    assert k.shutdown().clean
    assert m.exit_reason == "panic"
    assert k.check_quiescent() == []
