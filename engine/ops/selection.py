"""Selections whose result depends on the data, and dtype casts.

- ``argwhere(x)``, ``flatnonzero(x)`` and ``nonzero(x)`` (one integer array per axis, a
  tuple, as NumPy returns it; ``where(c)`` with one argument is ``nonzero(c)`` in the
  language): integer results, so no gradient (listed in ``registry.NONDIFF``). Their
  result shape counts the nonzero entries, read from the data before anything is made.
- ``astype(x, dtype)`` within the float dtypes: linear, its transpose casts the
  cotangent back to ``x``'s dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core import trace
from engine.errors import ValueDomainError
from engine.ops.kinds import def_linear, def_nondiff
from engine.registry import OPS, Op, params, register, shape_of

Shape = tuple[int, ...]


def _count(x: Any) -> int:
    return int(np.count_nonzero(trace.unbox_all(x)))


def _argwhere_shape(x: Any) -> Shape:
    return (_count(x), len(shape_of(x)))


ARGWHERE = def_nondiff(
    "argwhere",
    lambda x: np.argwhere(x),
    "x",
    "The indices of the nonzero entries of x, one row each (shape (count, x.ndim)); no gradient.",
    _argwhere_shape,
    cost="linear",
)

def_nondiff(
    "flatnonzero",
    lambda x: np.flatnonzero(x),
    "x",
    "The indices of the nonzero entries of x flattened; no gradient.",
    lambda x: (_count(x),),
    cost="linear",
)


def _nonzero_check(x: Any) -> None:
    if not shape_of(x):
        raise ValueDomainError(
            "nonzero: a 0-d array has no axes to index (NumPy refuses it too); use "
            "atleast_1d or x[None]",
            op="nonzero",
        )


@dataclass(eq=False)
class _Nonzero(Op):
    """Several outputs, as many as ``x`` has axes: the columns of ``argwhere(x)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        (x,) = args
        _nonzero_check(x)
        rows = ARGWHERE(x)
        return tuple(OPS["getitem"](rows, (slice(None), k)) for k in range(len(shape_of(x))))


def _nonzero_shape(x: Any) -> Shape:
    _nonzero_check(x)
    return (_count(x),)


register(
    _Nonzero(
        name="nonzero",
        impl=lambda x: np.nonzero(x),
        params=params("x"),
        doc="The indices of the nonzero entries of x: a tuple of one integer array per axis "
        "(where(c) with one argument is this); no gradient.",
        shape_fn=_nonzero_shape,
        differentiable=False,
        cost="linear",
        kind="nondiff",
    )
)


# --- astype --------------------------------------------------------------------------------

DTYPES = ("float32", "float64")


def _prepare_astype(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0]
    dtype = args[1] if len(args) > 1 else kwargs.get("dtype")
    name = getattr(dtype, "name", dtype) if not isinstance(dtype, str) else dtype
    if name == "float":
        name = "float64"
    if name not in DTYPES:
        raise ValueDomainError(
            f"astype: dtype must be one of {', '.join(DTYPES)} (or np.float32, np.float64, "
            f"float), got {dtype!r}",
            op="astype",
        )
    return (x,), {"dtype": name}


def _astype_transpose(g: Any, ans: Any, x: Any, dtype: str) -> Any:
    """The cotangent cast back to the input's dtype."""
    source = np.result_type(trace.unbox_all(x)).name
    return anp.astype(g, dtype=source)


def_linear(
    "astype",
    lambda x, dtype: np.asarray(x).astype(dtype),
    "x, dtype:s",
    "x cast to another float dtype ('float32' or 'float64'); the gradient is cast back.",
    lambda x, dtype: shape_of(x),
    _astype_transpose,
    prepare=_prepare_astype,
)
