"""JSON graphs to IR: validated (ids, references, cycles, ops, arity), then the same IR as text.

A node ``{"id", "op", "inputs", "attrs"}`` becomes ``%id = op(inputs..., **attrs)``;
the outputs become a ``return``. Every algorithm here is iterative.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from engine.errors import LanguageError, SizeLimitError
from engine.lang import bind, forms
from engine.lang.ir import (
    Arg,
    Assign,
    Call,
    Const,
    Ellip,
    Index,
    KwArg,
    Name,
    Num,
    Return,
    Seq,
    Slice,
    Str,
)
from engine.lang.limits import Limits
from engine.lang.parse import CONSTANTS
from engine.lang.program import Program
from engine.locations import loc_dict
from engine.registry import ARRAY, ARRAYS, STATIC, VARARGS, Op

_FIELDS = {"id", "op", "inputs", "attrs"}
_MAX_ID = 200
# JSON has no NaN or infinity: where a number is expected (attrs, literal inputs, nested
# lists) these strings are the numbers, as in request inputs; no other string is a number.
# As a whole input they are numbers too, never names ("inf" is also the constant inf).
NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def compile_graph(graph: Any, limits: Limits | None = None) -> Program:
    """Validate a JSON graph and compile it to a Program; errors name the offending node."""
    limits = limits or Limits()
    nodes, outputs = _structure(graph, limits)
    by_id = _index(nodes)
    deps = {nid: _refs(node, by_id) for nid, node in by_id.items()}
    order = _toposort(list(by_id), deps)
    builder = _GraphBuilder(by_id, limits)
    calls = {nid: builder.node(by_id[nid]) for nid in order}
    live = _reachable([o for o in outputs if o in by_id], deps)
    body: list[Any] = [Assign((_var(nid),), calls[nid], nid) for nid in order if nid in live]
    values = tuple(builder.ref(o, "outputs") for o in outputs)
    body.append(Return(values, len(values) > 1, "outputs"))
    free = _free_names([nid for nid in order if nid in live], outputs, by_id)
    return Program(
        body=tuple(body),
        free_names=tuple(free),
        free_locs=tuple(free.values()),
        has_loops=False,
        num_ops=sum(1 for nid in live if isinstance(calls[nid], Call | Index)),
        kind="graph",
        limits=limits,
    )


def _error(msg: str, node: str | None = None) -> LanguageError:
    return LanguageError(msg, loc=loc_dict(node))


def _var(nid: str) -> str:
    return "%" + nid  # can never clash with an input name, which is an identifier


def _structure(graph: Any, limits: Limits) -> tuple[list[dict[str, Any]], list[str]]:
    """Top-level shape checks, the node-count limit first of all."""
    if not isinstance(graph, dict):
        raise _error("a graph is an object with 'nodes' and 'outputs'")
    nodes, outputs = graph.get("nodes"), graph.get("outputs")
    if not isinstance(nodes, list):
        raise _error("the graph's 'nodes' must be a list")
    if len(nodes) > limits.max_graph_nodes:
        msg = f"the graph has {len(nodes)} nodes, over the limit of {limits.max_graph_nodes}"
        raise SizeLimitError(msg)
    unknown = set(graph) - {"nodes", "outputs"}
    if unknown:
        raise _error(f"unknown graph field(s) {sorted(unknown)}: a graph has 'nodes' and 'outputs'")
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
        raise _error("the graph's 'outputs' must be a non-empty list of node ids or input names")
    return nodes, outputs


def _index(nodes: list[Any]) -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise _error(f"node #{i} is not an object with 'id', 'op', 'inputs' and 'attrs'")
        nid = node.get("id")
        if not isinstance(nid, str) or not nid or len(nid) > _MAX_ID:
            msg = f"node #{i}: 'id' must be a non-empty string of at most {_MAX_ID} characters"
            raise _error(msg)
        extra = set(node) - _FIELDS
        if extra:
            msg = (
                f"node {nid!r} has unknown field(s) {sorted(extra)}; fields: id, op, inputs, attrs"
            )
            raise _error(msg, nid)
        if not isinstance(node.get("op"), str):
            raise _error(f"node {nid!r}: 'op' must be a string naming an op", nid)
        if not isinstance(node.get("inputs", []), list):
            raise _error(f"node {nid!r}: 'inputs' must be a list", nid)
        if not isinstance(node.get("attrs", {}), dict):
            raise _error(f"node {nid!r}: 'attrs' must be an object of keyword arguments", nid)
        if nid in by_id:
            raise _error(f"duplicate node id {nid!r}", nid)
        by_id[nid] = node
    return by_id


def _input_names(node: dict[str, Any]) -> list[str]:
    """Every string reference of a node: its inputs, and names inside a getitem index."""
    refs = [x for x in node.get("inputs", []) if isinstance(x, str)]
    if node.get("op") == "getitem":
        index = node.get("attrs", {}).get("index")
        if isinstance(index, list):
            refs += [x for x in index if isinstance(x, str) and x != "..."]
    return refs


def _refs(node: dict[str, Any], by_id: dict[str, Any]) -> list[str]:
    nid = node["id"]
    out = []
    seen: set[str] = set()  # not `ref in out`: a node with k inputs would take k^2 steps
    for ref in _input_names(node):
        if ref == nid:
            raise _error(f"node {nid!r} takes itself as an input", nid)
        if ref in by_id and ref not in seen:
            seen.add(ref)
            out.append(ref)
    return out


def _toposort(ids: list[str], deps: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm, ties broken by position in the node list; a cycle is named."""
    position = {nid: i for i, nid in enumerate(ids)}
    waiting = {nid: len(deps[nid]) for nid in ids}
    users: dict[str, list[str]] = {nid: [] for nid in ids}
    for nid in ids:
        for d in deps[nid]:
            users[d].append(nid)
    ready = [position[nid] for nid in ids if waiting[nid] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        nid = ids[heapq.heappop(ready)]
        order.append(nid)
        for user in users[nid]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, position[user])
    if len(order) < len(ids):
        raise _cycle_error({nid for nid in ids if waiting[nid] > 0}, deps, ids)
    return order


