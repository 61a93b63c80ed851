"""The server thread's slot: one medium computation at a time, and none queued behind it.

The "thread" lane has one server thread. While it computes, another medium task goes to
the pool rather than waiting behind it (a queue there would have no time limit and no
bound). The event loop's lane is not held back by it: the engine keeps its trace state
per context (``contextvars``), so a tiny computation on the loop and a medium one in the
thread share no tape or recorder. Letting tiny requests stay on the loop while the thread
computes was measured to help (``bench/inprocess_ab.py``: tiny /grad latency while
medium requests keep the thread busy, one server process, interleaved A/B on a loaded
2-core machine: p50 2.9-4.7 ms against 3.6-6.7 ms when every request went to the pool).
"""

from __future__ import annotations


class InProcessSlot:
    """The server thread's slot: taken while it computes."""

    def __init__(self) -> None:
        self.busy = False

    def take(self) -> None:
        """Mark the slot taken (the server thread starts a computation)."""
        self.busy = True

    def release(self) -> None:
        """Free the slot (the server thread's computation ended)."""
        self.busy = False
