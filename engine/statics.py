"""Kinds of static argument (``name:kind`` in an op's spec string): each checks a value and
normalises it once, before any rule or shape function sees it (``registry.normalise_statics``).

A kind is ``normalise(op, name, value, shape) -> value``, ``shape`` being the shape of the
op's first array argument (the one its axes refer to). Axes come out negative, so the same
call fits a tangent or cotangent that carries leading batch axes.
"""

from __future__ import annotations

import math
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


def static_shape(shape: Any, op: str) -> tuple[int, ...]:
    """An int or a sequence of ints as a tuple, or a clear error."""
    if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) for d in shape
    ):
        raise ValueDomainError(f"{op}: a shape must be a list of integers, got {shape!r}", op=op)
    return tuple(int(d) for d in shape)


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
            f"{op}: cannot squeeze axis {bad[0] + len(shape)} of size {shape[bad[0]]} "
            f"(shape {shape})",
            op=op,
            shapes=[shape],
        )
    return axes


def _shape(op: str, name: str, value: Any, shape: Shape) -> Shape:
    """A shape given as an int or a sequence of ints."""
    return static_shape(value, op)


def _new_shape(op: str, name: str, value: Any, shape: Shape) -> Shape:
    """A shape with the array's size (reshape): at most one -1, inferred."""
    old = shape
    new = list(static_shape(value, op))
    size = math.prod(old)
    if new.count(-1) > 1 or any(d < -1 for d in new):
        raise ValueDomainError(f"{op}: invalid shape {tuple(new)}", op=op)
    if -1 in new:
        rest = math.prod(d for d in new if d != -1)
        if rest == 0 or size % rest:
            raise ShapeError(
                f"{op}: cannot reshape an array of shape {old} into {tuple(new)}",
                op=op,
                shapes=[old],
            )
        new[new.index(-1)] = size // rest
    if math.prod(new) != size:
        raise ShapeError(
            f"{op}: cannot reshape an array of shape {old} (size {size}) into {tuple(new)}",
            op=op,
            shapes=[old],
        )
    return tuple(new)


def _perm(op: str, name: str, value: Any, shape: Shape) -> tuple[int, ...]:
    """A permutation of the array's axes, non-negative (None: the axes reversed)."""
    nd = len(shape)
    if value is None:
        return tuple(range(nd))[::-1]
    perm = tuple(norm_axis(a, nd, op) + nd for a in static_shape(value, op))
    if sorted(perm) != list(range(nd)):
        raise ValueDomainError(
            f"{op}: axes {tuple(value)} are not a permutation of an array of dimension {nd}",
            op=op,
        )
    return perm


def _reps(op: str, name: str, value: Any, shape: Shape) -> Shape:
    """Repetitions per axis (tile), padded with 1s to cover every axis of the array."""
    reps = static_shape(value, op)
    if any(r < 0 for r in reps):
        raise ValueDomainError(f"{op}: negative repetitions {reps}", op=op)
    nd = max(len(reps), len(shape))
    return (1,) * (nd - len(reps)) + reps


STATIC_KINDS: dict[str, Callable[[str, str, Any, Shape], Any]] = {
    "int": _int,
    "axis": _axis,
    "axes": _axes,
    "new_axes": _new_axes,
    "unit_axes": _unit_axes,
    "shape": _shape,
    "new_shape": _new_shape,
    "perm": _perm,
    "reps": _reps,
}
