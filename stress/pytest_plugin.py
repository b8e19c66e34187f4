"""pytest plugin (entry point ``pytest11``): write your own lockup tests.

Fixtures:

* ``kernel``: a fresh ``kthreads.Kernel`` (configure it with
  ``@pytest.mark.kernel_config(policy="patch1", nr_pages=1024, ...)``). On
  teardown it is shut down and must be clean: every thread joined, pages
  conserved and all returned, no invariant breach.
* ``sequencer``: ordered steps across real threads. ``sequencer.until(what,
  predicate)`` waits on model state; ``sequencer.wait(name)`` (in a task) and
  ``sequencer.release(name)`` (anywhere) are named gates. A step that times
  out breaks the whole sequence loudly: every later step raises at once.

When a test using ``kernel`` fails, its report gets an "oom-lab post-mortem"
section: the diagnosis of the kernel's flight recorder, and the path of the
JSONL log, which ``python -m stress postmortem LOG --html FILE`` renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from kthreads import Kernel

from .sequencer import Sequencer

_KERNEL = pytest.StashKey["Kernel"]()
_LOGDIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel_config(**config): KernelConfig fields for the "
                                       "`kernel` fixture (policy, nr_pages, speed, ...)")


@pytest.fixture
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    marker = request.node.get_closest_marker("kernel_config")
    k = Kernel(**(marker.kwargs if marker else {}))
    request.node.stash[_KERNEL] = k
    request.node.stash[_LOGDIR] = tmp_path_factory.mktemp("oom-lab")
    yield k
    report = k.shutdown()
    problems = k.check_quiescent() if report.clean else [report.format()]
    if problems:
        pytest.fail("kernel teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def sequencer(kernel: Kernel) -> Sequencer:
    return Sequencer(kernel, timeout=5.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    k = item.stash.get(_KERNEL, None)
    if k is None or rep.when != "call" or not rep.failed:
        return
    from .postmortem import analyze, dump_jsonl, load_jsonl

    path = item.stash[_LOGDIR] / (item.name.replace("/", "_") + ".jsonl")
    try:
        dump_jsonl(k, path, {"test": item.nodeid})
        d = analyze(load_jsonl(path)).diagnosis
        text = (f"flight recorder: {path}\n{d.outcome}" + (f" ({d.shape})" if d.shape else "")
                + f": {d.sentence}\nrender it: python -m stress postmortem {path} --html timeline.html")
    except Exception as e:  # the report must never hide the test's own failure
        text = f"post-mortem unavailable: {type(e).__name__}: {e}"
    rep.sections.append(("oom-lab post-mortem", text))
