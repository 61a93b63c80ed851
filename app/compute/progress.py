"""Progress of one long computation, for the jobs of ``POST /jobs``. No web imports.

A job worker installs a ``Reporter`` (``reporting``) before it runs a task; the
derivatives then split a Jacobian or Hessian into chunks (at most ``TARGET_CHUNKS``)
and report each chunk done through it. Synchronous requests install none: their
computation is unchanged (one batched pass, chunked only by the memory limit).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Protocol

# A job's Jacobian or Hessian is split into about this many chunks, so its progress moves
# in steps a person can follow; each chunk has at least MIN_CHUNK_ROWS rows, so a small
# one stays one or a few batched passes (each pass costs the program's per-op overhead).
TARGET_CHUNKS = 32
MIN_CHUNK_ROWS = 16


class Reporter(Protocol):
    """Where progress goes: ``report(done, total, unit)``; must be cheap and never raise."""

    def report(self, done: int, total: int, unit: str) -> None: ...


_current: Reporter | None = None


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Send this process's progress reports to ``reporter`` while the block runs."""
    global _current
    previous, _current = _current, reporter
    try:
        yield
    finally:
        _current = previous


def current() -> Reporter | None:
    """The installed reporter, or None (a synchronous request)."""
    return _current


def chunk_rows(rows: int) -> int | None:
    """The rows per chunk of a job's Jacobian or Hessian of ``rows`` rows (None: no job)."""
    if _current is None:
        return None
    return max(MIN_CHUNK_ROWS, math.ceil(rows / TARGET_CHUNKS))


def chunk_callback(unit: str = "chunks") -> Progress | None:
    """The engine's ``progress(done, total)`` for the installed reporter, or None."""
    reporter = _current
    if reporter is None:
        return None

    def progress(done: int, total: int) -> None:
        reporter.report(done, total, unit)

    return progress


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> None: ...
