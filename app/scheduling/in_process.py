"""The service's one-at-a-time rule for computations in the server process.

The engine's tracer keeps module-global state (the trace level, the recorder), so two
computations in one process at the same time would share a tape. The rule: at most one
in-process computation runs at a time. The event loop's lane computes synchronously, so
it can only overlap the server thread's; while the thread is busy, every request (even
a tiny one) goes to the pool.

This stays as it is until the engine keeps its trace state per context (``contextvars``,
the engine branch of issue 14); then whether it still helps is measured and decided
(see docs/ARCHITECTURE.md).
"""

from __future__ import annotations


class InProcessSlot:
    """The one slot for in-process work: taken while the server thread computes."""

    def __init__(self) -> None:
        self.busy = False

    def take(self) -> None:
        """Mark the slot taken (the server thread starts a computation)."""
        self.busy = True

    def release(self) -> None:
        """Free the slot (the server thread's computation ended)."""
        self.busy = False
