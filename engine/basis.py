"""Rows of an identity matrix, kept symbolic: the tangents that ``jacobian`` and ``hessian``
push in forward mode.

A forward-mode Jacobian pushes the stacked identity through the function: the tangent of
an input ``x`` holds one unit vector per row. The first op that reads ``x`` would multiply
by that identity (``W @ x`` costs a full ``W @ I``: 0.66 ms at n=256, 87% of W6); an op
whose forward rule knows what it makes of unit vectors (``Op.jvp_basis``: matmul picks
columns of ``W``) skips the product, and every other op gets the dense rows
(``dense()``), exactly what it was given before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class Basis:
    """Rows ``start..stop`` of an identity of size ``total``, restricted to the columns
    ``offset..offset + size(inner)`` that belong to one input (several inputs share one
    identity, and a chunked Jacobian takes a slice of its rows). As an array its shape is
    ``(stop - start,) + inner``: row ``r`` is the unit vector at flat index
    ``start + r - offset`` of the input, or zeros when that index is not the input's.
    """

    __slots__ = ("start", "stop", "offset", "inner", "dtype")

    def __init__(self, start: int, stop: int, offset: int, inner: tuple[int, ...], dtype: Any):
        self.start, self.stop, self.offset = start, stop, offset
        self.inner = tuple(inner)
        self.dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.stop - self.start,) + self.inner

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.inner)

    def units(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows that hold a unit vector and, for each, the flat index of its 1."""
        flat = np.arange(self.start - self.offset, self.stop - self.offset)
        rows = np.flatnonzero((flat >= 0) & (flat < math.prod(self.inner)))
        return rows, flat[rows]

    def unit_range(self) -> tuple[int, int] | None:
        """``(a, b)`` when every row holds a unit vector and they are flat indices ``a..b``
        in order (an unchunked Jacobian, or a chunk inside one input): a slice, no gather."""
        a, b = self.start - self.offset, self.stop - self.offset
        return (a, b) if a >= 0 and b <= math.prod(self.inner) else None

    def dense(self) -> np.ndarray:
        """The rows as a NumPy array."""
        out = np.zeros((self.stop - self.start, math.prod(self.inner)), dtype=self.dtype)
        rows, cols = self.units()
        out[rows, cols] = 1
        return out.reshape(self.shape)

    def __repr__(self) -> str:
        return f"Basis(rows {self.start}:{self.stop} at {self.offset}, {self.inner}, {self.dtype})"


def dense(t: Any) -> Any:
    """``t``, with a ``Basis`` made a NumPy array."""
    return t.dense() if type(t) is Basis else t
