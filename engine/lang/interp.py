"""The interpreter: runs IR define-by-run on engine ops, under iteration and size limits.

Values are NumPy arrays, engine boxes (treated opaquely) and Python numbers
(literals and loop counters). Numbers become floats when they meet an op, so
``9**9**9`` is ``inf`` rather than a big-integer hang; they stay integers
where integers are needed (indices, shapes, axes, ``range``), and integer
arithmetic there is bounded too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import registry
from engine.core import trace
from engine.errors import (
    AutodiffError,
    IterationLimitError,
    LanguageError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
)
from engine.lang.ir import (
    Assign,
    Attr,
    BoolOp,
    Builtin,
    Call,
    Const,
    Ellip,
    For,
    If,
    IfExp,
    Index,
    Name,
    Not,
    Num,
    Receiver,
    Return,
    Seq,
    Slice,
    Str,
    While,
)
from engine.lang.static import ARITH, arith, index_array, to_static
from engine.locations import Loc, loc_dict, loc_text
from engine.registry import ARRAY, ARRAYS, STATIC, shape_of
from engine.shapes import check_size

if TYPE_CHECKING:
    from engine.lang.program import Program

_NUMBER = (int, float, bool)


class _Returned:
    """What ``return`` hands back up through the enclosing blocks."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_BASIC_INDEX = frozenset({int, slice, type(None), type(Ellipsis)})


class _Spliced:
    """Index items that one index expression gave (a tuple of index arrays)."""

    __slots__ = ("items",)

    def __init__(self, items: tuple[Any, ...]) -> None:
        self.items = items


