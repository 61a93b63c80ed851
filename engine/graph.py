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

from engine.core import trace
from engine.core.trace import Box, unbox_all
from engine.locations import loc_dict
from engine.registry import Op, shape_of

_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(x: Any) -> str:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


class Recorder:
    """Collects one metadata node per op call, with exact counts and a capped node list.

    Tracing only appends to a log (an op call costs one tuple); names, edges,
    depth and the node dicts are worked out once, when they are asked for. The
    log holds every value it names, so ``id()`` stays unique while it lives.
    """

    def __init__(self, max_nodes: int = 1000, check_finite: bool = False) -> None:
        self.max_nodes = max_nodes
        self.check_finite = check_finite
        # where the next op call comes from, set by the interpreter: (line, column) or a
        # graph node id, made JSON only if it is reported
        self.loc: Any = None
        self._log: list[tuple[Any, ...]] = []  # (op, args, ans, loc) or (name, None, value, rg)
        self._first_bad: int | None = None  # log index of the first non-finite result
        self._built: _Graph | None = None
        self._token: Any = None

    def __enter__(self) -> Recorder:
        self._token = trace.set_recorder(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        trace.reset_recorder(self._token)

    def leaf(self, name: str, value: Any, requires_grad: bool) -> None:
        """Register an input of the function under its name."""
        self._log.append((name, None, value, requires_grad))

    def record(self, op: Op, args: tuple[Any, ...], kwargs: dict[str, Any], ans: Any) -> None:
        """Called by ``Op.__call__`` after an op ran."""
        self._log.append((op, args, ans, self.loc))
        if self.check_finite and self._first_bad is None:
            raw = np.asarray(unbox_all(ans))
            if raw.dtype.kind == "f" and not np.isfinite(raw).all():
                self._first_bad = len(self._log) - 1

    @property
    def started(self) -> bool:
        """Whether anything was recorded yet (cheap: builds nothing)."""
        return bool(self._log)

    @property
    def num_nodes(self) -> int:
        """Nodes so far: inputs, op results and the constants they read."""
        return self._graph().num_nodes

    @property
    def nonfinite(self) -> list[dict[str, Any]]:
        """With ``check_finite``: the first op whose result holds a NaN or an infinity."""
        if self._first_bad is None:
            return []
        op, _, _, loc = self._log[self._first_bad]
        node = self._graph().op_ids[self._first_bad]
        return [{"node": node, "op": op.name, "loc": loc_dict(loc)}]

    @property
    def nodes(self) -> list[dict[str, Any]]:
        """The recorded nodes (at most ``max_nodes``) as the API describes them."""
        return self._graph().rows

    def node_id(self, value: Any) -> str | None:
        """The id of the node that produced ``value`` (None if it was not recorded)."""
        return self._graph().ids.get(id(value))

    def metadata(self, outputs: list[Any]) -> dict[str, Any]:
        """The graph as the API describes it: nodes, outputs, counts, depth, truncation."""
        graph = self._graph()
        outs = []
        for o in outputs:
            node = graph.ids.get(id(o))
            if node is None:  # an output that no op made: a constant node of its own
                self._log.append((None, None, o, False))
                graph = self._graph()
                node = graph.ids[id(o)]
            outs.append(node)
        return {
            "nodes": self.nodes,
            "outputs": outs,
            "num_nodes": graph.num_nodes,
            "num_edges": graph.num_edges,
            "depth": graph.depth,
            "truncated": graph.num_nodes > len(graph.rows),
        }

    def _graph(self) -> _Graph:
        built = self._built
        if built is None or built.logged != len(self._log):
            built = self._built = _Graph(self._log, self.max_nodes)
        return built


_NODE_TYPES = (Box, np.ndarray)  # what an op reads that is a node (numbers are attributes)


def _row(
    node_id: str, op: str, inputs: list[str], value: Any, requires_grad: bool, is_leaf: bool
) -> dict[str, Any]:
    """One node as the API describes it."""
    raw = value
    while isinstance(raw, Box):
        raw = raw.value
    kind = type(raw)
    if kind is np.float64:  # a scalar (x[0], a loss): the most common node of small graphs
        shape, dtype = [], "float64"
    else:
        shape = list(getattr(raw, "shape", None) or shape_of(raw))
        dtype = _dtype_name(raw)
    return {
        "id": node_id,
        "op": op,
        "inputs": inputs,
        "shape": shape,
        "dtype": dtype,
        "requires_grad": requires_grad,
        "is_leaf": is_leaf,
        "grad_fn": f"{op}_backward" if requires_grad and not is_leaf else None,
    }


class _Graph:
    """The log worked out: node ids, the first ``max_nodes`` rows, counts and depth."""

    def __init__(self, log: list[tuple[Any, ...]], max_nodes: int) -> None:
        self.logged = len(log)
        self.ids: dict[int, str] = {}
        self.op_ids: dict[int, str] = {}  # log index -> node id, for op calls
        self.rows: list[dict[str, Any]] = []
        depths: dict[str, int] = {}
        # PyTorch's requires_grad propagation: an input that requires grad, or a
        # differentiable op on some node that does. (Not "the value is a box": forward mode
        # leaves an op with a zero tangent, sign(x), unboxed, and the graph is the same.)
        grads: dict[str, bool] = {}
        ids, rows, op_ids = self.ids, self.rows, self.op_ids
        num_nodes = num_edges = max_depth = counter = 0
        for k, (head, args, value, extra) in enumerate(log):
            inputs: list[str] = []
            depth = 0
            if args is None:  # an input (head: its name) or an output no op made (head: None)
                if head is None:
                    node_id, op, requires_grad = f"constant_{counter}", "constant", False
                    counter += 1
                else:
                    node_id, op, requires_grad = head, "input", extra
            else:
                for a in args:
                    if isinstance(a, _NODE_TYPES):
                        node = ids.get(id(a))
                        if node is None:  # a constant array: a leaf node of its own
                            node = ids[id(a)] = f"constant_{counter}"
                            counter += 1
                            depths[node] = 0
                            grads[node] = False
                            num_nodes += 1
                            if len(rows) < max_nodes:
                                rows.append(_row(node, "constant", [], a, False, True))
                        else:
                            d = depths[node]
                            if d >= depth:
                                depth = d + 1
                        inputs.append(node)
                op = head.name
                node_id = op_ids[k] = f"{op}_{counter}"
                counter += 1
                requires_grad = isinstance(value, Box) or (
                    head.differentiable and any(grads[i] for i in inputs)
                )
                if inputs and depth == 0:
                    depth = 1
            ids[id(value)] = node_id
            depths[node_id] = depth
            grads[node_id] = requires_grad
            if depth > max_depth:
                max_depth = depth
            num_nodes += 1
            num_edges += len(inputs)
            if len(rows) < max_nodes:
                rows.append(_row(node_id, op, inputs, value, requires_grad, args is None))
        self.num_nodes, self.num_edges, self.depth = num_nodes, num_edges, max_depth
