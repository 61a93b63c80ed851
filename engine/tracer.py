"""The tracer: boxes, trace levels, and the backward walk. It does no maths.

A transform (``grad``, ``jvp``...) opens a new trace level and boxes its
inputs: ``Var`` for reverse mode (records a node per op) and ``Dual`` for
forward mode (carries a tangent, records nothing). An op applied to boxes
unwraps the highest level, recurses on the values beneath (which may be boxes
of lower levels), and boxes the answer again. Nesting levels gives any order
of derivative; rules are written in engine ops, so they trace too.

A value that is not boxed is a constant: ops on constants record nothing
(PyTorch's ``requires_grad`` propagation).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.basis import Basis, dense
from engine.errors import TracedValueError

if TYPE_CHECKING:
    from engine.registry import Op

_ids = itertools.count()
_ndarray = np.ndarray  # a module global: one lookup, not np's attribute, on the hot paths
_levels = itertools.count(1)
# Optional observer of every op applied at the top (graph metadata, non-finite checks).
recorder: Any = None
# The open tapes: the Vars each reverse-mode level records, in creation order.
_tapes: dict[int, list[Var]] = {}
# the open tapes' memos of shared array nodes (see ``recording_tape``)
_memos: dict[int, dict[tuple[Any, ...], Var]] = {}
# the kwargs of every op called without any (operators): shared, nothing writes into it
_NO_KWARGS: dict[str, Any] = {}


def new_level() -> int:
    """A fresh trace level, higher than every level opened before."""
    return next(_levels)


class recording_tape:  # noqa: N801 (used as a context manager, like a function)
    """Record every Var made at ``level`` while the block runs, in creation order.

    Creation order is a topological order, so ``backward`` walks the tape in
    reverse instead of searching the graph. Vars made at ``level`` after the
    block (none are, in the transforms) would be missed, so a tape is closed only
    when the traced function has returned. (A class: a generator-based context
    manager costs 1 us per trace.)

    While the block runs the level also keeps a memo of the array ops that the
    operators applied: ``(op, node ids, constant)`` to the node made, so ``x ** 2``
    written twice on one array is one node (one pass forward, one rule backward; JAX's
    CSE does the same under jit). Keys hold ids, not boxes (a box's ``==`` is the
    traced ``equal``); the tape keeps those nodes, and so their ids, alive.
    """

    __slots__ = ("level", "tape")

    def __init__(self, level: int) -> None:
        self.level = level
        self.tape: list[Var] = []

    def __enter__(self) -> list[Var]:
        _tapes[self.level] = self.tape
        _memos[self.level] = {}
        return self.tape

    def __exit__(self, *exc: object) -> None:
        del _tapes[self.level], _memos[self.level]


class Box:
    """A traced value. ``value`` is the payload, maybe a box of a lower level."""

    __slots__ = ("value", "level")
    __array_priority__ = 100.0  # ndarray <op> Box defers to Box's reflected operator
    value: Any
    level: int

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.value.dtype

    @property
    def size(self) -> int:
        return self.value.size

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))  # type: ignore[index]

    def __bool__(self) -> bool:
        # a condition (``if x > 0``, ``while``) reads the value: the path taken has no
        # derivative, as in PyTorch; every other conversion below would lose the gradient
        return bool(self.value)

    # float(x), int(x), an index, np.asarray(x) or np.asarray([x, y]) would make a plain
    # number of a traced value, whose derivative would be lost without a word: they raise
    # instead (JAX does too). Ops take boxes, and a list of boxes given to an op is stacked.
    def __float__(self) -> float:
        raise _concrete("float()")

    def __int__(self) -> int:
        raise _concrete("int()")

    def __complex__(self) -> complex:
        raise _concrete("complex()")

    def __index__(self) -> int:
        raise _concrete("an integer index")

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise _concrete("a NumPy array (np.asarray or a NumPy function)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level}, {self.value!r})"


def _concrete(what: str) -> TracedValueError:
    return TracedValueError(
        f"a traced value cannot be converted to {what}: its derivative would be lost. "
        "Apply the engine's ops to it (stack(...) makes an array of several), or use "
        "detach(x) where a constant is meant"
    )


class Var(Box):
    """A reverse-mode node: its value, the op that made it, and its parents."""

    # ``items``: the nodes of ``self[i]`` for integers i, made on the first read (see
    # engine.numpy's ``__getitem__``); unset until then
    __slots__ = ("id", "op", "parents", "args", "kwargs", "items")

    def __init__(
        self,
        value: Any,
        level: int,
        op: Op | None = None,
        parents: tuple[tuple[int, Var], ...] = (),
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] = _NO_KWARGS,
    ) -> None:
        self.value = value
        self.level = level
        self.id = next(_ids)
        self.op = op
        self.parents = parents
        self.args = args
        self.kwargs = kwargs


class Dual(Box):
    """A forward-mode value: primal and tangent (the tangent may carry leading batch axes)."""

    __slots__ = ("tangent",)

    def __init__(self, value: Any, level: int, tangent: Any) -> None:
        self.value = value
        self.level = level
        self.tangent = tangent


def apply(op: Op, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Apply ``op`` to possibly boxed ``args``: the one entry point of all tracing.

    The common case, first-order reverse mode on one or two arguments (every box a
    Var over a raw value, all at one level), takes a short path: the general one
    below costs about 0.7 us more per op, which is most of a scalar op's time.
    """
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
    return _apply(op, args, kwargs)


