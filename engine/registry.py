"""The op registry: one ``Op`` per NumPy name, with its rules, shape function and signature.

An op knows:
- ``impl``: the NumPy computation on raw arrays;
- ``vjps``: one reverse rule per positional array argument,
  ``vjp(g, ans, *args, **kwargs) -> cotangent`` (``g`` may carry leading batch axes);
- ``jvp``: the forward rule ``jvp(tangents, ans, *args, **kwargs)``, tangents
  being None (symbolic zero) or arrays with optional leading batch axes;
- ``shape``: the output shape from the arguments' shapes, without computing;
- ``params``: the signature the language binds calls against, each parameter
  of a kind: ``array``, ``arrays`` (one argument that is a sequence of
  arrays), ``varargs`` (any number of array arguments, einsum's operands) or
  ``static`` (an int, float, bool, tuple of ints or string, never traced).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.core import trace
from engine.errors import (
    AutodiffError,
    NotDifferentiableError,
    ShapeError,
    TracedValueError,
    ValueDomainError,
)
from engine.statics import STATIC_KINDS

ARRAY, ARRAYS, VARARGS, STATIC = "array", "arrays", "varargs", "static"
COSTS = ("linear", "contraction", "decomposition")
# How an op's rules are written (``engine/ops/kinds.py``): every op declares one
# "composite": an op written as other ops (``kinds.ComposedOp``), differentiated through them
KINDS = ("elementwise", "linear", "bilinear", "reduction", "nondiff", "custom", "composite")
# Every op without a gradient, listed once: an op registered without rules must be here,
# and an op here must have none, so no op is non-differentiable by accident. Their
# results are constants (comparisons, constructors from shapes) or cut the graph.
NONDIFF = frozenset(
    {
        "_slogdet_sign",  # piecewise constant
        "arange",
        "argmax",
        "argmin",
        "argsort",
        "detach",
        "stop_gradient",
        "equal",
        "not_equal",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",  # the special helper's ufuncs (engine/ops/ufuncs.py): booleans
        "isnan",
        "isinf",
        "isfinite",
        "signbit",
        "eye",
        "ones",
        "ones_like",
        "searchsorted",
        "zeros",
        "zeros_like",
        "argwhere",  # integer indices (engine/ops/selection.py)
        "flatnonzero",
        "nonzero",
        "tril_indices",  # integer index arrays (ops/building.py)
        "tril_indices_from",
        "triu_indices",
        "triu_indices_from",
        "diag_indices",
        "diag_indices_from",
    }
)


class _Required:
    """The default of a parameter that has none: a class, so it pickles as itself.

    Not ``inspect.Parameter.empty``: ``@dataclass`` of CPython before 3.11.4 builds
    ``__doc__`` with ``inspect.signature``, which reads that default as "no default"
    and raises "non-default argument follows default argument" at import.
    """


_REQUIRED: Any = _Required


@dataclass(frozen=True)
class Param:
    name: str
    kind: str = ARRAY
    default: Any = _REQUIRED
    # a static argument's kind, checked and normalised once by the registry
    # (``normalise_statics``) for an op without a ``prepare`` hook: "int" (not a bool)
    static_kind: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


# what NumPy raises for bad shapes or values: named as the op's typed error
NUMPY_ERRORS = (ValueError, TypeError, IndexError, np.linalg.LinAlgError)


@dataclass(eq=False, slots=True)
class Op:
    name: str
    impl: Callable[..., Any]
    params: tuple[Param, ...]
    doc: str
    shape_fn: Callable[..., tuple[int, ...]]
    vjps: Any = None  # indexable by argument position: a tuple, or PerArgument
    jvp_rule: Callable[..., Any] | None = None
    differentiable: bool = True
    # normalises arguments before dispatch (positional statics bound, axes made negative)
    prepare: Callable[..., tuple[tuple[Any, ...], dict[str, Any]]] | None = None
    aliases: tuple[str, ...] = field(default=())
    # the work it does, for the service's lane policy: ``linear`` in its operands' and
    # result's sizes (elementwise, reductions, shapes, indexing, constructors),
    # ``contraction`` (matmul, einsum...) or ``decomposition`` (inv, det, SVD-based
    # norms...); an op that declares nothing counts as the costliest
    cost: str = "decomposition"
    # the rule kind it was declared with (``KINDS``); "" is undeclared, which ``register``
    # refuses
    kind: str = ""

    def __call__(self, *given: Any, **given_kw: Any) -> Any:
        try:
            args, kwargs = given, given_kw
            if kwargs:
                args, kwargs = self.bind(args, kwargs)
            if self.prepare is not None:
                args, kwargs = self.prepare(args, kwargs)
            recorder = trace.current_recorder()
            try:
                if recorder is None:
                    return trace.dispatch(self, args, kwargs)
                token = trace.set_recorder(None)  # ops that rules apply inside are not user nodes
                try:
                    ans = trace.dispatch(self, args, kwargs)
                finally:
                    trace.reset_recorder(token)
            except NUMPY_ERRORS as exc:
                raise self.error(exc, args) from None
            recorder.record(self, args, kwargs, ans)
            return ans
        except TracedValueError:
            # NumPy met a box inside a list (``mean([x, x + 2])``): such a list is an array,
            # so it is stacked, differentiably, and the op called again; any other traced
            # value that NumPy would have made a constant stays the caller's error
            stacked = stack_sequences(self, given)
            if stacked is None:
                raise
            return self(*stacked, **given_kw)

    def shape(self, *args: Any, **kwargs: Any) -> tuple[int, ...]:
        """The output shape of ``self(*args, **kwargs)``, computed from shapes alone."""
        if kwargs:
            args, kwargs = self.bind(args, kwargs)
        if self.prepare is not None:
            args, kwargs = self.prepare(args, kwargs)
        try:
            return tuple(int(d) for d in self.shape_fn(*args, **kwargs))
        except AutodiffError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise self.error(exc, args) from None

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Array arguments passed by keyword (``clip(x, a_min=0, a_max=1)``) moved to their
        positions: rules and ``prepare`` hooks take array arguments positionally, statics
        by keyword or position."""
        rest = self.params[len(args) :]
        if not any(p.kind == ARRAY and p.name in kwargs for p in rest):
            return args, kwargs
        bound, kwargs = list(args), dict(kwargs)
        for p in rest:
            if p.kind != ARRAY or p.name not in kwargs:
                if p.kind == ARRAY and p.required:
                    raise ValueDomainError(
                        f"{self.name}: missing argument {p.name!r}", op=self.name
                    )
                break
            bound.append(kwargs.pop(p.name))
        return tuple(bound), kwargs

    def error(self, exc: Exception, args: tuple[Any, ...]) -> AutodiffError:
        """A typed error naming this op and its arguments' shapes."""
        if isinstance(exc, AutodiffError):
            return exc
        shapes = [shape_of(a) for a in args if not isinstance(a, str | slice | tuple)]
        text = ", ".join(str(s) for s in shapes)
        return ShapeError(
            f"{self.name}: {exc} (argument shapes {text})", op=self.name, shapes=shapes
        )

    def jvp(self, tangents: list[Any], ans: Any, *args: Any, **kwargs: Any) -> Any:
        if self.jvp_rule is None:
            raise NotDifferentiableError(f"{self.name} has no forward-mode rule", op=self.name)
        return self.jvp_rule(tangents, ans, *args, **kwargs)

    @property
    def signature(self) -> str:
        parts = []
        for p in self.params:
            text = {ARRAYS: f"{p.name}: sequence", VARARGS: f"*{p.name}"}.get(p.kind, p.name)
            if not p.required:
                text += f"={p.default!r}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"

    @property
    def array_params(self) -> list[str]:
        return [p.name for p in self.params if p.kind != STATIC]


