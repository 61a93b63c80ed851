"""The engine's ops as a flat module under NumPy's names: ``import engine.numpy as anp``.

Traced values support the operators ``+ - * / // % ** @``, unary ``-``/``+``,
comparisons and indexing, all dispatched to these ops (``engine.fast.operators`` puts
short paths in their place when the fast layer is on).
"""

from __future__ import annotations

from typing import Any

import engine.ops  # noqa: E402,F401,I001  (registers every op; must follow the imports above)
from engine.core.trace import Box
from engine.registry import OPS

globals().update(OPS)

_ARITHMETIC = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "truediv": "divide",
    "floordiv": "floor_divide",
    "mod": "remainder",
    "pow": "power",
    "matmul": "matmul",
}
_COMPARISONS = {
    "eq": "equal",
    "ne": "not_equal",
    "lt": "less",
    "le": "less_equal",
    "gt": "greater",
    "ge": "greater_equal",
    "and": "logical_and",
    "or": "logical_or",
}
# every binary operator of a box: dunder -> (op name, reflected)
OPERATORS: dict[str, tuple[str, bool]] = {
    **{f"__{d}__": (name, False) for d, name in _ARITHMETIC.items()},
    **{f"__r{d}__": (name, True) for d, name in _ARITHMETIC.items()},
    **{f"__{d}__": (name, False) for d, name in _COMPARISONS.items()},
}


def operator_method(call: Any, reflected: bool) -> Any:
    """The method for a binary operator that calls ``call(x, y)``."""
    if reflected:
        return lambda self, other: call(other, self)
    return call  # called as call(self, other): no extra layer


for _dunder, (_name, _reflected) in OPERATORS.items():
    assert OPS[_name].prepare is None, f"{_name}: the operators pass arguments as they are"
    _op = OPS[_name]  # a function, not the Op itself: an Op is no descriptor, would not bind
    setattr(Box, _dunder, operator_method(lambda x, y, op=_op: op(x, y), _reflected))
Box.__neg__ = lambda self: OPS["negative"](self)  # type: ignore[method-assign,operator]
Box.__pos__ = lambda self: self  # type: ignore[method-assign,operator]
Box.__abs__ = lambda self: OPS["abs"](self)  # type: ignore[attr-defined]
Box.__invert__ = lambda self: OPS["logical_not"](self)  # type: ignore[attr-defined]
Box.__getitem__ = lambda self, index: OPS["getitem"](self, index)  # type: ignore[attr-defined]
Box.__hash__ = object.__hash__  # type: ignore[assignment]
Box.T = property(lambda self: OPS["transpose"](self))  # type: ignore[attr-defined]


def __getattr__(name: str) -> Any:  # ops are registered at import time
    try:
        return OPS[name]
    except KeyError:
        raise AttributeError(f"engine.numpy has no op {name!r}") from None


from engine import fast  # noqa: E402  (the shortcuts plug into the ops and operators above)

fast.set_enabled(fast.enabled())