def apply2(op: Op, x: Any, y: Any) -> Any:
    """``apply(op, (x, y), {})``, as the operators call it, with the first-order reverse
    mode cases written out: no tuples packed to dispatch, no call to record or tape (each
    layer is a tenth of a scalar op's time). On arrays, an op applied again to the same
    nodes (and Python-number constant) gives the node it gave before (see
    ``recording_tape``); not for a zero constant, since 0 == -0.0 but ``x * -0.0``
    and ``x * 0.0`` differ in the sign of their zeros."""
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
                        tape = _tapes.get(level)
                        if tape is not None:
                            tape.append(node)
                        return node
                elif not isinstance(y, Box):
                    if type(xv) is _ndarray and (type(y) is float or type(y) is int) and y:
                        return _shared(op, x.level, (op, x.id, 0, y, type(y)), ((0, x),), xv, y)
                    level = x.level
                    node = Var(op.impl(xv, y), level, op, ((0, x),), (xv, y))
                    tape = _tapes.get(level)
                    if tape is not None:
                        tape.append(node)
                    return node
        elif type(y) is Var:
            yv = y.value
            if not isinstance(x, Box) and not isinstance(yv, Box):
                if type(yv) is _ndarray and (type(x) is float or type(x) is int) and x:
                    return _shared(op, y.level, (op, y.id, 1, x, type(x)), ((1, y),), x, yv)
                level = y.level
                node = Var(op.impl(x, yv), level, op, ((1, y),), (x, yv))
                tape = _tapes.get(level)
                if tape is not None:
                    tape.append(node)
                return node
    return apply(op, (x, y), _NO_KWARGS)


def _shared(op: Op, level: int, key: tuple[Any, ...], parents: Any, xv: Any, yv: Any) -> Var:
    """The node of ``op(xv, yv)`` at ``level``: the open tape's for ``key``, or a new one."""
    memo = _memos.get(level)
    if memo is None:
        return Var(op.impl(xv, yv), level, op, parents, (xv, yv))
    node = memo.get(key)
    if node is None:
        node = memo[key] = Var(op.impl(xv, yv), level, op, parents, (xv, yv))
        _tapes[level].append(node)
    return node


def _record(
    op: Op, level: int, parents: tuple[tuple[int, Var], ...], vals: tuple[Any, ...], kwargs: Any
) -> Var:
    """Run ``op`` on raw values and record the result as a Var of ``level``."""
    ans = op.impl(*vals, **kwargs) if kwargs else op.impl(*vals)
    return _taped(Var(ans, level, op, parents, vals, kwargs))


def _taped(node: Var) -> Var:
    """``node``, appended to its level's tape when one is open."""
    tape = _tapes.get(node.level)
    if tape is not None:
        tape.append(node)
    return node


