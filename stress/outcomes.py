"""Episode outcomes, lockup shapes and grades (jcstress-style): the verdict vocabulary."""

from __future__ import annotations

import enum


class Outcome(str, enum.Enum):
    NO_OOM = "no_oom"  # nothing ran out of memory
    VICTIM_EXITED = "victim_exited"  # the OOM victim exited on its own
    RECOVERED_BY_REAPER = "recovered_by_reaper"  # the reaper (or process_mrelease) freed the memory that unblocked it
    LOCKUP = "lockup"  # no progress, a hung task, no failed reap to blame
    REAP_FAILED_LOCKUP = "reap_failed_lockup"  # locked up after the reaper gave up
    OOM_PANIC = "oom_panic"  # nothing killable: panic
    UNDETERMINED = "undetermined"  # no verdict before the real-time deadline (a harness problem)

    def __str__(self) -> str:
        return self.value

    @property
    def is_lockup(self) -> bool:
        return self in (Outcome.LOCKUP, Outcome.REAP_FAILED_LOCKUP)


class Grade(str, enum.Enum):
    EXPECTED = "EXPECTED"
    ACCEPTABLE = "ACCEPTABLE"
    INTERESTING = "ACCEPTABLE_INTERESTING"
    FORBIDDEN = "FORBIDDEN"

    def __str__(self) -> str:
        return self.value

    @property
    def ok(self) -> bool:
        return self is not Grade.FORBIDDEN


class Shape(str, enum.Enum):
    """What a locked-up episode is stuck on, read from the wait-for graph."""

    MUTEX = "mutex"  # an OOM victim sleeps on a mutex chain ending in an allocator
    MUTEX_UNREAPED = "mutex_unreaped"  # the same, but its mm was never queued (slot busy, unkillable sharer, self-victim)
    MUTEX_REAPED = "mutex_reaped"  # reaped, but others took the memory first; TIF_MEMDIE stays (36324a99 clears it)
    MMAP_SEM = "mmap_sem"  # the victim (or an exiting task) waits for mmap_sem
    NO_VICTIM = "no_victim"  # no OOM victim at all: e.g. GFP_NOFS allocators looping for ever
    FUTEX = "futex"  # a robust-futex waiter whose owner died with its list zapped: never woken
    OTHER = "other"

    def __str__(self) -> str:
        return self.value
