"""Helpers shared by the linear-algebra families (products, einsum, matrix functions).

Batch convention: ``g`` and tangents may carry leading batch axes, so rules only ever
address the last axes (negative axes, ``matmul`` broadcasting, einsum's ``...``).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ShapeError, ValueDomainError
from engine.registry import shape_of

LETTERS = string.ascii_letters
Shape = tuple[int, ...]


# --- helpers ------------------------------------------------------------------------------


def _batch(g: Any, ndim: int) -> Shape:
    shape = shape_of(g)
    return shape[: len(shape) - ndim]


def _dtype(x: Any) -> np.dtype[Any]:
    return np.dtype(getattr(x, "dtype", np.float64))


SMALL_COPY = 4096


def _mT(x: Any) -> Any:
    """Swap the last two axes (a free view on a plain array, an op on a traced one)."""
    if isinstance(x, np.ndarray):
        # OpenBLAS is several times slower on a transposed thin operand (bench/PROFILE.md);
        # copying a small matrix costs next to nothing.
        t = x.swapaxes(-1, -2)
        return np.ascontiguousarray(t) if x.size <= SMALL_COPY else t
    return anp.swapaxes(x, -1, -2)


def _fail(op: str, message: str, *shapes: Shape) -> ShapeError:
    text = " and ".join(str(tuple(s)) for s in shapes)
    return ShapeError(f"{op}: {message} (shapes {text})", op=op, shapes=[tuple(s) for s in shapes])


def _square(op: str, a: Any) -> Shape:
    """The shape of a stack of square matrices, or a ShapeError."""
    s = shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise _fail(op, "expects a square matrix (or a stack of them) in the last two axes", s)
    return s


def _guard(
    op: str, fn: Callable[..., Any], why: str, shape: Callable[..., Shape]
) -> Callable[..., Any]:
    """``fn`` with NumPy's LinAlgError turned into a typed error naming ``op``: a ShapeError
    from ``shape`` when the shapes are wrong, else a ValueDomainError saying ``why``."""

    def impl(*args: Any) -> Any:
        try:
            return fn(*args)
        except np.linalg.LinAlgError:
            shape(*args)
            shapes = [shape_of(a) for a in args]
            text = " and ".join(str(s) for s in shapes)
            raise ValueDomainError(f"{op}: {why} (shapes {text})", op=op, shapes=shapes) from None

    return impl


def _pad_to(t: Any, x_ndim: int, ndim: int) -> Any:
    """Insert size-1 axes after the batch axes of ``t`` so its own part has ``ndim`` axes."""
    pad = ndim - x_ndim
    if pad <= 0:
        return t
    shape = shape_of(t)
    nb = len(shape) - x_ndim
    return anp.reshape(t, shape[:nb] + (1,) * pad + shape[nb:])
