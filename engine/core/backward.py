"""The backward walk: the tape reversed, each node's cotangent sent to its parents.

A cotangent may carry leading batch axes: every rule maps them through, so a whole stack
of cotangents (a Jacobian's rows) goes back in one walk. With the level's tape the walk
is the tape reversed (creation order is a topological order); without it, an iterative
graph search. How a node's cotangent reaches its parents and is summed there is one hook,
``new_walk``: here the rules and ``+``; ``engine.fast.inplace`` plugs in sums into owned
buffers and in-place rules.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from engine.core.trace import Var

Send = Callable[[Var, Any, dict[int, Any]], None]


def send(node: Var, g: Any, grads: dict[int, Any]) -> None:
    """Each traced parent's cotangent by its rule, added to what the parent has."""
    vjps, ans, args, kwargs = node.op.vjps, node.value, node.args, node.kwargs  # type: ignore[union-attr]
    for i, parent in node.parents:
        rule = vjps[i]
        if rule is not None:  # None: no gradient flows through this argument
            gi = rule(g, ans, *args, **kwargs)
            prev = grads.get(parent.id)
            grads[parent.id] = gi if prev is None else prev + gi


def _plain_walk() -> Send:
    return send


# The plug-in point: makes the sender of one walk (which may keep state for that walk).
new_walk: Callable[[], Send] = _plain_walk


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
    to_parents = new_walk()
    for node in reversed(tape) if tape is not None else toposort(outputs, level):
        g = grads.pop(node.id, None)
        if g is None or node.op is None:
            continue
        if on_node is not None:
            on_node(node)
        to_parents(node, g, grads)
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
