"""The tracer's public names, kept at their old address: the core is ``engine.core``.

``engine.core.trace`` holds boxes, levels, tapes and ``apply``; ``engine.core.backward``
the walk. This module only re-exports them for code written against ``engine.tracer``.
"""

from engine.core.backward import backward, toposort
from engine.core.trace import (
    Box,
    Dual,
    Var,
    apply,
    current_recorder,
    new_level,
    recording_tape,
    unbox,
    unbox_all,
)

__all__ = [
    "Box",
    "Dual",
    "Var",
    "apply",
    "backward",
    "current_recorder",
    "new_level",
    "recording_tape",
    "toposort",
    "unbox",
    "unbox_all",
]
