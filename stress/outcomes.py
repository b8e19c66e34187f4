"""Episode outcomes and their grades (jcstress-style)."""

from __future__ import annotations

import enum


class Outcome(str, enum.Enum):
    NO_OOM = "no_oom"  # nothing ran out of memory
    VICTIM_EXITED = "victim_exited"  # the OOM victim exited on its own
    RECOVERED_BY_REAPER = "recovered_by_reaper"  # the reaper freed the memory that unblocked it
    LOCKUP = "lockup"  # no progress, a hung task, no failed reap to blame
    REAP_FAILED_LOCKUP = "reap_failed_lockup"  # locked up after "unable to reap"
    OOM_PANIC = "oom_panic"  # nothing killable: panic
    UNDETERMINED = "undetermined"  # no verdict before the real-time deadline (a harness problem)

    def __str__(self) -> str:
        return self.value


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
