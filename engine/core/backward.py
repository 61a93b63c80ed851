"""The backward walk: the tape reversed, each node's cotangent sent to its parents.

A cotangent may carry leading batch axes: every rule maps them through, so a whole stack
of cotangents (a Jacobian's rows) goes back in one walk. With the level's tape the walk
is the tape reversed (creation order is a topological order); without it, an iterative
graph search. How cotangents are sent to parents and summed there is one hook,
``sum_walk``: here the rules and ``+``; ``engine.fast.inplace`` plugs in sums into owned
buffers and in-place rules.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.core.trace import Var

OnNode = Callable[[Var], None] | None
Walk = Callable[[Iterable[Var], dict[int, Any], OnNode], None]


def walk(
    nodes: Iterable[Var], grads: dict[int, Any], on_node: Callable[[Var], None] | None
) -> None:
    """Each node's cotangent, popped, sent to its traced parents by their rules and added to
    what each parent has (``grads``: node id -> cotangent)."""
    for node in nodes:
        g = grads.pop(node.id, None)
        if g is None or node.op is None:
            continue
        if on_node is not None:
            on_node(node)
        vjps, ans, args, kwargs = node.op.vjps, node.value, node.args, node.kwargs
        for i, parent in node.parents:
            rule = vjps[i]
            if rule is not None:  # None: no gradient flows through this argument
                gi = rule(g, ans, *args, **kwargs)
                prev = grads.get(parent.id)
                grads[parent.id] = gi if prev is None else prev + gi


# The plug-in point: how cotangents are sent and summed (engine.fast.inplace sums into
# buffers the walk owns and runs in-place rules).
sum_walk: Walk = walk


def backward(
    outputs: Sequence[Any],
    cotangents: Sequence[Any],
    leaves: Sequence[Var],
    level: int,
    on_node: Callable[[Var], None] | None = None,
    tape: Sequence[Var] | None = None,
) -> list[Any]:
    """Cotangents of ``leaves`` given cotangents of ``outputs``; None where no path exists."""
    grads: dict[int, Any] = {}
    for out, g in zip(outputs, cotangents, strict=True):
        if type(out) is Var and out.level == level:
            grads[out.id] = g if out.id not in grads else grads[out.id] + g
    nodes = reversed(tape) if tape is not None else toposort(outputs, level)
    sum_walk(nodes, grads, on_node)
    return [grads.get(leaf.id) for leaf in leaves]


def toposort(outputs: Sequence[Any], level: int) -> list[Var]:
    """Nodes of ``level`` reachable from ``outputs``, outputs first (iterative, no recursion).

    Var ids grow in creation order, so descending id is a reverse topological order.
    """
    seen: set[int] = set()
    nodes: list[Var] = []
    stack = [v for v in outputs if type(v) is Var and v.level == level]
    while stack:
        v = stack.pop()
        if v.id in seen:
            continue
        seen.add(v.id)
        nodes.append(v)
        for _, p in v.parents:
            if p.id not in seen:
                stack.append(p)
    nodes.sort(key=_by_id, reverse=True)
    return nodes


_by_id = operator.attrgetter("id")