def _apply(op: Op, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``apply`` in general: any mix of levels, Vars and Duals, and boxes within boxes."""
    level = 0
    for a in args:
        if isinstance(a, Box) and a.level > level:
            level = a.level
    if level == 0:
        return op.impl(*args, **kwargs) if kwargs else op.impl(*args)
    if not op.differentiable:
        return op.impl(*[unbox_all(a) for a in args], **kwargs)
    vals = list(args)
    var_parents: list[tuple[int, Var]] = []
    duals = False
    lower = False  # a value beneath this level is itself a box (higher-order tracing)
    for i, a in enumerate(args):
        if isinstance(a, Box):
            if a.level == level:
                v = vals[i] = a.value
                if type(a) is Var:
                    var_parents.append((i, a))
                else:
                    duals = True
                if isinstance(v, Box):
                    lower = True
            else:
                lower = True
    if lower:
        ans = apply(op, tuple(vals), kwargs)
    else:
        ans = op.impl(*vals, **kwargs) if kwargs else op.impl(*vals)
    if not duals:
        return _taped(Var(ans, level, op, tuple(var_parents), tuple(vals), kwargs))
    tangents = [a.tangent if type(a) is Dual and a.level == level else None for a in args]
    if Basis in map(type, tangents):  # rows of an identity, pushed by a Jacobian or Hessian
        t = op.jvp_basis(tangents, ans, *vals, **kwargs) if op.jvp_basis is not None else None
        if t is None:  # the op has no shortcut for unit vectors here: it gets them dense
            t = op.jvp([dense(t) for t in tangents], ans, *vals, **kwargs)
    else:
        t = op.jvp(tangents, ans, *vals, **kwargs)
    return ans if t is None else Dual(ans, level, t)


def unbox(x: Any, level: int) -> Any:
    """The payload of ``x`` below ``level`` (``x`` itself if not boxed at that level)."""
    return x.value if isinstance(x, Box) and x.level == level else x


def unbox_all(x: Any) -> Any:
    """The raw NumPy value under every level of boxing."""
    while isinstance(x, Box):
        x = x.value
    return x


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


def _symmetric(node: Var) -> bool:
    test = node.op.symmetric  # type: ignore[union-attr]
    return test is not None and bool(test(*node.args))


_by_id = operator.attrgetter("id")


def backward(
    outputs: Sequence[Any],
    cotangents: Sequence[Any],
    leaves: Sequence[Var],
    level: int,
    on_node: Callable[[Var], None] | None = None,
    tape: Sequence[Var] | None = None,
) -> list[Any]:
    """Cotangents of ``leaves`` given cotangents of ``outputs``; None where no path exists.

    A cotangent may carry leading batch axes: every rule maps them through, so a
    whole stack of cotangents (a Jacobian's rows) goes back in one walk. With the
    level's ``tape`` the walk is the tape reversed; without it, a graph search.

    The walk owns a buffer when it made it (a rule's new array, or a sum): nothing
    else holds it. Cotangents that meet at a node are summed into an owned buffer in
    place, so a value used k times costs one new array, not k - 1 (an op's
    ``accumulate`` hook adds its cotangent straight into one); and a node with one
    traced argument whose cotangent is owned runs its op's in-place rule
    (``Op.vjps_into``: ``-g``, ``g * 2 * x``, ``g * exp(x)`` written into ``g``), so
    a chain of such ops makes no new array at all. Arrays the caller passed in, forward
    values and arrays that rules pass through are never written.
    """
    grads: dict[int, Any] = {}
    owned: set[int] = set()
    for out, g in zip(outputs, cotangents, strict=True):
        if type(out) is Var and out.level == level:
            grads[out.id] = g if out.id not in grads else grads[out.id] + g
    nodes = reversed(tape) if tape is not None else toposort(outputs, level)
    pop, get = grads.pop, grads.get
    for node in nodes:
        g = pop(node.id, None)
        if g is None:
            continue
        op = node.op
        if op is None:
            continue
        if on_node is not None:
            on_node(node)
        vjps = op.vjps
        ans = node.value
        args = node.args
        kwargs = node.kwargs
        parents = node.parents
        if len(parents) == 2 and parents[0][1] is parents[1][1] and _symmetric(node):
            parents, g = parents[:1], g * 2.0
        # no one else holds g (an array the walk made): a one-argument rule may write into it
        mine = type(g) is _ndarray and len(parents) == 1 and node.id in owned
        intos = op.vjps_into if mine else None
        accumulate = op.accumulate  # e.g. getitem's: g added at its index, no zeros
        for i, parent in parents:
            rule = vjps[i]
            if rule is None:  # no gradient flows through this argument
                continue
            pid = parent.id
            prev = get(pid)
            if prev is not None and accumulate is not None and pid in owned and _same_kind(prev, g):
                accumulate(prev, g, ans, *args, **kwargs)
                continue
            gi = None
            if intos is not None and intos[i] is not None:
                gi = intos[i](g, ans, *args, **kwargs)  # None: it does not apply here
            if gi is not None:  # written into g, which is still the walk's alone
                fresh = True
            else:
                if kwargs:
                    gi = rule(g, ans, *args, **kwargs)
                elif len(args) == 2:  # most ops: a direct call costs less than *args
                    gi = rule(g, ans, args[0], args[1])
                else:
                    gi = rule(g, ans, *args)
                fresh = type(gi) is _ndarray and (
                    op.fresh_vjp or (mine and gi is g) or _made_by_rule(gi, g, ans, args)
                )
            if prev is None:  # the first cotangent of this parent: most edges
                grads[pid] = gi
                if fresh:
                    owned.add(pid)
            elif pid in owned and _same_kind(prev, gi) and gi.shape == prev.shape:
                np.add(prev, gi, out=prev)
            elif fresh and _same_kind(gi, prev) and gi.shape == prev.shape:
                grads[pid] = np.add(gi, prev, out=gi)  # the sum goes into the new array
                owned.add(pid)
            else:
                total = grads[pid] = prev + gi
                if type(total) is _ndarray:
                    owned.add(pid)
    return [grads.get(leaf.id) for leaf in leaves]


_OWN_MIN_SIZE = 4096  # below this, finding out costs more than the writes it could save


def _made_by_rule(gi: Any, g: Any, ans: Any, args: Sequence[Any]) -> bool:
    """Whether the array ``gi`` that a rule returned is new: not the cotangent, the
    answer or an argument passed through, nor a view of anything, and writable.
    (Small arrays are not looked at: they count as not new.)"""
    if gi.size < _OWN_MIN_SIZE:
        return False
    if gi is g or gi is ans or gi.base is not None or not gi.flags.writeable:
        return False
    return all(gi is not a for a in args)


def _same_kind(buf: Any, g: Any) -> bool:
    """Whether ``g`` may be added into ``buf`` in place: both plain NumPy, one dtype."""
    return (
        type(buf) is _ndarray
        and (type(g) is _ndarray or isinstance(g, np.generic))
        and g.dtype == buf.dtype
    )
