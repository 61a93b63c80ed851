"""The short paths of tracing: first-order reverse mode without the general ``apply``.

- ``apply_short`` is ``trace.apply`` for the common case (one or two arguments, every box
  a ``Var`` over a plain value, all at one level): the general path's cost is most of a
  scalar op's time;
- the operators (``x * 2``, ``x + y``) go through ``apply2``, the same written out for two
  arguments with no tuples packed and no ``Op.__call__``;
- trace-time CSE: on arrays, an operator applied again to the same nodes (and the same
  non-zero Python-number constant) gives the node it gave before (``x ** 2`` written twice
  is one node, as JAX's CSE gives under jit); the memo lives with the open tape;
- ``x[i]`` for an integer ``i`` read again on one ``Var`` gives the node it gave before.
Both memos are skipped while a graph is recorded (its metadata lists every call as
written). Figures: ``bench/PROFILE.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.core import trace
from engine.core.trace import Box, Var, open_tapes
from engine.registry import NUMPY_ERRORS, OPS, Op

_ndarray = np.ndarray  # a module global: one lookup, not np's attribute, on the hot paths
_general = trace.apply


def apply_short(op: Op, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``trace.apply``, with first-order reverse mode on one or two arguments written out."""
    n = len(args)
    if n == 1:
        x = args[0]
        if type(x) is Var:
            xv = x.value
            if not isinstance(xv, Box) and op.differentiable:
                return _record(op, x.level, ((0, x),), (xv,), kwargs)
        elif not isinstance(x, Box):
            return op.impl(x, **kwargs) if kwargs else op.impl(x)
    elif n == 2:
        x, y = args
        if type(x) is Var:
            xv = x.value
            if not isinstance(xv, Box) and op.differentiable:
                if type(y) is Var:
                    yv = y.value
                    if y.level == x.level and not isinstance(yv, Box):
                        return _record(op, x.level, ((0, x), (1, y)), (xv, yv), kwargs)
                elif not isinstance(y, Box):
                    return _record(op, x.level, ((0, x),), (xv, y), kwargs)
        elif type(y) is Var:
            yv = y.value
            if not isinstance(x, Box) and not isinstance(yv, Box) and op.differentiable:
                return _record(op, y.level, ((1, y),), (x, yv), kwargs)
        elif not isinstance(x, Box) and not isinstance(y, Box):  # constants: nothing to trace
            return op.impl(x, y, **kwargs) if kwargs else op.impl(x, y)
    return _general(op, args, kwargs)


def _record(
    op: Op, level: int, parents: tuple[tuple[int, Var], ...], vals: tuple[Any, ...], kwargs: Any
) -> Var:
    """Run ``op`` on raw values and record the result as a Var of ``level``."""
    ans = op.impl(*vals, **kwargs) if kwargs else op.impl(*vals)
    node = Var(ans, level, op, parents, vals, kwargs)
    rec = open_tapes().get(level)
    if rec is not None:
        rec.tape.append(node)
    return node


def apply2(op: Op, x: Any, y: Any) -> Any:
    """``apply(op, (x, y), {})`` as the operators call it, first-order reverse mode written
    out; on arrays through the tape's memo (not for a zero constant: ``0 == -0.0``, but
    ``x * -0.0`` and ``x * 0.0`` differ in the sign of their zeros)."""
    if op.differentiable:
        if type(x) is Var:
            xv = x.value
            if not isinstance(xv, Box):
                if type(y) is Var:
                    yv = y.value
                    if y.level == x.level and not isinstance(yv, Box):
                        if type(xv) is _ndarray or type(yv) is _ndarray:
                            key = (op, x.id, y.id)
                            return _shared(op, x.level, key, ((0, x), (1, y)), xv, yv)
                        level = x.level
                        node = Var(op.impl(xv, yv), level, op, ((0, x), (1, y)), (xv, yv))
                        rec = open_tapes().get(level)
                        if rec is not None:
                            rec.tape.append(node)
                        return node
                elif not isinstance(y, Box):
                    if type(xv) is _ndarray and (type(y) is float or type(y) is int) and y:
                        return _shared(op, x.level, (op, x.id, 0, y, type(y)), ((0, x),), xv, y)
                    level = x.level
                    node = Var(op.impl(xv, y), level, op, ((0, x),), (xv, y))
                    rec = open_tapes().get(level)
                    if rec is not None:
                        rec.tape.append(node)
                    return node
        elif type(y) is Var:
            yv = y.value
            if not isinstance(x, Box) and not isinstance(yv, Box):
                if type(yv) is _ndarray and (type(x) is float or type(x) is int) and x:
                    return _shared(op, y.level, (op, y.id, 1, x, type(x)), ((1, y),), x, yv)
                level = y.level
                node = Var(op.impl(x, yv), level, op, ((1, y),), (x, yv))
                rec = open_tapes().get(level)
                if rec is not None:
                    rec.tape.append(node)
                return node
    return trace.dispatch(op, (x, y), trace.NO_KWARGS)


def _shared(op: Op, level: int, key: tuple[Any, ...], parents: Any, xv: Any, yv: Any) -> Var:
    """The node of ``op(xv, yv)`` at ``level``: the open tape's for ``key``, or a new one.
    Keys hold ids, not boxes (a box's ``==`` is the traced ``equal``); the tape keeps those
    nodes, and so their ids, alive."""
    rec = open_tapes().get(level)
    if rec is None:
        return Var(op.impl(xv, yv), level, op, parents, (xv, yv))
    memo = rec.memo
    node = memo.get(key)
    if node is None:
        node = memo[key] = Var(op.impl(xv, yv), level, op, parents, (xv, yv))
        rec.tape.append(node)
    return node


def _binary(op: Op) -> Any:
    """The fast operator for ``op``: ``apply2`` when no graph is recorded (no ``*args,
    **kwargs`` packing nor ``Op.__call__``: a fifth of a scalar op)."""
    recording, errors = trace.current_recorder, NUMPY_ERRORS

    def call(x: Any, y: Any) -> Any:
        if recording() is None:
            try:
                return apply2(op, x, y)
            except errors as exc:
                raise op.error(exc, (x, y)) from None
        return op(x, y)

    return call


def _box_getitem(self: Box, index: Any) -> Any:
    """``self[index]``; a Var read again at the same integer gives the node it gave before
    (``x[0]`` written three times is one node, whose cotangents are summed once)."""
    if type(index) is int and type(self) is Var and trace.current_recorder() is None:
        try:
            items = self.items
        except AttributeError:
            items = self.items = {}
        node = items.get(index)
        if node is None:
            node = items[index] = OPS["getitem"](self, index)
        return node
    return OPS["getitem"](self, index)


_saved: dict[str, Any] = {}


def install() -> None:
    """Put the short paths in place: ``Op.__call__``'s dispatch, the operators, ``x[i]``."""
    from engine.numpy import OPERATORS, operator_method  # the operators it sets on Box

    trace.dispatch = apply_short
    for dunder, (name, reflected) in OPERATORS.items():
        _saved.setdefault(dunder, getattr(Box, dunder))
        setattr(Box, dunder, operator_method(_binary(OPS[name]), reflected))
    _saved.setdefault("__getitem__", getattr(Box, "__getitem__"))  # noqa: B009
    setattr(Box, "__getitem__", _box_getitem)  # noqa: B010


def uninstall() -> None:
    trace.dispatch = trace.apply
    for dunder, plain in _saved.items():
        setattr(Box, dunder, plain)
