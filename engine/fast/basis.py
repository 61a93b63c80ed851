"""Rows of an identity matrix, kept symbolic: the tangents that ``jacobian`` and ``hessian``
push in forward mode (when the fast layer is on; else they push the dense rows).

A forward-mode Jacobian pushes the stacked identity through the function: the tangent of
an input ``x`` holds one unit vector per row. The first op that reads ``x`` would multiply
by that identity (``W @ x`` costs a full ``W @ I``, most of W6's time); an op
whose forward rule knows what it makes of unit vectors (``BASIS_JVP``: matmul picks
columns of ``W``) skips the product, and every other op gets the dense rows
(``dense()``), exactly what it was given before. Figures: ``bench/PROFILE.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.core import trace
from engine.registry import OPS, Op, shape_of


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


def _matrix(a: Any) -> bool:
    return type(a) is np.ndarray and a.ndim == 2


def _unit_rows(m: np.ndarray, basis: Basis) -> np.ndarray:
    """``e_j @ m`` for each row of ``basis``: row j of ``m`` (zeros where a row holds no 1),
    a new array in ``m``'s memory order (``W.T``'s rows are copied as W's columns lie)."""
    dtype = np.result_type(m.dtype, basis.dtype)
    span = basis.unit_range()
    if span is not None:
        return m[span[0] : span[1]].astype(dtype, order="K")
    out = np.zeros(basis.shape[:1] + m.shape[1:], dtype=dtype)
    rows, cols = basis.units()
    out[rows] = m[cols]
    return out


def _matmul_basis(tangents: list[Any], ans: Any, x: Any, y: Any) -> Any:
    """The tangent of ``W @ v`` (or ``v @ W``) for a vector ``v`` whose tangent is rows of
    an identity: ``W @ e_j`` is column j of W (``e_j @ W`` row j), taken instead of
    multiplied out. None when it is not that case (the rows are then made dense)."""
    tx, ty = tangents
    # (m, n) @ (n,): the rows of the tangent are columns of x
    if tx is None and type(ty) is Basis and _matrix(x) and len(shape_of(y)) == 1:
        return _unit_rows(x.T, ty)
    # (n,) @ (n, p): rows of y
    if ty is None and type(tx) is Basis and _matrix(y) and len(shape_of(x)) == 1:
        return _unit_rows(y, tx)
    return None


def _dot_basis(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    """dot of a matrix and a vector is their matmul."""
    from engine.ops.products import _dot_kind

    return _matmul_basis(tangents, ans, a, b) if _dot_kind(a, b) == "matmul" else None


# forward rules for tangents that are rows of an identity: ``rule(tangents, ans, *args,
# **kwargs)`` gives the tangent without the product with the identity, or None
BASIS_JVP: dict[str, Callable[..., Any]] = {"matmul": _matmul_basis, "dot": _dot_basis}
_by_op: dict[Op, Callable[..., Any]] = {}


def push_tangent(op: Op, tangents: list[Any], ans: Any, vals: list[Any], kwargs: Any) -> Any:
    """``trace.push_tangent``: an op with a rule for unit vectors takes a ``Basis`` as it is;
    every other op gets it dense."""
    if Basis in map(type, tangents):  # rows of an identity, pushed by a Jacobian or Hessian
        rule = _by_op.get(op)
        t = rule(tangents, ans, *vals, **kwargs) if rule is not None else None
        if t is None:  # the op has no shortcut for unit vectors here: it gets them dense
            t = op.jvp([dense(t) for t in tangents], ans, *vals, **kwargs)
        return t
    return op.jvp(tangents, ans, *vals, **kwargs)


def install() -> None:
    _by_op.update({OPS[name]: rule for name, rule in BASIS_JVP.items()})
    trace.push_tangent = push_tangent


def uninstall() -> None:
    trace.push_tangent = trace._jvp