def stack_sequences(op: Op, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``args`` with every list or tuple of boxes given as an array stacked into one traced
    array (nested lists stack recursively, numbers become float64; the items of a sequence
    parameter such as concatenate's each count as an array); None if there is none (the
    error was not about such a list)."""
    out = list(args)
    found = False
    for i, a in enumerate(args):
        if type(a) not in (list, tuple) or not _holds_box(a):
            continue
        kind = _param_kind(op, i)
        if kind in (ARRAY, VARARGS):
            out[i] = _stack(a)
            found = True
        elif kind == ARRAYS and any(type(v) in (list, tuple) and _holds_box(v) for v in a):
            out[i] = [_stack(v) if type(v) in (list, tuple) else v for v in a]
            found = True
    return tuple(out) if found else None


def _param_kind(op: Op, i: int) -> str | None:
    """The kind of the parameter that positional argument ``i`` fills."""
    for j, p in enumerate(op.params):
        if p.kind == VARARGS and i >= j:
            return VARARGS
        if j == i:
            return p.kind
    return None


def _holds_box(seq: Any) -> bool:
    stack = [seq]
    while stack:
        v = stack.pop()
        if isinstance(v, trace.Box):
            return True
        if type(v) in (list, tuple):
            stack.extend(v)
    return False


def _stack(v: Any) -> Any:
    if type(v) in (list, tuple):
        return OPS["stack"]([_stack(item) for item in v])
    return v if isinstance(v, trace.Box) else np.asarray(v, dtype=np.float64)


def shape_of(x: Any) -> tuple[int, ...]:
    """Shape of an array, a box or a Python scalar, without touching its data."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return shape if type(shape) is tuple else tuple(shape)
    if isinstance(x, int | float | bool | np.number):
        return ()
    return tuple(np.shape(x))


OPS: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add ``op`` (and its aliases) to the registry. An op whose static parameters have
    kinds, and no ``prepare`` hook of its own, gets the registry's: statics bound by name
    and checked once, before any rule or shape function sees them."""
    if op.cost not in COSTS:
        raise ValueError(f"op {op.name!r}: cost must be one of {COSTS}, got {op.cost!r}")
    if op.kind not in KINDS:
        raise ValueError(f"op {op.name!r}: kind must be one of {KINDS}, got {op.kind!r}")
    if op.differentiable == (op.kind == "nondiff"):
        raise ValueError(f"op {op.name!r}: kind {op.kind!r} but differentiable={op.differentiable}")
    if op.differentiable == (op.name in NONDIFF):
        listed = "is listed in NONDIFF" if op.differentiable else "is not listed in NONDIFF"
        raise ValueError(f"op {op.name!r}: differentiable={op.differentiable} but {listed}")
    if op.prepare is None and any(p.static_kind for p in op.params):
        op.prepare = lambda args, kwargs: normalise_statics(op, args, kwargs)
    for name in (op.name, *op.aliases):
        if name in OPS:
            raise ValueError(f"op {name!r} registered twice")
        OPS[name] = op
    return op


def normalise_statics(
    op: Op, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` cut to the array arguments; every static by name, defaulted and normalised
    by its kind (rules then take statics by keyword)."""
    arrays = [p for p in op.params if p.kind != STATIC]
    statics = [p for p in op.params if p.kind == STATIC]
    extra = args[len(arrays) :]
    if len(extra) > len(statics):
        raise ValueDomainError(f"{op.name}: too many arguments", op=op.name)
    given = dict(zip((p.name for p in statics), extra, strict=False))
    for name in kwargs:
        if name in given or name not in {p.name for p in statics}:
            raise ValueDomainError(f"{op.name}: unexpected argument {name!r}", op=op.name)
    given.update(kwargs)
    shape = shape_of(args[0]) if arrays and args else ()  # what axis kinds refer to
    out = {}
    for p in statics:
        value = given.get(p.name, p.default)
        if value is _REQUIRED:
            raise ValueDomainError(f"{op.name}: missing argument {p.name!r}", op=op.name)
        if p.static_kind:
            value = STATIC_KINDS[p.static_kind](op.name, p.name, value, shape)
        out[p.name] = value
    return args[: len(arrays)], out


def params(spec: str) -> tuple[Param, ...]:
    """Parse a compact parameter spec such as ``"x, y, axis:s=None, keepdims:s=False"``.

    ``x`` is an array, ``xs[]`` one argument holding a sequence of arrays,
    ``*xs`` any number of array arguments, ``name:s`` a static value, ``name:int`` a
    static of a kind (``STATIC_KINDS``) that the registry checks and normalises.
    Defaults are Python literals.
    """
    out = []
    for raw in (s.strip() for s in spec.split(",") if s.strip()):
        name, _, default = raw.partition("=")
        kind, static_kind = ARRAY, None
        if ":" in name and not name.endswith(":s"):
            name, _, static_kind = name.partition(":")
            kind = STATIC
            if static_kind not in STATIC_KINDS:
                raise ValueError(f"parameter {name!r}: unknown static kind {static_kind!r}")
        elif name.startswith("*"):
            name, kind = name[1:], VARARGS
        elif name.endswith("[]"):
            name, kind = name[:-2], ARRAYS
        elif name.endswith(":s"):
            name, kind = name[:-2], STATIC
        value = _REQUIRED if not default else ast.literal_eval(default)
        out.append(Param(name, kind, value, static_kind))
    return tuple(out)


def names_of_cost(cost: str) -> frozenset[str]:
    """The names (aliases included) of the registered ops of one cost class."""
    importlib.import_module("engine.numpy")  # registers every op (no import cycle for mypy)

    return frozenset(name for name, op in OPS.items() if op.cost == cost)
