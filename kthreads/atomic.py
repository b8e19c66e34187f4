"""Atomics by their kernel names, on small lock-protected cells.

CPython's GIL would make most of these single bytecodes atomic by accident;
the model does not rely on that. Each cell carries its own ``threading.Lock``
so that a read-modify-write is atomic by construction and visible by name.
Every write is a scheduling point (``cpu.sched_point``); plain reads
(READ_ONCE) are not.

Semantics: the kernel's ``atomic_t``, ``cmpxchg`` and ``xchg`` as of Linux
4.6 (their meaning had not changed for years by then). Two things are the
lab's: ``Cell``, a typed stand-in for a pointer-sized word, and the
underflow check (``RefcountUnderflow``); 4.6's ``atomic_t`` wraps silently.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from .cpu import sched_point
from .errors import RefcountUnderflow

T = TypeVar("T")


class Atomic:
    """``atomic_t``: an integer with atomic read-modify-write operations."""

    __slots__ = ("_v", "_lock", "name")

    def __init__(self, value: int = 0, name: str = "atomic_t") -> None:
        self._v = value
        self._lock = threading.Lock()
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}={self._v}>"

    def read(self) -> int:
        return self._v

    def set(self, value: int) -> None:
        sched_point()
        with self._lock:
            self._v = value

    def inc(self) -> int:
        sched_point()
        with self._lock:
            self._v += 1
            return self._v

    def dec_return(self) -> int:
        sched_point()
        with self._lock:
            if self._v <= 0:
                raise RefcountUnderflow(f"{self.name} decremented below zero")
            self._v -= 1
            return self._v

    def dec_and_test(self) -> bool:
        return self.dec_return() == 0

    def inc_not_zero(self) -> bool:
        sched_point()
        with self._lock:
            if self._v == 0:
                return False
            self._v += 1
            return True


class Cell(Generic[T]):
    """A pointer-sized slot with ``cmpxchg``/``xchg`` (e.g. ``mm_to_reap``)."""

    __slots__ = ("_v", "_lock", "name")

    def __init__(self, value: T | None = None, name: str = "cell") -> None:
        self._v = value
        self._lock = threading.Lock()
        self.name = name

    def read(self) -> T | None:
        """READ_ONCE()."""
        return self._v

    def write(self, value: T | None) -> None:
        """WRITE_ONCE()."""
        sched_point()
        with self._lock:
            self._v = value

    def cmpxchg(self, old: T | None, new: T | None) -> T | None:
        """Store ``new`` if the cell holds ``old`` (by identity); return what it held."""
        sched_point()
        with self._lock:
            cur = self._v
            if cur is old:
                self._v = new
            return cur

    def xchg(self, new: T | None) -> T | None:
        sched_point()
        with self._lock:
            cur, self._v = self._v, new
            return cur


def atomic_read(a: Atomic) -> int:
    return a.read()


def atomic_inc(a: Atomic) -> int:
    return a.inc()


def atomic_dec_return(a: Atomic) -> int:
    return a.dec_return()


def atomic_dec_and_test(a: Atomic) -> bool:
    return a.dec_and_test()


def atomic_inc_not_zero(a: Atomic) -> bool:
    return a.inc_not_zero()


def cmpxchg(cell: Cell[T], old: T | None, new: T | None) -> T | None:
    return cell.cmpxchg(old, new)


def xchg(cell: Cell[T], new: T | None) -> T | None:
    return cell.xchg(new)
