"""The engine's ops as a flat module under NumPy's names: ``import engine.numpy as anp``.

Traced values support the operators ``+ - * / // % ** @``, unary ``-``/``+``,
comparisons and indexing, all dispatched to these ops.
"""

from __future__ import annotations

from typing import Any

import engine.ops  # noqa: E402,F401,I001  (registers every op; must follow the imports above)
from engine import tracer
from engine.registry import NUMPY_ERRORS, OPS
from engine.tracer import Box, Var

globals().update(OPS)


def _binary(name: str, reflected: bool = False) -> Any:
    """The operator for op ``name``: ``op(x, y)`` through ``tracer.apply2`` when nothing is
    recorded (no ``*args, **kwargs`` packing nor ``Op.__call__``: a fifth of a scalar op)."""
    op = OPS[name]
    assert op.prepare is None, f"{name}: the operators pass arguments as they are"
    apply2, errors = tracer.apply2, NUMPY_ERRORS

    def call(x: Any, y: Any) -> Any:
        if tracer.recorder is None:
            try:
                return apply2(op, x, y)
            except errors as exc:
                raise op.error(exc, (x, y)) from None
        return op(x, y)

    if reflected:
        return lambda self, other: call(other, self)
    return call


_OPERATORS = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "truediv": "divide",
    "floordiv": "floor_divide",
    "mod": "remainder",
    "pow": "power",
    "matmul": "matmul",
}
for _dunder, _name in _OPERATORS.items():
    setattr(Box, f"__{_dunder}__", _binary(_name))
    setattr(Box, f"__r{_dunder}__", _binary(_name, reflected=True))
for _dunder, _name in {
    "eq": "equal",
    "ne": "not_equal",
    "lt": "less",
    "le": "less_equal",
    "gt": "greater",
    "ge": "greater_equal",
    "and": "logical_and",
    "or": "logical_or",
}.items():
    setattr(Box, f"__{_dunder}__", _binary(_name))
Box.__neg__ = lambda self: OPS["negative"](self)  # type: ignore[method-assign,operator]
Box.__pos__ = lambda self: self  # type: ignore[method-assign,operator]
Box.__abs__ = lambda self: OPS["abs"](self)  # type: ignore[attr-defined]
Box.__invert__ = lambda self: OPS["logical_not"](self)  # type: ignore[attr-defined]
_getitem = OPS["getitem"]


def _box_getitem(self: Box, index: Any) -> Any:
    """``self[index]``. A Var read again at the same integer gives the node it gave before
    (``x[0]`` written three times is one node, whose cotangents are summed once), unless a
    graph is being recorded for its metadata, which lists every op call as written."""
    if type(index) is int and type(self) is Var and tracer.recorder is None:
        try:
            items = self.items
        except AttributeError:
            items = self.items = {}
        node = items.get(index)
        if node is None:
            node = items[index] = _getitem(self, index)
        return node
    return _getitem(self, index)


Box.__getitem__ = _box_getitem  # type: ignore[attr-defined]
Box.__hash__ = object.__hash__  # type: ignore[assignment]
Box.T = property(lambda self: OPS["transpose"](self))  # type: ignore[attr-defined]


def __getattr__(name: str) -> Any:  # ops are registered at import time
    try:
        return OPS[name]
    except KeyError:
        raise AttributeError(f"engine.numpy has no op {name!r}") from None
