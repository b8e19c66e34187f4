"""pytest plugin (entry point ``pytest11``): write your own lockup tests.

Fixtures:

* ``kernel``: a fresh ``kthreads.Kernel``, configured with
  ``@pytest.mark.kernel_config(policy="patch1", nr_pages=1024, ...)`` (any
  ``KernelConfig`` field). On teardown it is shut down and must be clean, by
  the same rule as every episode (``stress.episode.finish_kernel``): every
  thread joined (a thread that does not stop fails the test, with its
  stack), pages conserved and all returned, no invariant breach.
* ``sequencer``: ordered steps across real threads. ``sequencer.until(what,
  predicate)`` waits on model state; ``sequencer.wait(name)`` (in a task) and
  ``sequencer.release(name)`` (anywhere) are named gates. A step that times
  out breaks the whole sequence loudly: every later step raises at once.
  Each step waits at most the Sequencer's default (5 real seconds) unless
  the test says otherwise with ``@pytest.mark.sequencer_timeout(seconds)``
  (or passes ``timeout=`` to one step).

When a test using ``kernel`` fails, the plugin first records the model's
own verdict into the kernel's flight recorder, as an episode's harness does
(``stress.episode.conclude`` over the user tasks, with a lockup window of the
kernel's ``hung_task_timeout``, or 1 s with khungtaskd off: no progress for
that long and a hung task),
then writes the recorder out (JSONL, with the test's node id and that window
in the header), and adds an "oom-lab post-mortem" section to the report: the
diagnosis the post-mortem makes from the log alone, and the log's path, which
``python -m stress postmortem LOG --html FILE`` renders.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import pytest

from kthreads import Kernel

from .episode import conclude, finish_kernel
from .postmortem import analyze, dump_jsonl, load_jsonl
from .sequencer import Sequencer

_KERNEL = pytest.StashKey[Kernel]()
_LOGDIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel_config(**config): KernelConfig fields for the "
                                       "`kernel` fixture (policy, nr_pages, speed, hung_task_timeout, ...)")
    config.addinivalue_line("markers", "sequencer_timeout(seconds): real seconds each step of the "
                                       "`sequencer` fixture may take (default: the Sequencer's, 5 s)")


@pytest.fixture
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    marker = request.node.get_closest_marker("kernel_config")
    refused: str | None = None
    try:
        k = Kernel(**(marker.kwargs if marker else {}))
    except (TypeError, ValueError) as e:
        refused = str(e)
    if refused is not None:  # outside the except: the report shows one line, no chained error
        pytest.fail(f"kernel_config: {refused}", pytrace=False)
    request.node.stash[_KERNEL] = k
    request.node.stash[_LOGDIR] = tmp_path_factory.mktemp("oom-lab")
    yield k
    report, problems = finish_kernel(k)  # the episodes' own rule: a thread that does not stop is a breach
    if problems:
        stacks = "" if report.clean else "\n" + report.format()
        pytest.fail("kernel teardown: " + "; ".join(problems) + stacks, pytrace=False)


def _step_timeout(node: pytest.Item) -> float | None:
    marker = node.get_closest_marker("sequencer_timeout")
    if marker is None:
        return None
    value = marker.args[0] if len(marker.args) == 1 and not marker.kwargs else marker.kwargs.get("seconds")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        pytest.fail(f"sequencer_timeout: expected one positive number of seconds, got "
                    f"{marker.args or marker.kwargs}", pytrace=False)
    return float(value)


@pytest.fixture
def sequencer(request: pytest.FixtureRequest, kernel: Kernel) -> Sequencer:
    timeout = _step_timeout(request.node)
    return Sequencer(kernel) if timeout is None else Sequencer(kernel, timeout=timeout)


def record_model_verdict(k: Kernel) -> float:
    """Record the model's verdict on ``k`` as it stands; the lockup window used."""
    # khungtaskd's timeout; with khungtaskd off (0), one model second.
    window = float(k.config.hung_task_timeout) or 1.0
    conclude(k, [t for t in k.tasks() if not t.is_kthread], window)
    return window


def postmortem_section(k: Kernel, path: Path, nodeid: str) -> str:
    window = record_model_verdict(k)
    dump_jsonl(k, path, {"test": nodeid, "lockup_window": window})
    d = analyze(load_jsonl(path)).diagnosis
    return (f"flight recorder: {path}\n{d.headline()}: {d.sentence}\n"
            f"render it: python -m stress postmortem {path} --html timeline.html")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    k = item.stash.get(_KERNEL, None)
    if k is None or rep.when != "call" or not rep.failed:
        return
    path = item.stash[_LOGDIR] / (item.name.replace("/", "_") + ".jsonl")
    try:
        text = postmortem_section(k, path, item.nodeid)
    except Exception as e:  # the report must never hide the test's own failure
        text = f"post-mortem unavailable: {type(e).__name__}: {e}"
    rep.sections.append(("oom-lab post-mortem", text))