def _cycle_error(stuck: set[str], deps: dict[str, list[str]], ids: list[str]) -> LanguageError:
    """Every stuck node waits on another stuck node, so walking back finds a cycle."""
    nid = next(n for n in ids if n in stuck)
    path: list[str] = []
    seen: dict[str, int] = {}
    while nid not in seen:
        seen[nid] = len(path)
        path.append(nid)
        nid = next(d for d in deps[nid] if d in stuck)
    cycle = path[seen[nid] :] + [nid]
    text = " -> ".join(repr(n) for n in reversed(cycle))
    return _error(f"the graph has a cycle: {text}", cycle[0])


def _free_names(live: list[str], outputs: list[str], by_id: dict[str, Any]) -> dict[str, str]:
    """Input names read by live nodes (or returned directly) -> the first node reading them."""
    free: dict[str, str] = {}
    for nid in live:
        for ref in _input_names(by_id[nid]):
            if ref not in by_id and ref not in CONSTANTS and ref not in NONFINITE:
                free.setdefault(ref, nid)
    for ref in outputs:
        if ref not in by_id and ref not in CONSTANTS and ref not in NONFINITE:
            free.setdefault(ref, "outputs")
    return free


def _reachable(outputs: list[str], deps: dict[str, list[str]]) -> set[str]:
    live: set[str] = set()
    stack = list(outputs)
    while stack:
        nid = stack.pop()
        if nid not in live:
            live.add(nid)
            stack.extend(deps[nid])
    return live


