"""Resource limits of the language, checked before work: no request can hang or exhaust a worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on what a function may be and do; defaults keep one machine safe.

    ``max_iterations`` counts loop iterations across all loops of one run; the
    default stops ``while True`` in well under a second (the interpreter runs
    a few hundred thousand trivial iterations per second, see README.md).
    """

    max_source_chars: int = 100_000
    max_depth: int = 200
    max_program_nodes: int = 50_000
    max_graph_nodes: int = 10_000
    max_iterations: int = 100_000
    max_elements: int = 10_000_000


DEFAULT_LIMITS = Limits()
