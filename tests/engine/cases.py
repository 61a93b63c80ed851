"""The op test table's row type, shared by every family's cases module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# the families' row modules (tests/engine/cases_<family>.py) that test_ops.py collects
FAMILY_MODULES = (  # every family's op-table rows (tests/engine/test_ops.py collects them)
    "cases_core",
    "cases_linalg",
    "cases_linalg2",
    "cases_selection",
    "cases_ordering",
    "cases_complex",
    "cases_special",
    "cases_building",
)

DOMAINS: dict[str, tuple[float, float]] = {
    "real": (-2.0, 2.0),
    "pos": (0.5, 2.0),
    "unit": (-0.8, 0.8),
    "gt1": (1.2, 3.0),
}


@dataclass
class Case:
    """One row: ``fn(*inputs)`` exercises ``op`` on inputs of ``shapes``.

    ``smooth``: also check second order. ``diff``: False for ops without a
    gradient (checked against ``reference`` values only). ``make``: a custom
    input generator ``make(rng) -> list of arrays`` (e.g. SPD matrices).
    """

    op: str
    fn: Callable[..., Any]
    shapes: tuple[tuple[int, ...], ...] = ((3,),)
    domain: str = "real"
    smooth: bool = True
    diff: bool = True
    reference: Callable[..., Any] | None = None
    make: Callable[[np.random.Generator], list[np.ndarray]] | None = None
    tag: str = field(default="")

    @property
    def id(self) -> str:
        shapes = "-".join("x".join(map(str, s)) or "s" for s in self.shapes)
        return f"{self.op}[{self.tag or shapes}]"

    def inputs(self, rng: np.random.Generator, dtype: Any = np.float64) -> list[np.ndarray]:
        if self.make is not None:
            return [np.asarray(a, dtype=dtype) for a in self.make(rng)]
        lo, hi = DOMAINS[self.domain]
        return [rng.uniform(lo, hi, size=s).astype(dtype) for s in self.shapes]
