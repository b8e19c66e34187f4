"""Shared fixtures: no leaked threads, and kernels that are always shut down."""

from __future__ import annotations

import threading
from typing import Callable, Iterator

import pytest

from kthreads import Kernel

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail any test that leaves a thread running behind it."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:  # a thread that is just finishing gets a moment to go
        t.join(1.0)
    leaked = [t.name for t in leaked if t.is_alive()]
    assert not leaked, f"test leaked threads: {leaked}"


@pytest.fixture
def boot() -> Iterator[Callable[..., Kernel]]:
    """``boot(**config)`` -> a Kernel that is shut down, and checked, at teardown."""
    kernels: list[Kernel] = []

    def _boot(**kw) -> Kernel:
        k = Kernel(**kw)
        kernels.append(k)
        return k

    yield _boot
    for k in kernels:
        report = k.shutdown()
        assert report.clean, report.format()
        problems = k.check_quiescent()
        assert not problems, problems
