"""Micro-tuned rule helpers and impls; with the fast layer off, each is its plain form.

- ``times(g, d)``: ``g * d``, or a read-only view of ``d`` under a summed loss;
- ``times_new(g, t)``: ``g * t`` written into the rule's own temporary ``t``;
- ``negated(t)``: ``-t`` written into the rule's own temporary;
- ``SCALAR_IMPLS``: arithmetic on NumPy scalars through Python's operators (a tenth of a
  ufunc call's time; on arrays the operator calls the same ufunc).
Figures: ``bench/PROFILE.md``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.fast import switch

_ONES_MIN_SIZE = 4096  # below this the check costs more than the pass it saves


def times(g: Any, d: Any) -> Any:
    """``g * d``, or a read-only view of ``d`` when ``g`` is a broadcast 1 of its shape.

    ``sum``'s cotangent is ``broadcast_to(1, shape)`` (a zero-stride view), so the rules
    right under a summed loss would make a full pass multiplying by one. The view shares
    ``d``'s memory, which is safe: the backward pass writes only into buffers it made,
    and a view that reaches the caller as a gradient is copied there (``_own``).
    """
    if (
        switch.ON
        and type(d) is np.ndarray
        and _broadcast_one(g)
        and d.shape == g.shape
        and d.dtype == g.dtype
    ):
        view = d.view()
        view.flags.writeable = False
        return view
    return g * d


def _broadcast_one(g: Any) -> bool:
    """Whether ``g`` is ``sum``'s cotangent: a large zero-stride array of ones."""
    return (
        type(g) is np.ndarray and g.size >= _ONES_MIN_SIZE and not any(g.strides) and g.flat[0] == 1
    )


def times_new(g: Any, t: Any) -> Any:
    """``g * t`` for a temporary ``t`` that the rule just made: computed into ``t``.

    On large arrays the passes are bound by memory, and writing into a buffer that was
    just written (still in cache) costs less than a fresh one: the sin rule becomes
    ``c = cos(x); c *= g``. Multiplication commutes exactly, so the values are the same.
    """
    if (
        switch.ON
        and type(t) is np.ndarray
        and type(g) is np.ndarray
        and t.shape == g.shape
        and t.dtype == g.dtype
        and t.flags.writeable
    ):
        if _broadcast_one(g):
            return t  # under a sum: nothing to multiply
        return np.multiply(t, g, out=t)
    return g * t


def negated(t: Any) -> Any:
    """``-t`` for a temporary ``t`` that the rule just made (negated in place when plain)."""
    if switch.ON and type(t) is np.ndarray and t.flags.writeable:
        return np.negative(t, out=t)
    from engine.registry import OPS  # the rules' module imports this one

    return OPS["negative"](t)


# NumPy scalars (x[0] of a vector, a scalar chain) pay much more per ufunc call than per
# Python operator. Operators are used only for NumPy operands (a list times 2
# would repeat the list) and never for two Python numbers (whose result would not be a
# NumPy value).
_NUMPY = frozenset({np.ndarray, np.float64, np.float32})
_PYTHON = frozenset({int, float})


def _operator(ufunc: np.ufunc, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def impl(x: Any, y: Any) -> Any:
        tx, ty = type(x), type(y)
        if (tx in _NUMPY and (ty in _NUMPY or ty in _PYTHON)) or (ty in _NUMPY and tx in _PYTHON):
            return op(x, y)
        return ufunc(x, y)

    impl.__name__ = ufunc.__name__
    return impl


SCALAR_IMPLS: dict[str, Callable[[Any, Any], Any]] = {
    "add": _operator(np.add, operator.add),
    "subtract": _operator(np.subtract, operator.sub),
    "multiply": _operator(np.multiply, operator.mul),
    "divide": _operator(np.divide, operator.truediv),
    "power": _operator(np.power, operator.pow),
}
_plain: dict[str, Callable[..., Any]] = {}


def install() -> None:
    from engine.registry import OPS

    for name, impl in SCALAR_IMPLS.items():
        _plain.setdefault(name, OPS[name].impl)
        OPS[name].impl = impl


def uninstall() -> None:
    from engine.registry import OPS

    for name, impl in _plain.items():
        OPS[name].impl = impl