class Interpreter:
    """One run of a Program over the values in ``env``."""

    def __init__(
        self, program: Program, env: dict[str, Any], max_iterations: int, max_elements: int
    ) -> None:
        self.program = program
        self.vars: dict[str, Any] = dict(env)
        self.max_iterations = max_iterations
        self.max_elements = max_elements
        self.iterations = 0

    def run(self) -> Any:
        """Execute the program; its output, or a tuple of outputs."""
        for name, loc in zip(self.program.free_names, self.program.free_locs, strict=True):
            if name not in self.vars:
                hint = (
                    f"; {name!r} is an op: call it as {name}(...)" if name in registry.OPS else ""
                )
                msg = f"no input named {name!r} (read at {loc_text(loc)}){hint}"
                raise UnknownNameError(msg, loc=loc_dict(loc))
        try:
            out = self.block(self.program.body)
        except RecursionError:
            raise LanguageError("the function nests too deeply to run") from None
        if out is None:
            raise LanguageError("the program ended without reaching a return statement")
        return out.value

    # --- statements -----------------------------------------------------------------

    def block(self, stmts: tuple[Any, ...]) -> _Returned | None:
        for s in stmts:
            out: _Returned | None = _EXEC[type(s)](self, s)
            if out is not None:
                return out
        return None

    def assign(self, node: Assign) -> None:
        if type(node.value) is Seq and all(isinstance(t, tuple) for t in node.targets):
            # a, b = b, a: every right-hand value first, then the bindings, as in Python
            value: Any = tuple(self.value(e) for e in node.value.items)
        else:
            value = self.value(node.value)
        for target in node.targets:
            self.bind(target, value, node.loc)

    def bind(self, target: Any, value: Any, loc: Loc) -> None:
        if isinstance(target, str):
            self.vars[target] = value
            return
        for t, v in zip(target, self.unpack(value, len(target), loc), strict=True):
            self.bind(t, v, loc)

    def unpack(self, value: Any, n: int, loc: Loc) -> list[Any]:
        if isinstance(value, tuple | list):
            items = list(value)
        else:
            shape = self.shape_of(value)
            count = shape[0] if shape else 0
            if count != n:
                msg = f"cannot unpack a value of shape {shape} into {n} names at {loc_text(loc)}"
                raise ShapeError(msg, shapes=[shape], loc=loc_dict(loc))
            return [self.apply("getitem", [value, (i,)], {}, loc) for i in range(n)]
        if len(items) != n:
            msg = f"cannot unpack {len(items)} values into {n} names at {loc_text(loc)}"
            raise LanguageError(msg, loc=loc_dict(loc))
        return items

    def if_(self, node: If) -> _Returned | None:
        return self.block(node.body if self.cond(node.test, node.loc) else node.orelse)

    def while_(self, node: While) -> _Returned | None:
        while self.cond(node.test, node.loc):
            self.tick(node.loc)
            out = self.block(node.body)
            if out is not None:
                return out
        return None

    def for_(self, node: For) -> _Returned | None:
        bounds = [self.integer(a, "range()") for a in node.args]
        if len(bounds) == 3 and bounds[2] == 0:
            msg = f"range() step is zero at {loc_text(node.loc)}"
            raise LanguageError(msg, loc=loc_dict(node.loc))
        for i in range(*bounds):
            self.tick(node.loc)
            self.vars[node.var] = i
            done = self.block(node.body)
            if done is not None:
                return done
        return None

    def tick(self, loc: Loc) -> None:
        self.iterations += 1
        if self.iterations > self.max_iterations:
            msg = (
                f"the loop at line {_line(loc)} ran past the limit of {self.max_iterations} "
                "iterations (counted over all loops of the run)"
            )
            raise IterationLimitError(msg, loc=loc_dict(loc))

    def return_(self, node: Return) -> _Returned:
        outs = tuple(_output(self.value(v)) for v in node.values)
        return _Returned(outs if node.several else outs[0])

    def cond(self, node: Any, loc: Loc) -> bool:
        """A condition: ``and``/``or``/``not`` short-circuit; the rest must be a scalar."""
        kind = type(node)
        if kind is BoolOp:
            if node.op == "and":
                return all(self.cond(v, loc) for v in node.values)
            return any(self.cond(v, loc) for v in node.values)
        if kind is Not:
            return not self.cond(node.operand, loc)
        raw = self.truth_value(self.value(node), loc)
        if isinstance(raw, _NUMBER):
            return bool(raw)
        arr = np.asarray(raw)
        if arr.size != 1:
            msg = (
                f"the condition at line {_line(loc)} is not a scalar: it has shape {arr.shape}; "
                "reduce it first, e.g. with sum(...), max(...) or min(...)"
            )
            raise LanguageError(msg, shapes=[arr.shape], loc=loc_dict(loc))
        return bool(arr.reshape(()))

    # --- hooks: a batched run (engine.lang.batched) sees per-point values through them --

    def shape_of(self, value: Any) -> tuple[int, ...]:
        """The shape of an array value as the function sees it: what ``.shape``, ``.ndim``,
        ``.size``, ``len`` and the ``min``/``max`` builtins read. (The batching interpreter
        overrides it to leave out its batch axes.)"""
        return shape_of(value)

    def truth_value(self, value: Any, loc: Loc) -> Any:
        """A condition's raw value (untraced), before its scalar check."""
        return trace.unbox_all(value)

    def static_value(self, value: Any, loc: Loc, what: str | None) -> Any:
        """A computed value about to be read as a static (an index, bound, shape...)."""
        return value

    def is_traced(self, value: Any) -> bool:
        """Whether a list literal holding ``value`` must be stacked by an op."""
        return isinstance(value, trace.Box)

    # --- values ----------------------------------------------------------------------

    def value(self, node: Any) -> Any:
        hit = _compiled.get(id(node))
        if hit is None or hit[0] is not node:
            hit = _compile(node)
        return hit[1](self)

    def num(self, node: Num) -> Any:
        return node.value if node.int_value is None else node.int_value

    def const(self, node: Const | Str) -> Any:
        return node.value

    def name(self, node: Name) -> Any:
        try:
            return self.vars[node.id]
        except KeyError:
            msg = f"{node.id!r} at {loc_text(node.loc)} has no value here (it is assigned on "
            msg += "another path of the program only)"
            raise UnknownNameError(msg, loc=loc_dict(node.loc)) from None

    def call(self, node: Call) -> Any:
        # plain loops, array arguments dispatched inline: one Python frame per nesting level
        args = []
        scalars = not node.kwargs  # only scalar array arguments: the result is tiny too
        for kind, expr in node.args:
            if kind == ARRAY:
                v = self.value(expr)
                if type(v) is float:
                    pass
                elif type(v) is int or type(v) is bool:
                    v = float(v)
                elif scalars:
                    scalars = not shape_of(v)
                args.append(v)
            else:
                scalars = False
                args.append(self.arg(kind, expr, _param_name(node.op, len(args))))
        kwargs = {}
        for name, kind, expr in node.kwargs:
            kwargs[name] = self.arg(kind, expr, f"{node.op}(): argument {name!r}")
        return self.apply(node.op, args, kwargs, node.loc, sized=scalars)

    def arg(self, kind: str, expr: Any, what: str) -> Any:
        """An argument of parameter kind ``kind``; ``what`` names it (op and parameter)."""
        if kind == ARRAY:
            return self.array(expr)
        if kind == STATIC:
            return self.static(expr, what=what)
        if kind == ARRAYS:
            return self.arrays(expr)
        raise LanguageError(f"unknown parameter kind {kind!r}")  # registry misconfigured

    def array(self, expr: Any) -> Any:
        """An array argument: numbers become floats, list literals arrays."""
        v = self.value(expr)
        return float(v) if type(v) is int or type(v) is bool else v

    def arrays(self, expr: Any) -> Any:
        """A sequence-of-arrays argument (concatenate, stack)."""
        if type(expr) is Seq:
            return [self.array(e) for e in expr.items]
        v = self.value(expr)
        return list(v) if isinstance(v, tuple | list) else v

    def seq(self, node: Seq) -> Any:
        """A list literal as an array, as ``np.array`` makes it (float64 from numbers, float32
        from float32 values alone), ``stack`` once traced values appear."""
        items = [self.array(e) for e in node.items]
        if not any(self.is_traced(v) for v in items):
            total = sum(int(np.size(v)) for v in items)
            if total > self.max_elements:
                raise self.too_big("a list literal", (total,), node.loc)
            try:
                arr = np.array(items)
                return arr if arr.dtype.kind == "f" else arr.astype(np.float64)
            except (ValueError, TypeError) as exc:
                shapes = [shape_of(v) for v in items]
                where = loc_text(node.loc)
                msg = f"list literal at {where} is not rectangular ({exc}); item shapes {shapes}"
                raise ShapeError(msg, shapes=shapes, loc=loc_dict(node.loc)) from None
        # numbers float64 as np.array makes them; arrays keep their dtype (float32 stays)
        items = [
            v if isinstance(v, trace.Box | np.ndarray | np.generic) else np.float64(v)
            for v in items
        ]
        return self.apply("stack", [items], {}, node.loc)

    def boolop(self, node: BoolOp) -> Any:
        """``and``/``or`` outside a condition: elementwise, as logical_and/logical_or."""
        name = "logical_and" if node.op == "and" else "logical_or"
        out = self.array(node.values[0])
        for v in node.values[1:]:
            out = self.apply(name, [out, self.array(v)], {}, node.loc)
        return out

    def ifexp(self, node: IfExp) -> Any:
        """``a if c else b``: the condition as ``if`` reads it (``cond``), one branch run."""
        return self.value(node.body if self.cond(node.test, node.loc) else node.orelse)

    def attr(self, node: Attr) -> Any:
        """``x.shape`` (a tuple of ints, a static value), ``.ndim``, ``.size``, ``.dtype``."""
        value = self.value(node.value)
        self.check_array(value, f".{node.name}", node.loc)
        if node.name == "dtype":
            return _dtype_name(value)
        shape = self.shape_of(value)
        if node.name == "shape":
            return shape
        return len(shape) if node.name == "ndim" else math.prod(shape)

    def receiver(self, node: Receiver) -> Any:
        value = self.value(node.value)
        self.check_array(value, f".{node.method}", node.loc)
        return value

    def check_array(self, value: Any, what: str, loc: Loc) -> None:
        """Attributes and methods are of arrays only: not of a shape tuple, an integer from
        len() or a loop counter, a dtype name, or an op's several results."""
        kind = type(value)
        if kind in _NOT_ARRAYS:
            noun = _NOT_ARRAYS[kind]
            msg = f"{what} at {loc_text(loc)} is read from {noun}, not an array"
            raise LanguageError(msg, loc=loc_dict(loc))

    def builtin(self, node: Builtin) -> Any:
        if node.name == "len":
            return self.length(node)
        if node.name == "sum":
            return self.sum_items(node)
        return self.minmax(node)

    def sum_items(self, node: Builtin) -> Any:
        """Python's ``sum([a, b, ...])`` of a list literal: ``a + b + ...`` (broadcasting)."""
        out = self.array(node.args[0])
        for expr in node.args[1:]:
            out = self.apply("add", [out, self.array(expr)], {}, node.loc)
        return out

    def length(self, node: Builtin) -> int:
        value = self.value(node.args[0])
        if isinstance(value, tuple | list):
            return len(value)
        self.check_array(value, "len()", node.loc)
        shape = self.shape_of(value)
        if not shape:
            msg = f"len() of a 0-d value at {loc_text(node.loc)}: it has no first axis"
            raise LanguageError(msg, shapes=[shape], loc=loc_dict(node.loc))
        return shape[0]

    def minmax(self, node: Builtin) -> Any:
        """``max(a, b, ...)`` without a prefix or keywords: Python's builtin when the first
        argument is 0-d (the elementwise ``maximum`` of scalars, so ties split the gradient
        as ``maximum`` does), otherwise NumPy's ``max(x, axis)``. NumPy's reading of a 0-d
        first argument would be an error (a 0-d array has no axis to reduce), so no valid
        NumPy call changes meaning."""
        first = self.array(node.args[0])
        if self.shape_of(first):
            if len(node.args) != 2:
                op = registry.OPS[node.name]
                msg = (
                    f"{node.name}() at {loc_text(node.loc)}: Python's {node.name} of several "
                    f"values needs scalars, and NumPy's takes (x, axis); signature: {op.signature}"
                )
                raise LanguageError(msg, op=node.name, loc=loc_dict(node.loc))
            axis = self.static(node.args[1], what=f"{node.name}(): argument 'axis'")
            return self.apply(node.name, [first], {"axis": axis}, node.loc)
        out = first
        pairwise = "maximum" if node.name == "max" else "minimum"
        for expr in node.args[1:]:
            other = self.array(expr)
            if self.shape_of(other):
                msg = (
                    f"{node.name}(a, b) at {loc_text(node.loc)} compares scalars, got shape "
                    f"{self.shape_of(other)}: use {pairwise}(a, b) for arrays"
                )
                raise LanguageError(msg, loc=loc_dict(node.loc))
            out = self.apply(pairwise, [out, other], {}, node.loc, sized=True)
        return out

    def not_(self, node: Not) -> Any:
        return self.apply("logical_not", [self.array(node.operand)], {}, node.loc)

    def index(self, node: Index) -> Any:
        value = self.value(node.value)
        items = tuple(self.index_item(i) for i in node.items)
        if any(type(i) is _Spliced for i in items):  # x[nonzero(m)]: its arrays, one per axis
            items = tuple(v for i in items for v in (i.items if type(i) is _Spliced else (i,)))
        if isinstance(value, tuple | list):  # an op that answers several arrays (slogdet)
            return _pick(value, items, node.loc)
        # a basic index (ints, slices, None, ...) selects a view: never more elements than
        # the value it indexes, so only index arrays need the size check first
        basic = all(type(i) in _BASIC_INDEX for i in items)
        return self.apply("getitem", [value, items], {}, node.loc, sized=basic)

    def index_item(self, item: Any) -> Any:
        kind = type(item)
        if kind is Slice:
            parts = (item.lower, item.upper, item.step)
            return slice(*(None if p is None else self.integer(p, "a slice bound") for p in parts))
        if kind is Ellip:
            return Ellipsis
        if kind is Const and item.value is None:
            return None
        if kind is Name or kind is Index or (kind is Call and item.op not in ARITH):
            computed = self.value(item)
            if type(computed) is tuple:  # several results (nonzero, where(c)): splice them
                return _Spliced(tuple(self.one_index(v, item.loc) for v in computed))
            return self.one_index(computed, item.loc)
        return self.one_index(self.static(item, allow_array=True), item.loc)

    def one_index(self, v: Any, loc: Loc) -> Any:
        """A static value as one index item: an integer or an index array."""
        v = to_static(v, loc, allow_array=True)
        if isinstance(v, tuple):
            v = np.asarray(v)
        if isinstance(v, np.ndarray):
            return index_array(v, loc)
        return self.as_int(v, "an index", loc)

    # --- static values: Python numbers, tuples, strings --------------------------------

    def static(self, expr: Any, allow_array: bool = False, what: str | None = None) -> Any:
        """A static value: a Python value, never traced. An op's static argument (axis,
        shape, count, subscripts...; ``what`` names it) must not be computed from a
        differentiated input: it is refused, never read as a constant. An index, a slice
        bound or a ``range`` bound (``what`` None) may be: it selects, and contributes no
        derivative, as a condition or a comparison does."""
        kind = type(expr)
        if kind is Num:
            return self.num(expr)
        if kind is Const or kind is Str:
            return expr.value
        if kind is IfExp:
            chosen = expr.body if self.cond(expr.test, expr.loc) else expr.orelse
            return self.static(chosen, allow_array, what)
        if kind is Seq:
            return tuple(self.static(e, what=what) for e in expr.items)
        if kind is Call and expr.op in ARITH and not expr.kwargs:
            args = [self.static(a.expr, allow_array=True, what=what) for a in expr.args]
            if all(isinstance(a, _NUMBER) for a in args):
                return arith(expr.op, args, expr.loc)
        value = self.static_value(self.value(expr), expr.loc, what)
        return to_static(value, expr.loc, allow_array, what)

    def integer(self, expr: Any, what: str) -> int:
        return self.as_int(self.static(expr), what, expr.loc)

    def as_int(self, v: Any, what: str, loc: Loc) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        msg = f"{what} must be an integer, got {v!r} at {loc_text(loc)}"
        raise LanguageError(msg, loc=loc_dict(loc))

    # --- op calls ----------------------------------------------------------------------

    def apply(
        self, name: str, args: list[Any], kwargs: dict[str, Any], loc: Loc, sized: bool = False
    ) -> Any:
        """Call op ``name`` after checking its result's size (unless ``sized``: known tiny)."""
        return self.apply_op(registry.OPS[name], args, kwargs, loc, sized)

    def apply_op(
        self, op: registry.Op, args: list[Any], kwargs: dict[str, Any], loc: Loc, sized: bool
    ) -> Any:
        """``apply`` with the op looked up already."""
        name = op.name
        try:
            if not sized:
                check_size(op, tuple(args), kwargs, self.max_elements)
            recorder = trace.current_recorder()
            if recorder is not None:
                recorder.loc = loc
            return op(*args, **kwargs)
        except AutodiffError as err:
            raise err.with_loc(loc_dict(loc)) from None
        except RecursionError:
            raise
        except MemoryError:
            raise self.out_of_memory(name, loc, args) from None
        except Exception as exc:  # NumPy's ValueError/TypeError...: name the op and shapes
            shapes = _shapes(args)
            text = ", ".join(map(str, shapes))
            msg = f"{name}: {exc} (argument shapes {text}) at {loc_text(loc)}"
            raise ShapeError(msg, op=name, shapes=shapes, loc=loc_dict(loc)) from None

    def out_of_memory(self, what: str, loc: Loc, args: list[Any]) -> SizeLimitError:
        """The op's result was under the size limit, but memory ran out making it."""
        shapes = _shapes(args)
        given = f" with arguments of shapes {', '.join(map(str, shapes))}" if shapes else ""
        msg = f"{what} at {loc_text(loc)} ran out of memory{given}"
        return SizeLimitError(msg, op=what, shapes=shapes, loc=loc_dict(loc))

    def too_big(
        self, what: str, shape: tuple[int, ...], loc: Loc, args: list[Any] | None = None
    ) -> SizeLimitError:
        shapes = _shapes(args or [])
        given = f" from arguments of shapes {', '.join(map(str, shapes))}" if shapes else ""
        msg = (
            f"{what} at {loc_text(loc)} would make a result of shape {tuple(shape)}{given}: "
            f"over the limit of {self.max_elements} elements"
        )
        return SizeLimitError(msg, op=what, shapes=shapes, loc=loc_dict(loc))


