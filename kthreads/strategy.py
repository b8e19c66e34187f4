"""Who runs next on a controlled CPU: the seeded scheduling strategies.

Lab machinery (a test scheduler), not a model of the kernel's scheduler.

* ``random``: at every scheduling point, a uniform choice among the running
  task and the ready ones.
* ``pct``: Probabilistic Concurrency Testing (Burckhardt, Kothari, Musuvathi,
  Nagarakatte, ASPLOS 2010). Each task gets a random priority when it is
  created; the highest-priority ready task runs; at d-1 change points drawn
  uniformly from the first k steps the running task's priority drops below
  every initial one. A bug of depth d is found with probability at least
  1/(n k^(d-1)) per run, n tasks and k steps.
* ``replay``: the switches a controlled run recorded, at the same steps.
* ``follow``: a free run's recorded event order, each task held back at its
  events until its recorded turn (``schedule.EventOrder``).

The controller (the harness, pid 0) is an observer: when it is ready it runs
at the next point under every strategy but ``replay``, which follows its
recording, and ``follow``, which holds it at its events like any task.
"""

from __future__ import annotations

import random
from array import array
from typing import TYPE_CHECKING, Any

from .cpu import RunState, Runner
from .schedule import Sched, SchedConfig, Schedule

if TYPE_CHECKING:
    from .cpu import Cpu

#: How far ahead ``follow`` looks for a task's own event when it cannot wait
#: for its turn (it holds a spinlock) or its turn cannot come.
FOLLOW_LOOKAHEAD = 512


class Strategy:
    """The base: run the current task until it blocks; the controller first."""

    name = "base"

    def on_new(self, cpu: "Cpu", r: Runner) -> None:
        pass

    def on_ready(self, cpu: "Cpu", r: Runner) -> None:
        pass

    def on_run(self, cpu: "Cpu", r: Runner) -> None:
        pass

    def at_point(self, cpu: "Cpu", me: Runner) -> Runner | None:
        c = cpu.controller
        if c.state is RunState.READY and not c.gated:
            return c
        return None

    def at_event(self, cpu: "Cpu", me: Runner) -> None:
        if me.preempt_count:  # no switch under a spinlock: nothing to decide
            return
        nxt = self.at_point(cpu, me)
        if nxt is not None and nxt is not me:
            cpu.yield_to(me, nxt)

    def pick(self, cpu: "Cpu", ready: list[Runner]) -> Runner:
        for r in ready:
            if r is cpu.controller and not r.gated:
                return r
        return min(ready, key=lambda r: r.order)

    def summary(self, cpu: "Cpu") -> dict[str, Any]:
        return {}


class RandomStrategy(Strategy):
    name = Sched.RANDOM.value

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def at_point(self, cpu: "Cpu", me: Runner) -> Runner | None:
        c = super().at_point(cpu, me)
        if c is not None:
            return c
        ready = cpu.ready()
        if not ready:
            return None
        i = self.rng.randrange(len(ready) + 1)
        return None if i == len(ready) else ready[i]

    def pick(self, cpu: "Cpu", ready: list[Runner]) -> Runner:
        c = cpu.controller
        if c in ready:
            return c
        return ready[self.rng.randrange(len(ready))]


class PctStrategy(Strategy):
    name = Sched.PCT.value

    def __init__(self, seed: int, depth: int, steps: int) -> None:
        if depth < 1:
            raise ValueError(f"PCT depth must be at least 1, got {depth}")
        self.rng = random.Random(seed)
        self.depth = depth
        self.k_estimate = max(steps, depth)
        # The d-1 change points, in task steps (the controller's do not count).
        self.change_points = sorted(self.rng.sample(range(1, self.k_estimate + 1), depth - 1))
        self._next = 0
        self.task_steps = 0
        self.changes_done = 0
        self.preempt = False  # a ready task outranks the running one

    def on_new(self, cpu: "Cpu", r: Runner) -> None:
        # Initial priorities are d + U[0,1): distinct with probability 1,
        # a uniform random order, and all above the d-1 lowered ones.
        r.prio = self.depth + self.rng.random()

    def on_ready(self, cpu: "Cpu", r: Runner) -> None:
        if r.prio > cpu.current.prio:
            self.preempt = True

    def at_point(self, cpu: "Cpu", me: Runner) -> Runner | None:
        c = super().at_point(cpu, me)
        if c is not None:
            return c
        if me is cpu.controller:
            return None
        self.task_steps += 1
        cps = self.change_points
        if self._next < len(cps) and self.task_steps >= cps[self._next]:
            self._next += 1
            self.changes_done += 1
            me.prio = self.depth - self.changes_done  # below every initial priority
            self.preempt = True
        if not self.preempt:
            return None
        self.preempt = False
        best = me
        for r in cpu.runners.values():
            if r.state is RunState.READY and r.prio > best.prio:
                best = r
        return best

    def pick(self, cpu: "Cpu", ready: list[Runner]) -> Runner:
        self.preempt = False
        return max(ready, key=lambda r: r.prio)

    def bound(self, n: int, k: int) -> float | None:
        """PCT's guarantee for a bug of depth d, 1/(n K^(d-1)): the change
        points are drawn from the first K = ``k_estimate`` steps. None when
        the run took more than K steps (k): a bug that needs a change after
        step K is not covered at all. With d = 1 no change point is drawn,
        and the bound is 1/n whatever the steps."""
        if self.depth > 1 and k > self.k_estimate:
            return None
        return 1.0 / (max(n, 1) * self.k_estimate ** (self.depth - 1))

    def summary(self, cpu: "Cpu") -> dict[str, Any]:
        n, k = cpu.nr_tasks, self.task_steps
        return {"pct_depth": self.depth, "pct_n": n, "pct_k": k, "pct_steps": self.k_estimate,
                "pct_bound": self.bound(n, k), "pct_changes": self.changes_done}


