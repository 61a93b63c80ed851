"""The cost model of the lanes: which ops a program calls, how many times, and whether
their work is linear in their sizes. No web imports.

Whether an op is linear comes from its declared cost class in the engine's registry;
``linear_cost`` is the one place that reads it.
"""

from __future__ import annotations

from typing import Any

from engine.lang.ir import census
from engine.registry import names_of_cost

# Ops whose work is linear in the sizes of their operands and result, as each op declares
# it in the engine's registry (``Op.cost``). Contractions, decompositions (norm too: ord=2
# is an SVD) and ops that declare nothing are not.
LINEAR_OPS = names_of_cost("linear")
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
