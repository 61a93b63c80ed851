"""Graph metadata for a traced function, and where non-finite values first arose.

``Recorder`` observes every op applied by user code while it is active (the
ops that rules apply inside an op are not user nodes and are not recorded):

    with Recorder(max_nodes=1000) as rec:
        rec.leaf("x", x_boxed, requires_grad=True)
        out = f(x_boxed)
    rec.metadata([out])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import tracer
from engine.registry import Op, shape_of
from engine.tracer import Box, unbox_all

_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(x: Any) -> str:
    dtype = getattr(unbox_all(x), "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


class Recorder:
    """Collects one metadata node per op call, with exact counts and a capped node list."""

    def __init__(self, max_nodes: int = 1000, check_finite: bool = False) -> None:
        self.max_nodes = max_nodes
        self.check_finite = check_finite
        self.loc: Any = None  # set by the interpreter: where the next op call comes from
        self._rows: list[tuple[Any, ...]] = []
        self.nonfinite: list[dict[str, Any]] = []
        self.num_nodes = 0
        self.num_edges = 0
        self._ids: dict[int, str] = {}
        self._depth: dict[str, int] = {}
        self._alive: list[Any] = []  # keeps unlisted values alive so their id() stays unique
        self._counter = 0
        self._previous: Any = None

    def __enter__(self) -> Recorder:
        self._previous = tracer.recorder
        tracer.recorder = self
        return self

    def __exit__(self, *exc: Any) -> None:
        tracer.recorder = self._previous

    def leaf(self, name: str, value: Any, requires_grad: bool) -> None:
        """Register an input of the function under its name."""
        self._add(name, "input", [], value, requires_grad, is_leaf=True, grad_fn=None)

    def record(self, op: Op, args: tuple[Any, ...], kwargs: dict[str, Any], ans: Any) -> None:
        """Called by ``Op.__call__`` after an op ran."""
        inputs = []
        for a in args:
            if isinstance(a, Box | np.ndarray):
                node = self._ids.get(id(a))
                if node is None:
                    node = self._constant(a)
                inputs.append(node)
        requires_grad = isinstance(ans, Box)
        node_id = f"{op.name}_{self._counter}"
        self._counter += 1
        grad_fn = f"{op.name}_backward" if requires_grad else None
        self._add(node_id, op.name, inputs, ans, requires_grad, is_leaf=False, grad_fn=grad_fn)
        if self.check_finite and not self.nonfinite:
            raw = np.asarray(unbox_all(ans))
            if raw.dtype.kind == "f" and not np.isfinite(raw).all():
                self.nonfinite.append({"node": node_id, "op": op.name, "loc": self.loc})

    def _constant(self, value: Any) -> str:
        node_id = f"constant_{self._counter}"
        self._counter += 1
        self._add(node_id, "constant", [], value, False, is_leaf=True, grad_fn=None)
        return node_id

    def _add(
        self,
        node_id: str,
        op: str,
        inputs: list[str],
        value: Any,
        requires_grad: bool,
        is_leaf: bool,
        grad_fn: str | None,
    ) -> None:
        # Cheap while tracing: keep a row; the metadata dicts are built once, at the end.
        self._ids[id(value)] = node_id
        depth = -1
        for i in inputs:
            d = self._depth[i]
            if d > depth:
                depth = d
        self._depth[node_id] = depth + 1
        self.num_nodes += 1
        self.num_edges += len(inputs)
        if len(self._rows) < self.max_nodes:
            self._rows.append((node_id, op, inputs, value, requires_grad, is_leaf, grad_fn))
        else:
            self._alive.append(value)

    @property
    def nodes(self) -> list[dict[str, Any]]:
        """The recorded nodes (at most ``max_nodes``) as the API describes them."""
        return [
            {
                "id": node_id,
                "op": op,
                "inputs": inputs,
                "shape": list(shape_of(value)),
                "dtype": _dtype_name(value),
                "requires_grad": requires_grad,
                "is_leaf": is_leaf,
                "grad_fn": grad_fn,
            }
            for node_id, op, inputs, value, requires_grad, is_leaf, grad_fn in self._rows
        ]

    def node_id(self, value: Any) -> str | None:
        """The id of the node that produced ``value`` (None if it was not recorded)."""
        return self._ids.get(id(value))

    def metadata(self, outputs: list[Any]) -> dict[str, Any]:
        """The graph as the API describes it: nodes, outputs, counts, depth, truncation."""
        outs = [self._ids.get(id(o)) or self._constant(o) for o in outputs]
        return {
            "nodes": self.nodes,
            "outputs": outs,
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "depth": max(self._depth.values(), default=0),
            "truncated": self.num_nodes > len(self._rows),
        }