class ReplayStrategy(Strategy):
    """The recorded switches, at the recorded steps. A step where the
    recording and the run disagree is the divergence (first one kept)."""

    name = Sched.REPLAY.value

    def __init__(self, switches: list[list[int]]) -> None:
        self.switches = switches
        self.i = 0
        self.diverged_at: int | None = None  # the step

    def _due(self, cpu: "Cpu") -> Runner | None:
        sw = self.switches
        if self.i < len(sw) and sw[self.i][0] == cpu.steps:
            r = cpu.runners.get(sw[self.i][1])
            if r is not None and r.state is RunState.READY:
                return r
        return None

    def on_run(self, cpu: "Cpu", r: Runner) -> None:
        sw = self.switches
        if self.i < len(sw) and sw[self.i] == [cpu.steps, r.pid]:
            self.i += 1
        elif self.diverged_at is None:
            self.diverged_at = cpu.steps

    def at_point(self, cpu: "Cpu", me: Runner) -> Runner | None:
        sw = self.switches
        if self.i < len(sw) and cpu.steps > sw[self.i][0] and self.diverged_at is None:
            self.diverged_at = sw[self.i][0]  # a recorded switch whose step went by
        return self._due(cpu)

    def pick(self, cpu: "Cpu", ready: list[Runner]) -> Runner:
        r = self._due(cpu)
        if r is not None:
            return r
        # No switch recorded here: the runner that blocked ran on (its own
        # timer fired with others').
        return cpu.current if cpu.current in ready else min(ready, key=lambda x: x.order)

    def summary(self, cpu: "Cpu") -> dict[str, Any]:
        return {"replay_diverged_at_step": self.diverged_at,
                "replay_followed": self.i, "replay_recorded": len(self.switches)}


