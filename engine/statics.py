"""Kinds of static argument (``name:kind`` in an op's spec string): each checks a value and
normalises it once, before any rule or shape function sees it (``registry.normalise_statics``).

A kind is ``normalise(op, name, value, shape) -> value``, ``shape`` being the shape of the
op's first array argument (the one its axes refer to). Axes come out negative, so the same
call fits a tangent or cotangent that carries leading batch axes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.errors import ShapeError, ValueDomainError

Shape = tuple[int, ...]


def norm_axis(axis: Any, ndim: int, op: str) -> int:
    """``axis`` as a negative index into an ``ndim``-array, or a clear error."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise ValueDomainError(f"{op}: axis must be an integer, got {axis!r}", op=op)
    if not -ndim <= axis < ndim:
        raise ValueDomainError(
            f"{op}: axis {axis} is out of bounds for an array of dimension {ndim}", op=op
        )
    return int(axis) % ndim - ndim


def norm_axes(axis: Any, ndim: int, op: str) -> tuple[int, ...]:
    """``None``, an int or a sequence of ints as a sorted tuple of negative axes."""
    if axis is None:
        return tuple(range(-ndim, 0))
    if isinstance(axis, list | tuple):
        axes = tuple(sorted(norm_axis(a, ndim, op) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueDomainError(f"{op}: repeated axis in {tuple(axis)}", op=op)
        return axes
    return (norm_axis(axis, ndim, op),)


def _int(op: str, name: str, value: Any, shape: Shape) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueDomainError(f"{op}: {name} must be an integer, got {value!r}", op=op)
    return int(value)


def _axis(op: str, name: str, value: Any, shape: Shape) -> int:
    """One axis of the array, negative."""
    return norm_axis(value, len(shape), op)


def _axes(op: str, name: str, value: Any, shape: Shape) -> tuple[int, ...]:
    """None (every axis), one axis or several, as a sorted tuple of negative axes."""
    return norm_axes(value, len(shape), op)


def _new_axes(op: str, name: str, value: Any, shape: Shape) -> tuple[int, ...]:
    """Positions of new axes in the result (expand_dims): axes of an array with one more
    dimension per position."""
    out_nd = len(shape) + (len(value) if isinstance(value, list | tuple) else 1)
    return norm_axes(value, out_nd, op)


def _unit_axes(op: str, name: str, value: Any, shape: Shape) -> tuple[int, ...]:
    """Axes of size 1 (squeeze): the given ones, each checked, or every one (None)."""
    if value is None:
        return tuple(i - len(shape) for i, d in enumerate(shape) if d == 1)
    axes = norm_axes(value, len(shape), op)
    bad = [a for a in axes if shape[a] != 1]
    if bad:
        raise ShapeError(
            f"{op}: cannot squeeze axis {bad[0]} of size {shape[bad[0]]} (shape {shape})",
            op=op,
            shapes=[shape],
        )
    return axes


STATIC_KINDS: dict[str, Callable[[str, str, Any, Shape], Any]] = {
    "int": _int,
    "axis": _axis,
    "axes": _axes,
    "new_axes": _new_axes,
    "unit_axes": _unit_axes,
}