class _GraphBuilder:
    def __init__(self, by_id: dict[str, dict[str, Any]], limits: Limits) -> None:
        self.by_id = by_id
        self.limits = limits

    def ref(self, ref: str, nid: str) -> Any:
        if ref in self.by_id:
            return Name(_var(ref), nid)
        if ref in CONSTANTS:
            return Const(ref, CONSTANTS[ref], nid)
        if ref in NONFINITE:
            return Num(NONFINITE[ref], None, nid)
        if not (ref.isascii() and ref.isidentifier()) or ref.startswith("_"):
            msg = f"node {nid!r}: {ref!r} is neither a node id nor a valid input name"
            raise _error(msg, nid)
        return Name(ref, nid)

    def node(self, node: dict[str, Any]) -> Any:
        nid, name = node["id"], node["op"]
        inputs, attrs = node.get("inputs", []), node.get("attrs", {})
        name = self.op_name(name, nid, inputs, attrs)
        if name == "getitem":
            return self.getitem(nid, inputs, attrs)
        op = bind.lookup_op(name, nid)
        filled: dict[str, Any] = {}
        for key, value in attrs.items():
            bind.add_keyword(op, filled, key, ("attr", value), nid)
        extra = self.fill_inputs(op, nid, inputs, filled)
        args, kwargs = bind.canonical(op, filled, extra, nid)
        # strings only for the static options an op declares as words (forms.string_param):
        # einsum's subscripts are any text; norm's ord is one of a few words or a number
        names = {id(a): n for n, a in filled.items()}
        return Call(
            op.name,
            tuple(
                Arg(k, self.arg(k, a, nid, forms.string_param(op, names.get(id(a)))))
                for k, a in args
            ),
            tuple(
                KwArg(n, k, self.arg(k, a, nid, forms.string_param(op, n))) for n, k, a in kwargs
            ),
            nid,
        )

    def op_name(self, name: str, nid: str, inputs: list[Any], attrs: dict[str, Any]) -> str:
        """The op a node names: an allowed module prefix is dropped (``"np.sum"``), and
        ``where`` with one input and no attrs is ``nonzero``, as in NumPy."""
        bare = forms.strip_prefix(name)
        if bare is None:
            msg = f"node {nid!r}: {name!r} has a module prefix the language does not know"
            raise LanguageError(msg + " (np., scipy.special., linalg., ...)", loc=loc_dict(nid))
        if bare == "getitem" and name != "getitem":  # not a NumPy name: indexing is "getitem"
            bind.lookup_op(name, nid)
        if bare == "where" and len(inputs) == 1 and not attrs:
            return "nonzero"
        return bare

    def fill_inputs(self, op: Op, nid: str, inputs: list[Any], filled: dict[str, Any]) -> list[Any]:
        """Inputs fill the array parameters not given in attrs, in order; leftovers are an error."""
        todo = [p for p in op.params if p.kind != STATIC and p.name not in filled]
        rest = list(inputs)
        extra: list[Any] = []
        for i, p in enumerate(todo):
            if not rest:
                break
            if p.kind == ARRAY:
                filled[p.name] = ("in", rest.pop(0))
            elif p.kind == ARRAYS:
                take = len(rest) - sum(1 for q in todo[i + 1 :] if q.kind == ARRAY)
                filled[p.name] = ("seq", rest[:take])
                rest = rest[take:]
            elif p.kind == VARARGS:
                extra, rest = [("in", x) for x in rest], []
        if rest:
            static = [p.name for p in op.params if p.kind == STATIC]
            hint = f" (static parameters go in attrs: {', '.join(static)})" if static else ""
            msg = f"node {nid!r}: {op.name} got {len(inputs)} inputs, too many{hint}"
            msg += f"; signature: {op.signature}"
            raise LanguageError(msg, op=op.name, loc=loc_dict(nid))
        return extra

    def arg(self, kind: str, tagged: tuple[str, Any], nid: str, str_ok: bool | str) -> Any:
        tag, value = tagged
        if tag == "in":
            return self.input(value, nid)
        if tag == "seq":
            return Seq(tuple(self.input(v, nid) for v in value), nid)
        return self.literal(value, nid, static=kind == STATIC, str_ok=str_ok)

    def input(self, value: Any, nid: str) -> Any:
        if isinstance(value, str):
            return self.ref(value, nid)
        return self.literal(value, nid, static=False, str_ok=False)

    def literal(self, value: Any, nid: str, *, static: bool, str_ok: bool | str) -> Any:
        """A JSON literal as IR; its depth is checked iteratively before the (bounded) recursion."""
        stack: list[tuple[Any, int]] = [(value, 0)]
        while stack:
            v, depth = stack.pop()
            if depth > self.limits.max_depth:
                msg = f"node {nid!r}: a literal nested deeper than {self.limits.max_depth}"
                raise _error(msg, nid)
            if isinstance(v, list):
                stack.extend((x, depth + 1) for x in v)
        return self._literal(value, nid, static, str_ok)

    def _literal(self, value: Any, nid: str, static: bool, str_ok: bool | str) -> Any:
        if isinstance(value, list):
            return Seq(tuple(self._literal(v, nid, static, str_ok) for v in value), nid)
        return self.scalar(value, nid, static=static, str_ok=str_ok)

    def scalar(self, v: Any, nid: str, *, static: bool, str_ok: bool | str) -> Any:
        if isinstance(v, bool) and static:
            return Const(str(v), v, nid)
        if isinstance(v, int) and not isinstance(v, bool):
            return Num(float(v), v if abs(v) < 2**63 else None, nid)
        if isinstance(v, float):
            return Num(v, None, nid)
        if v is None and static:
            return Const("None", None, nid)
        # "inf" is a number even where a string may stand (norm's ord: 'fro', 'nuc'), except
        # where every string is text (einsum's subscripts)
        if isinstance(v, str) and v in NONFINITE and str_ok != "text":
            return Num(NONFINITE[v], None, nid)
        if isinstance(v, str) and str_ok:
            return Str(v, nid)
        msg = (
            f"node {nid!r}: {v!r} is not allowed here (numbers, lists of numbers, names; "
            'non-finite numbers as "nan", "inf", "-inf")'
        )
        raise _error(msg, nid)

    def getitem(self, nid: str, inputs: list[Any], attrs: dict[str, Any]) -> Index:
        index = attrs.get("index")
        if len(inputs) != 1 or set(attrs) != {"index"} or not isinstance(index, list):
            msg = f"node {nid!r}: getitem takes one input and attrs {{'index': [...]}} (see README)"
            raise LanguageError(msg, op="getitem", loc=loc_dict(nid))
        return Index(self.input(inputs[0], nid), tuple(self.index_item(i, nid) for i in index), nid)

    def index_item(self, item: Any, nid: str) -> Any:
        if item == "...":
            return Ellip(nid)
        if isinstance(item, str):
            return self.ref(item, nid)
        if isinstance(item, dict):
            parts = item.get("slice")
            if set(item) != {"slice"} or not isinstance(parts, list) or len(parts) > 3:
                raise _error(f"node {nid!r}: a slice is {{'slice': [start, stop, step]}}", nid)
            parts = list(parts) + [None] * (3 - len(parts))
            lo, hi, step = (self.slice_bound(p, nid) for p in parts)
            return Slice(lo, hi, step, nid)
        return self.literal(item, nid, static=True, str_ok=False)

    def slice_bound(self, p: Any, nid: str) -> Any:
        return None if p is None else self.literal(p, nid, static=True, str_ok=False)
