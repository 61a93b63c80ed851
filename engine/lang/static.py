"""Static values: the Python numbers, tuples and strings that indices, shapes and axes need.

Integer arithmetic here is bounded (a result past 2**63 becomes a float, which
an index or shape then refuses), so no big-integer computation can hang a worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.core import trace
from engine.errors import LanguageError, TracedValueError
from engine.locations import Loc, loc_dict, loc_text

INT_LIMIT = 2**63
ARITH = {"add", "subtract", "multiply", "divide", "floor_divide", "remainder", "power", "negative"}
_PLAIN = (int, float, bool, str, tuple)


def to_static(v: Any, loc: Loc, allow_array: bool, what: str | None = None) -> Any:
    """A computed value as a static argument: a size-1 array becomes a number.

    With ``what`` (an op's argument, named) a traced value is refused: read as a number
    its derivative would silently be lost. Without it (an index, a bound) it is read."""
    if v is None or type(v) in _PLAIN:  # exact types: NumPy scalars convert below
        return v
    if what is not None and isinstance(v, trace.Box):
        msg = (
            f"{what} at {loc_text(loc)} is computed from a differentiated input, but it is "
            "static (a shape, axis, count or option, which has no derivative): make that "
            "input a constant (requires_grad false, or leave it out of wrt) or use detach(...)"
        )
        raise TracedValueError(msg, loc=loc_dict(loc))
    arr = np.asarray(trace.unbox_all(v))
    if arr.ndim == 0:
        x = arr.item()
        if isinstance(x, float) and x.is_integer() and abs(x) < INT_LIMIT:
            return int(x)
        return x
    if allow_array:
        return arr
    msg = (
        f"expected a number at {loc_text(loc)}, got an array of shape {arr.shape} "
        "(this argument is static: a number, a tuple of integers or einsum's subscripts)"
    )
    raise LanguageError(msg, shapes=[arr.shape], loc=loc_dict(loc))


def index_array(v: np.ndarray, loc: Loc) -> np.ndarray:
    """An index array: a boolean mask as it is (``x[x > 0]``: the result's shape depends on
    the data), integers as they are, integral floats (an input) as integers."""
    if v.dtype == np.bool_ or np.issubdtype(v.dtype, np.integer):
        return v
    if v.size == 0 or (np.all(np.abs(v) < INT_LIMIT) and np.all(v == np.round(v))):
        return v.astype(np.int64)
    raise LanguageError(f"an index array must hold integers at {loc_text(loc)}", loc=loc_dict(loc))


def arith(op: str, args: list[Any], loc: Loc) -> Any:
    """Arithmetic on static numbers with float semantics for floats and bounded integers."""
    if any(isinstance(a, float) for a in args) or op == "divide":
        with np.errstate(all="ignore"):
            return float(_float_arith(op, [np.float64(a) for a in args]))
    a = [int(x) for x in args]
    try:
        if op == "power" and (a[1] < 0 or (abs(a[0]) > 1 and a[1] * math.log2(abs(a[0])) > 64)):
            with np.errstate(all="ignore"):
                return float(np.power(np.float64(a[0]), np.float64(a[1])))
        result = _INT_OPS[op](*a)
    except ZeroDivisionError:
        msg = f"integer division by zero at {loc_text(loc)}"
        raise LanguageError(msg, loc=loc_dict(loc)) from None
    return result if abs(result) < INT_LIMIT else float(result)


def _float_arith(op: str, args: list[np.float64]) -> Any:
    """Float64 arithmetic with NumPy's semantics (inf/nan, never an exception)."""
    return _FLOAT_OPS[op](*args)


_INT_OPS: dict[str, Callable[..., Any]] = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "floor_divide": lambda a, b: a // b,
    "remainder": lambda a, b: a % b,
    "power": lambda a, b: a**b,
    "negative": lambda a: -a,
}
_FLOAT_OPS: dict[str, Callable[..., Any]] = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "floor_divide": np.floor_divide,
    "remainder": np.remainder,
    "power": np.power,
    "negative": np.negative,
}
