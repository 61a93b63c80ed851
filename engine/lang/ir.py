"""The compiled form shared by text and graphs: plain named tuples, picklable, no closures.

Text and JSON graphs compile to these same nodes, so one interpreter runs both
and the same function gives the same values, gradients and graph either way.
A ``loc`` is ``(line, column)`` (1-based) for text or the node id (a string)
for graphs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from engine.locations import Loc

# --- expressions ------------------------------------------------------------------------


class Num(NamedTuple):
    """A number literal: its float value and, when written as an integer, that integer."""

    value: float
    int_value: int | None
    loc: Loc


class Const(NamedTuple):
    """A named constant (``pi e inf True False``) or ``None`` (static arguments only)."""

    name: str
    value: Any
    loc: Loc


class Str(NamedTuple):
    """A string literal: only einsum's subscripts."""

    value: str
    loc: Loc


class Ellip(NamedTuple):
    """``...`` inside an index."""

    loc: Loc


class Name(NamedTuple):
    id: str
    loc: Loc


class Seq(NamedTuple):
    """A list or tuple literal: an array, a shape/axes tuple, or a sequence of arrays."""

    items: tuple[Any, ...]
    loc: Loc


class Arg(NamedTuple):
    """A positional argument and the kind of the parameter it binds to."""

    kind: str
    expr: Any


class KwArg(NamedTuple):
    name: str
    kind: str
    expr: Any


class Call(NamedTuple):
    """A call of a registry op (operators compile to calls too: ``a + b`` is ``add(a, b)``)."""

    op: str
    args: tuple[Arg, ...]
    kwargs: tuple[KwArg, ...]
    loc: Loc


class BoolOp(NamedTuple):
    """``and``/``or``: short-circuit in conditions, ``logical_and``/``logical_or`` in values."""

    op: str
    values: tuple[Any, ...]
    loc: Loc


class Not(NamedTuple):
    operand: Any
    loc: Loc


class Slice(NamedTuple):
    lower: Any
    upper: Any
    step: Any
    loc: Loc


class Index(NamedTuple):
    """``value[items]``: each item a Slice, Ellip, ``None`` Const, or an expression."""

    value: Any
    items: tuple[Any, ...]
    loc: Loc


class Attr(NamedTuple):
    """``value.shape``, ``.ndim``, ``.size`` or ``.dtype``: read from the value's shape."""

    value: Any
    name: str
    loc: Loc


class Receiver(NamedTuple):
    """The receiver of a method call (``x`` in ``x.sum()``): it must be an array."""

    value: Any
    method: str
    loc: Loc


class IfExp(NamedTuple):
    """``body if test else orelse``: only the branch taken runs, as with ``if``."""

    test: Any
    body: Any
    orelse: Any
    loc: Loc


class Builtin(NamedTuple):
    """``len(x)``, and ``min``/``max`` with several positional arguments (see interp)."""

    name: str
    args: tuple[Any, ...]
    loc: Loc


# --- statements --------------------------------------------------------------------------


class Assign(NamedTuple):
    """``t1 = t2 = value``; a target is a name or a tuple of targets (unpacking)."""

    targets: tuple[Any, ...]
    value: Any
    loc: Loc


class If(NamedTuple):
    test: Any
    body: tuple[Any, ...]
    orelse: tuple[Any, ...]
    loc: Loc


class While(NamedTuple):
    test: Any
    body: tuple[Any, ...]
    loc: Loc


class For(NamedTuple):
    """``for var in range(*args)``."""

    var: str
    args: tuple[Any, ...]
    body: tuple[Any, ...]
    loc: Loc


class Return(NamedTuple):
    """``return value`` or ``return a, b`` (``several``: the output is a tuple)."""

    values: tuple[Any, ...]
    several: bool
    loc: Loc


# --- counting ----------------------------------------------------------------------------


class Census(NamedTuple):
    """What a program calls, counted once per IR node and once per evaluation.

    The IR is a DAG, not a tree: a chained comparison ``a < b < c`` compiles to
    ``less(a, b) and less(b, c)`` with ``b`` one shared node, which the interpreter
    evaluates once per comparison that reads it. ``sites`` counts distinct op nodes
    (calls and indexing); ``evaluated`` counts them as the interpreter runs them,
    shared nodes once per reader (saturating at ``cap + 1``).
    """

    ops: frozenset[str]
    sites: int
    evaluated: int


def census(root: Any, cap: int) -> Census:
    """The ``Census`` of an IR tree/DAG, in time linear in its distinct nodes.

    Iterative and memoised by node identity: a walk of the tree the DAG stands for
    doubles with every level of nested chained comparisons.
    """
    evaluated: dict[int, int] = {}  # id(node) -> op evaluations under it, once done
    keep: list[Any] = []  # holds the nodes so that no id() is reused during the walk
    ops: set[str] = set()
    sites = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if not children_done:
            if id(node) in evaluated:
                continue  # a shared node, already counted
            keep.append(node)
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in evaluated)
            continue
        own = 0
        if type(node) is Call or type(node) is Index:
            own = 1
            sites += 1
            ops.add(node.op if type(node) is Call else "getitem")
        elif type(node) is Builtin and node.name in BUILTIN_OPS:
            own = len(node.args)
            sites += 1
            ops.update(BUILTIN_OPS[node.name])
        total = own + sum(evaluated[id(c)] for c in _children(node))
        evaluated[id(node)] = min(total, cap + 1)
    return Census(frozenset(ops), sites, evaluated[id(root)])


_LEAVES = frozenset({Num, Const, Str, Ellip, Name})
# the ops a builtin may call (for the census: the service's cost classes read them)
BUILTIN_OPS = {
    "sum": ("add",),
    "max": ("max", "maximum"),
    "min": ("min", "minimum"),
}


def _children(node: Any) -> list[Any]:
    """The IR nodes and tuples directly under ``node`` (locations and leaves left out)."""
    items = node[:-1] if hasattr(node, "_fields") and node._fields[-1] == "loc" else node
    return [c for c in items if isinstance(c, tuple) and type(c) not in _LEAVES]
