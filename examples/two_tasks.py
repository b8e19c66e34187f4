"""Build a two-task kernel and print a snapshot: the model in twenty lines.

    python examples/two_tasks.py
"""

from kthreads import GFP_KERNEL, Completion, Kernel, Mutex, VmaSpec, alloc_pages, free_page

with Kernel(nr_pages=512, speed=50) as k:
    inode_lock = Mutex("inode_lock", k)
    done = Completion("done")

    def writer(task):
        with inode_lock:  # mutex_lock(): TASK_UNINTERRUPTIBLE if it has to wait
            page = alloc_pages(GFP_KERNEL)
            done.wait_for_completion()  # hold the lock until the harness says so
            free_page(page)

    def reader(task):
        with inode_lock:  # sleeps in D: the writer holds it
            pass

    w = k.fork("writer", writer, vmas=[VmaSpec(pages=100)])
    k.wait_until(lambda: inode_lock.owner is w, timeout=2)
    r = k.fork("reader", reader, vmas=[VmaSpec(pages=50)])
    k.wait_until(lambda: r.state_letter == "D", timeout=2)

    print(k.snapshot().format())
    done.complete()
    k.wait_until(lambda: r.state_letter == "X", timeout=2)
    print()
    print(k.snapshot().format())
