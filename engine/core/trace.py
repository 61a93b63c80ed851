"""Tracing: boxes, trace levels, the open tapes and the one entry point ``apply``. No maths.

A transform (``grad``, ``jvp``...) opens a new trace level and boxes its inputs: ``Var``
for reverse mode (records a node per op) and ``Dual`` for forward mode (carries a
tangent, records nothing). An op applied to boxes unwraps the highest level, recurses on
the values beneath (which may be boxes of lower levels), and boxes the answer again.
Nesting levels gives any order of derivative; rules are written in engine ops, so they
trace too. A value that is not boxed is a constant: ops on constants record nothing
(PyTorch's ``requires_grad`` propagation).

The trace state (the open tapes, the graph recorder) lives in context variables, so
computations in several threads (or asyncio tasks) never share a tape or a recorder.
Levels and node ids come from process-wide counters: unique across threads, so a level
names one trace wherever it runs.

Two hooks let ``engine.fast`` plug in: ``dispatch`` (what ``Op.__call__`` calls; ``apply``
unless a short path is installed) and ``push_tangent`` (a forward rule's call; the op's
``jvp`` unless a symbolic-identity shortcut is installed).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from engine.errors import TracedValueError

if TYPE_CHECKING:
    from engine.registry import Op

_ids = itertools.count()
_levels = itertools.count(1)
# the kwargs of every op called without any (operators): shared, nothing writes into it
NO_KWARGS: dict[str, Any] = {}


def new_level() -> int:
    """A fresh trace level, higher than every level opened before (in any thread)."""
    return next(_levels)


# --- per-context state -------------------------------------------------------------------

# The open tapes of this context, by level. Copied on write (a tape opens or closes), so a
# context copied into another thread or task never sees the tapes opened after the copy.
_OPEN: ContextVar[dict[int, recording_tape]] = ContextVar("engine_open_tapes", default={})  # noqa: B039 (never written into: copied on write)
# The observer of every op applied at the top (graph metadata, non-finite checks), or None.
_RECORDER: ContextVar[Any] = ContextVar("engine_recorder", default=None)

open_tapes = _OPEN.get  # this context's open tapes: ``open_tapes().get(level)``
current_recorder = _RECORDER.get


def set_recorder(recorder: Any) -> Token[Any]:
    """Make ``recorder`` this context's recorder; give the token to ``reset_recorder``."""
    return _RECORDER.set(recorder)


def reset_recorder(token: Token[Any]) -> None:
    _RECORDER.reset(token)


class recording_tape:  # noqa: N801 (used as a context manager, like a function)
    """Record every Var made at ``level`` while the block runs, in creation order.

    Creation order is a topological order, so ``backward`` walks the tape in reverse
    instead of searching the graph. Vars made at ``level`` after the block (none are, in
    the transforms) would be missed, so a tape is closed only when the traced function
    has returned. (A class: a generator-based context manager costs more per trace.)
    ``memo`` is the fast layer's (``engine.fast.operators``): nodes it shares by key.
    """

    __slots__ = ("level", "tape", "memo", "_token")

    def __init__(self, level: int) -> None:
        self.level = level
        self.tape: list[Var] = []
        self.memo: dict[tuple[Any, ...], Var] = {}

    def __enter__(self) -> list[Var]:
        self._token = _OPEN.set({**_OPEN.get(), self.level: self})
        return self.tape

    def __exit__(self, *exc: object) -> None:
        _OPEN.reset(self._token)


# --- boxes ---------------------------------------------------------------------------------


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
    def dtype(self) -> Any:
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

    # ``items``: the fast layer's memo of ``self[i]`` for integers i (unset until used)
    __slots__ = ("id", "op", "parents", "args", "kwargs", "items")
    items: dict[int, Var]

    def __init__(
        self,
        value: Any,
        level: int,
        op: Op | None = None,
        parents: tuple[tuple[int, Var], ...] = (),
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] = NO_KWARGS,
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


def taped(node: Var) -> Var:
    """``node``, appended to its level's tape when one is open in this context."""
    rec = _OPEN.get().get(node.level)
    if rec is not None:
        rec.tape.append(node)
    return node


# --- the one entry point -------------------------------------------------------------------


def apply(op: Op, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Apply ``op`` to possibly boxed ``args``: any mix of levels, Vars and Duals, and boxes
    within boxes. The highest level is unboxed, the op applied to the values beneath
    (recursively, when they are boxes of lower levels), and the answer boxed again."""
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
        ans = dispatch(op, tuple(vals), kwargs)
    else:
        ans = op.impl(*vals, **kwargs) if kwargs else op.impl(*vals)
    if not duals:
        return taped(Var(ans, level, op, tuple(var_parents), tuple(vals), kwargs))
    tangents = [a.tangent if type(a) is Dual and a.level == level else None for a in args]
    t = push_tangent(op, tangents, ans, vals, kwargs)
    return ans if t is None else Dual(ans, level, t)


def _jvp(op: Op, tangents: list[Any], ans: Any, vals: list[Any], kwargs: dict[str, Any]) -> Any:
    """The op's forward rule: its answer's tangent, or None (a symbolic zero)."""
    return op.jvp(tangents, ans, *vals, **kwargs)


# The plug-in points (``engine.fast`` sets them; ``engine.fast.set_enabled(False)`` resets).
dispatch: Callable[[Op, tuple[Any, ...], dict[str, Any]], Any] = apply
push_tangent: Callable[..., Any] = _jvp


def unbox(x: Any, level: int) -> Any:
    """The payload of ``x`` below ``level`` (``x`` itself if not boxed at that level)."""
    return x.value if isinstance(x, Box) and x.level == level else x


def unbox_all(x: Any) -> Any:
    """The raw NumPy value under every level of boxing."""
    while isinstance(x, Box):
        x = x.value
    return x
