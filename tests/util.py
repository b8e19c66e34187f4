"""Task bodies and small helpers shared by the tests."""

from __future__ import annotations

from kthreads import Completion, Task, return_to_user


def park_killable(done: Completion):
    """A body that sleeps killably until ``done`` (SIGKILL unwinds it)."""
    def body(t: Task) -> None:
        done.wait_killable()
        return_to_user(t)
    return body


def park_uninterruptible(done: Completion):
    def body(t: Task) -> None:
        done.wait_for_completion()
        return_to_user(t)
    return body


def exited(*tasks: Task):
    return lambda: all(t.state_letter == "X" for t in tasks)
