"""Exceptions and errno values of the model.

Two kinds of exception unwind a task body and derive from BaseException, so
that a body's ``except Exception`` cannot swallow them and its ``with`` blocks
still release their locks:

* ``SigKill``: the task noticed a fatal signal (a return-to-user point or a
  killable sleep woken by SIGKILL).
* ``PlugPulled``: the harness is shutting the run down; every wait raises it,
  whatever its mode, so a locked-up run can always be unwound.

The other exceptions are model *bugs* (use-after-free, refcount underflow, a
page freed twice, a broken lock invariant). They are recorded as invariant
breaches by the ``Kernel`` that observes them.

The exceptions are the lab's. The errno values are Linux's (the generic
asm-generic/errno*.h numbers, as in 4.6).
"""

from __future__ import annotations

import enum


class Errno(enum.IntEnum):
    """The few errno values the model returns, negated as the kernel does."""

    ESRCH = 3
    EINTR = 4
    EAGAIN = 11
    ENOMEM = 12
    EINVAL = 22
    ENOSYS = 38
    ETIMEDOUT = 110


class SigKill(BaseException):
    """A fatal signal is unwinding the current task into do_exit()."""


class PlugPulled(BaseException):
    """The harness pulled the plug: unwind whatever the task was doing."""


class ModelBug(Exception):
    """A kernel bug the model detected (would be a BUG()/WARN in the kernel)."""


class UseAfterFree(ModelBug):
    """An mm_struct (or another freed object) was touched after being freed."""


class RefcountUnderflow(ModelBug):
    """A reference count went below zero."""


class BadPageState(ModelBug):
    """A page freed twice, or freed by somebody who does not own it."""


class LockBug(ModelBug):
    """Unlock of a lock not held, recursive locking, or broken exclusion."""


class OomPanic(BaseException):
    """'Out of memory and no killable processes...': the run's panic outcome."""


class Deadlock(RuntimeError):
    """Controlled mode: the harness waits for something no runnable task or
    pending timer can ever bring about. Carries the blocked tasks and what
    each waits on."""