_EXEC: dict[type, Callable[..., Any]] = {
    Assign: Interpreter.assign,
    If: Interpreter.if_,
    While: Interpreter.while_,
    For: Interpreter.for_,
    Return: Interpreter.return_,
}
_VALUE: dict[type, Callable[..., Any]] = {
    Num: Interpreter.num,
    Const: Interpreter.const,
    Str: Interpreter.const,
    Name: Interpreter.name,
    Call: Interpreter.call,
    Seq: Interpreter.seq,
    BoolOp: Interpreter.boolop,
    Not: Interpreter.not_,
    Index: Interpreter.index,
    IfExp: Interpreter.ifexp,
    Attr: Interpreter.attr,
    Receiver: Interpreter.receiver,
    Builtin: Interpreter.builtin,
}
_NOT_ARRAYS = {
    tuple: "a tuple (a shape or an op's several results)",
    list: "a list",
    int: "an integer (a length, a size or a loop counter)",
    bool: "a boolean",
    str: "a string (a dtype name)",
}


def _dtype_name(value: Any) -> str:
    """``x.dtype`` as its name (``"float64"``), which ``astype`` takes."""
    dtype = getattr(value, "dtype", None)
    return "float64" if dtype is None else np.dtype(dtype).name


def _param_name(op_name: str, i: int) -> str:
    """``op(): argument 'name'`` for the op's ``i``-th positional argument."""
    params = registry.OPS[op_name].params
    name = params[i].name if i < len(params) else str(i)
    return f"{op_name}(): argument {name!r}"


