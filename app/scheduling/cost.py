"""The cost model of the lanes: which ops a program calls, how many times, and whether
their work is linear in their sizes. No web imports.

(The engine branch replaces the hand list ``LINEAR_OPS`` by each op's declared cost
class from the registry; ``linear_cost`` is the one place that reads it.)
"""

from __future__ import annotations

from typing import Any

from engine.lang.ir import census

# Ops whose work is linear in the sizes of their operands and result: elementwise maths,
# reductions, shapes, indexing, constructors (and their rules, written in the same ops).
# Everything else (contractions, decompositions, norm, whose ord=2 is an SVD, and any op
# added later) can cost more than its sizes say and is never "linear" here.
LINEAR_OPS = frozenset(
    {
        "abs",
        "add",
        "arccos",
        "arcsin",
        "arctan",
        "arctan2",
        "clip",
        "cos",
        "cosh",
        "divide",
        "equal",
        "exp",
        "expm1",
        "floor_divide",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "log",
        "log10",
        "log1p",
        "log2",
        "logical_and",
        "logical_not",
        "logical_or",
        "maximum",
        "minimum",
        "multiply",
        "negative",
        "not_equal",
        "power",
        "remainder",
        "sign",
        "sin",
        "sinh",
        "sqrt",
        "square",
        "subtract",
        "tan",
        "tanh",
        "where",
        "relu",
        "sigmoid",
        "softplus",
        "sum",
        "mean",
        "prod",
        "max",
        "min",
        "var",
        "std",
        "logsumexp",
        "softmax",
        "log_softmax",
        "broadcast_to",
        "concatenate",
        "detach",
        "stop_gradient",
        "expand_dims",
        "flip",
        "getitem",
        "repeat",
        "reshape",
        "squeeze",
        "stack",
        "swapaxes",
        "tile",
        "transpose",
        "outer",
        "trace",
        "diag",
        "arange",
        "eye",
        "full",
        "linspace",
        "ones",
        "ones_like",
        "zeros",
        "zeros_like",
    }
)
_op_cache: dict[int, tuple[Any, frozenset[str], int]] = {}
# Op evaluations counted past this are "many": only comparisons with lane limits use it.
_CENSUS_CAP = 1 << 30


def op_census(program: Any) -> tuple[frozenset[str], int]:
    """The ops a compiled program calls and how many op evaluations one run makes, indexing
    (``getitem``) included (``num_ops`` leaves it out of text programs); cached per program.

    Linear in the program's IR nodes (``ir.census`` memoises shared nodes): this runs on
    the event loop when a lane is chosen.
    """
    hit = _op_cache.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1], hit[2]
    found = census(program.body, _CENSUS_CAP)
    if len(_op_cache) > 1024:  # compiled programs are cached too, but not forever
        _op_cache.clear()
    _op_cache[id(program)] = (program, found.ops, found.evaluated)
    return found.ops, found.evaluated


def linear_cost(program: Any) -> bool:
    """Whether every op of the program does work linear in its operands' and result's sizes."""
    return op_census(program)[0] <= LINEAR_OPS