class FollowStrategy(Strategy):
    """A free run's event order: before each event, the task whose event is
    next in the recording runs; the others wait at their events (but under a
    spinlock, where nobody may wait: that event is matched with the task's
    own next one in the recording, if near enough).

    The harness's own events (a fork, the verdict) come when its predicate
    holds, which the recording cannot force: while the harness waits, the
    next *task* event in the recording is the expected one, and the
    harness's entries wait for it."""

    name = Sched.FOLLOW.value

    def __init__(self, runs: list[list[int]], speed: float) -> None:
        actors = array("i")
        # Where each run of one task's events starts, and the model time it
        # started at in the free run: virtual time is moved up to it there,
        # so the gaps of the free run (a task that got no CPU for a while)
        # are seen by khungtaskd and the lockup window as they were.
        self.starts: dict[int, float] = {}
        for pid, n, t_us in runs:
            self.starts[len(actors)] = t_us / 1e6 / speed  # virtual (real-time) seconds
            actors.extend([pid] * n)
        self.actors = actors
        self.c = 0  # the first recorded event not yet made
        self.taken: set[int] = set()  # events made ahead of the cursor
        self.diverged_at: int | None = None  # the recorded event index
        self.out_of_turn = 0  # events the run made that the recording had elsewhere or not at all

    def _expected(self, cpu: "Cpu") -> tuple[int, int] | None:
        """(index, pid) of the recorded event due next, or None when the
        recording holds nothing more that a runner can make now (or the run
        has diverged from it: from there on it runs as the base strategy)."""
        if self.diverged_at is not None:
            return None
        a, taken = self.actors, self.taken
        while self.c < len(a) and self.c in taken:
            taken.discard(self.c)
            self.c += 1
        harness_waits = cpu.controller.state is RunState.BLOCKED
        j = self.c
        while j < len(a) and (j in taken or (harness_waits and a[j] == 0)):
            j += 1
        return (j, a[j]) if j < len(a) else None

    def _consume(self, j: int) -> None:
        if j == self.c:
            self.c += 1
        else:
            self.taken.add(j)

    def _take_ahead(self, me: Runner, start: int) -> None:
        """``me`` makes an event out of turn: match it with its own next one
        in the recording, near enough; else the run has diverged."""
        a = self.actors
        for j in range(start + 1, min(len(a), start + FOLLOW_LOOKAHEAD)):
            if a[j] == me.pid and j not in self.taken:
                self.taken.add(j)
                return
        self.out_of_turn += 1
        if self.diverged_at is None:
            self.diverged_at = start

    def at_point(self, cpu: "Cpu", me: Runner) -> Runner | None:
        return super().at_point(cpu, me) if self._expected(cpu) is None else None

    def at_event(self, cpu: "Cpu", me: Runner) -> None:
        while not cpu.dissolved:
            due = self._expected(cpu)
            if due is None:
                # Never inside a decision: the pull of the plug waits for it,
                # and its end (khungtaskd's report) is what the verdict reads.
                if self.diverged_at is None and me is not cpu.controller and not me.decisions \
                        and not me.preempt_count:
                    # The free run never ran this task again before it ended
                    # (its verdict came first): it waits here, as it did there.
                    cpu.hold(me)
                    return
                return super().at_event(cpu, me)  # diverged: run on as the base strategy
            j, exp = due
            if exp == me.pid:
                self._consume(j)
                t = self.starts.get(j)
                if t is not None:
                    cpu.advance_to(t)
                return
            if me.preempt_count:
                self._take_ahead(me, j)
                return
            x = cpu.runners.get(exp)
            if x is not None and x.state is RunState.BLOCKED and x.deadline is not None:
                cpu.advance_to(x.deadline)  # its timer is what woke it in the free run
            if x is not None and x.state is RunState.READY:
                self._hold(cpu, me, x)
                continue
            # Its turn cannot come yet: somebody must wake it. Let a runner
            # that is not waiting for its turn go on; if none, the run diverged.
            y = next((r for r in cpu.runners.values()
                      if r.state is RunState.READY and not r.gated), None)
            if y is None:
                self._take_ahead(me, j)
                return
            self._hold(cpu, me, y)

    def _hold(self, cpu: "Cpu", me: Runner, nxt: Runner) -> None:
        me.gated = True
        try:
            cpu.yield_to(me, nxt)
        finally:
            me.gated = False

    def pick(self, cpu: "Cpu", ready: list[Runner]) -> Runner:
        due = self._expected(cpu)
        if due is None:
            return super().pick(cpu, ready)
        x = cpu.runners.get(due[1])
        if x is not None and x.state is RunState.BLOCKED and x.deadline is not None:
            cpu.advance_locked(x.deadline)
        if x is not None and x.state is RunState.READY:
            return x
        free = [r for r in cpu.runners.values() if r.state is RunState.READY and not r.gated]
        if free:
            return min(free, key=lambda r: r.order)
        return min(cpu.ready(), key=lambda r: self._distance(due[0], r.pid))

    def _distance(self, start: int, pid: int) -> int:
        a = self.actors
        for j in range(start, min(len(a), start + FOLLOW_LOOKAHEAD)):
            if a[j] == pid:
                return j - start
        return FOLLOW_LOOKAHEAD

    def summary(self, cpu: "Cpu") -> dict[str, Any]:
        return {"follow_diverged_at_event": self.diverged_at, "follow_out_of_turn": self.out_of_turn,
                "follow_followed": min(self.c, len(self.actors)), "follow_recorded": len(self.actors)}


def make_strategy(cfg: SchedConfig, speed: float = 1.0) -> Strategy:
    """The strategy ``cfg`` names; ``speed`` maps a followed free run's model
    times onto virtual time."""
    s = cfg.strategy
    if s is Sched.RANDOM:
        return RandomStrategy(cfg.seed)
    if s is Sched.PCT:
        return PctStrategy(cfg.seed, cfg.pct_depth, cfg.pct_steps)
    if s in (Sched.REPLAY, Sched.FOLLOW):
        sched: Schedule | None = cfg.schedule
        if sched is None:
            raise ValueError(f"--sched {s.value} needs a recorded schedule")
        if s is Sched.REPLAY:
            return ReplayStrategy([list(x) for x in sched.switches])
        return FollowStrategy([list(x) for x in sched.actors], speed)
    raise ValueError(f"{s.value} is not a controlled strategy")