def _line(loc: Loc) -> Any:
    return loc if isinstance(loc, str) else loc[0]


def _shapes(args: list[Any]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for a in args:
        if isinstance(a, list):
            out.extend(shape_of(v) for v in a)
        elif not isinstance(a, str | tuple | slice) and a is not None:
            out.append(shape_of(a))
    return out


def _output(v: Any) -> Any:
    """Outputs are arrays (or boxes): a number literal or loop counter becomes a 0-d float64.
    (Exact types: a NumPy scalar an op made, a subclass of float, stays that object, which
    the graph metadata knows as the op's node.)"""
    if type(v) is float or type(v) is int or type(v) is bool:
        return np.asarray(float(v))
    if type(v) is tuple and all(type(i) is int for i in v):  # a shape: one output, as floats
        return np.asarray(v, dtype=np.float64)
    if type(v) is str:
        raise LanguageError(f"the output is the dtype name {v!r}, not an array")
    return v


def _pick(value: tuple[Any, ...] | list[Any], items: tuple[Any, ...], loc: Loc) -> Any:
    """``value[i]`` (or a slice of them) of an op's several results (slogdet, split), with a
    clear error for a bad index."""
    first = items[0] if len(items) == 1 else None
    if isinstance(first, int) and -len(value) <= first < len(value):
        return value[first]
    if type(first) is slice:  # x.shape[1:]
        return tuple(value[first])
    msg = f"bad index into a tuple of {len(value)} results at {loc_text(loc)}"
    raise LanguageError(msg, loc=loc_dict(loc))


# --- expressions compiled to closures ----------------------------------------------------
#
# An expression is evaluated by a closure made once per IR node: the op looked up, constant
# indices worked out, and no dispatch on node types while it runs. Only the common forms are
# compiled (names, numbers, calls with array arguments only, indexing by constants); every
# other node runs through the Interpreter method above, so there is one meaning for each form.

Compiled = Callable[[Interpreter], Any]
_compiled: dict[int, tuple[Any, Compiled]] = {}
_COMPILED_MAX = 100_000  # IR nodes of cached programs; cleared, not grown, past this


def _compile(node: Any) -> tuple[Any, Compiled]:
    if len(_compiled) >= _COMPILED_MAX:
        _compiled.clear()
    kind = type(node)
    fn: Compiled | None = None
    if kind is Num:
        fn = _constant(node.value if node.int_value is None else node.int_value)
    elif kind is Const or kind is Str:
        fn = _constant(node.value)
    elif kind is Name:
        fn = _name(node)
    elif kind is Call and not node.kwargs and all(a.kind == ARRAY for a in node.args):
        fn = _call(node)
    elif kind is Index:
        fn = _index(node)
    if fn is None:
        method = _VALUE[kind]
        fn = lambda it: method(it, node)  # noqa: E731
    hit = _compiled[id(node)] = (node, fn)
    return hit


def _constant(value: Any) -> Compiled:
    return lambda it: value


def _name(node: Name) -> Compiled:
    key = node.id

    def run(it: Interpreter) -> Any:
        try:
            return it.vars[key]
        except KeyError:
            return it.name(node)  # raises the error that says where

    return run


def _array_arg(v: Any) -> tuple[Any, bool]:
    """An array argument as ``call`` takes it (numbers as floats), and whether it is a scalar."""
    kind = type(v)
    if kind is float:
        return v, True
    if kind is int or kind is bool:
        return float(v), True
    return v, not shape_of(v)


def _call(node: Call) -> Compiled:
    op = registry.OPS[node.op]
    loc = node.loc
    parts = [_value_fn(a.expr) for a in node.args]
    if len(parts) == 1:
        (fa,) = parts

        def run1(it: Interpreter) -> Any:
            a, sa = _array_arg(fa(it))
            return it.apply_op(op, [a], {}, loc, sa)

        return run1
    if len(parts) == 2:
        fa, fb = parts

        def run2(it: Interpreter) -> Any:
            a, sa = _array_arg(fa(it))
            b, sb = _array_arg(fb(it))
            return it.apply_op(op, [a, b], {}, loc, sa and sb)

        return run2

    def run(it: Interpreter) -> Any:
        args = []
        scalars = True
        for f in parts:
            v, scalar = _array_arg(f(it))
            scalars = scalars and scalar
            args.append(v)
        return it.apply_op(op, args, {}, loc, scalars)

    return run


def _value_fn(node: Any) -> Compiled:
    hit = _compiled.get(id(node))
    return (hit if hit is not None and hit[0] is node else _compile(node))[1]


def _constant_item(item: Any) -> tuple[bool, Any]:
    """(True, the index item) when it is known before running: an integer, ``:``-style
    slice of integers, ``None`` or ``...``; (False, None) otherwise."""
    kind = type(item)
    if kind is Num and item.int_value is not None:
        return True, item.int_value
    if kind is Ellip:
        return True, Ellipsis
    if kind is Const and item.value is None:
        return True, None
    if kind is Slice:
        parts: list[int | None] = []
        for p in (item.lower, item.upper, item.step):
            if p is None:
                parts.append(None)
            elif type(p) is Num and p.int_value is not None:
                parts.append(p.int_value)
            else:
                return False, None
        return True, slice(*parts)
    return False, None


def _index(node: Index) -> Compiled | None:
    known = [_constant_item(i) for i in node.items]
    if not all(ok for ok, _ in known):
        return None
    items = tuple(v for _, v in known)
    op = registry.OPS["getitem"]
    loc = node.loc
    of = _value_fn(node.value)

    def run(it: Interpreter) -> Any:
        value = of(it)
        if isinstance(value, tuple | list):
            return _pick(value, items, loc)
        return it.apply_op(op, [value, items], {}, loc, True)

    return run
