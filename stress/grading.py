"""Soak grades: what each design promises, per outcome and lockup shape.

Labels are the outcome, plus the shape for lockups: ``lockup:mutex``.
"""

from __future__ import annotations

from kthreads import Policy

from .outcomes import Grade, Outcome, Shape


def label(outcome: Outcome, shape: Shape | None) -> str:
    return f"{outcome.value}:{shape.value}" if shape is not None else outcome.value


EXPECTED, ACCEPTABLE, INTERESTING = Grade.EXPECTED, Grade.ACCEPTABLE, Grade.INTERESTING

#: Per policy, the grade of each label; anything not listed is FORBIDDEN.
SOAK_GRADES: dict[Policy, dict[str, Grade]] = {
    Policy.NONE: {
        "no_oom": EXPECTED,
        "victim_exited": EXPECTED,
        "oom_panic": ACCEPTABLE,
        # Without a reaper, a victim that cannot run locks the machine up:
        # the flaw the lab measures.
        "lockup:mutex": ACCEPTABLE,
        "lockup:mmap_sem": ACCEPTABLE,
        "lockup:other": ACCEPTABLE,
        # GFP_NOFS allocators that never call the OOM killer: not the reaper's business.
        "lockup:no_victim": INTERESTING,
    },
    Policy.PATCH1: {
        "no_oom": EXPECTED,
        "victim_exited": EXPECTED,
        "recovered_by_reaper": EXPECTED,
        "oom_panic": ACCEPTABLE,
        # "the semaphore might be held or blocked for write": the admitted limit.
        "reap_failed_lockup:mmap_sem": INTERESTING,
        "lockup:mmap_sem": INTERESTING,
        # Documented patch-1 limits: a single slot, mms shared with the unkillable,
        # and TIF_MEMDIE kept after a reap (cleared from 36324a99 on), so that a
        # victim whose reaped memory others took first still blocks the killer.
        "lockup:mutex_unreaped": INTERESTING,
        "lockup:mutex_reaped": INTERESTING,
        "lockup:no_victim": INTERESTING,
        "reap_failed_lockup:mutex": INTERESTING,
        "reap_failed_lockup:other": INTERESTING,
        "lockup:other": INTERESTING,
        # A mutex-shaped lockup whose victim the reaper was handed and did not
        # reap is exactly what patch 1 exists to prevent: "lockup:mutex" is FORBIDDEN.
    },
}


# 4.5 promises what aac45363^ does: no reaper, so any lockup is the flaw
# measured (an exiting task in exit_mm adds lockup:mmap_sem shapes).
SOAK_GRADES[Policy.V4_5] = dict(SOAK_GRADES[Policy.NONE])


def soak_grades(policy: Policy) -> dict[str, Grade]:
    """The grades of ``policy``: its own, or the nearest earlier design's."""
    p: Policy | None = policy
    while p is not None and p not in SOAK_GRADES:
        p = p.previous
    return SOAK_GRADES.get(p, {}) if p is not None else {}


def soak_grade(policy: Policy, lbl: str, breaches: bool) -> Grade:
    if breaches:
        return Grade.FORBIDDEN
    return soak_grades(policy).get(lbl, Grade.FORBIDDEN)


def rule_of_three(n: int) -> float:
    """95% upper bound of the rate of an event never seen in n trials."""
    if n <= 0:
        raise ValueError("the rule of three needs at least one trial")
    return 3.0 / n
