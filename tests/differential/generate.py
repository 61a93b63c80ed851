"""A seeded random generator of programs over every op of the engine's registry.

Why a seeded generator and not hypothesis strategies: the long run must be reproducible
from ``--seed S`` alone and must report figures per program (hypothesis decides itself how
many examples to draw and stops at the first failure), every program is built bottom-up
while its values are computed (so operands are chosen to fit: shapes, domains, margins
from kinks), and mismatches are minimised by our own reducer over the program's
subexpressions, which knows what a valid program is better than a generic shrinker.

Each node is evaluated as it is made by the NumPy model (``backends.NumpyModel``), which
refuses operands near a kink or a domain edge; the generator then tries something else.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from tests.differential import programs as P
from tests.differential.backends import MAX_ABS, NumpyModel, Reject

MAX_SIZE = 36  # elements of any intermediate: keeps Jacobians and Hessians small
# 3-d shapes often: mixed advanced indexing needs an axis between two advanced entries
INPUT_SHAPES = [
    (),
    (3,),
    (4,),
    (2, 3),
    (3, 3),
    (3, 2),
    (2, 2),
    (2, 3, 2),
    (1, 3),
    (2, 3, 4),
    (3, 1, 2),
]

UNARY = [
    "negative",
    "abs",
    "sign",
    "sqrt",
    "square",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "sigmoid",
    "relu",
    "softplus",
]
BINARY = [
    "add",
    "subtract",
    "multiply",
    "divide",
    "power",
    "arctan2",
    "maximum",
    "minimum",
    "floor_divide",
    "remainder",
]
COMPARE = ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]
REDUCE = ["sum", "mean", "prod", "max", "min", "var", "std", "norm", "logsumexp"]
SHAPE = [
    "reshape",
    "transpose",
    "swapaxes",
    "expand_dims",
    "squeeze",
    "concatenate",
    "stack",
    "broadcast_to",
    "flip",
    "tile",
    "repeat",
]
LINALG = [
    "dot",
    "matmul",
    "outer",
    "inner",
    "tensordot",
    "einsum",
    "trace",
    "diag",
    "tril",
    "triu",
    "inv",
    "det",
    "slogdet",
    "solve",
    "cholesky",
]
CONSTRUCTORS = ["zeros", "ones", "full", "eye", "arange", "linspace", "zeros_like", "ones_like"]
# Ops the generator covers, by the registry's names (the CI test checks against GET /ops).
COVERED = set(UNARY + BINARY + COMPARE + REDUCE + SHAPE + LINALG + CONSTRUCTORS) | {
    "clip",
    "where",
    "softmax",
    "log_softmax",
    "detach",
    "getitem",
    "logical_and",
    "logical_or",
    "logical_not",
}
POSITIVE = {"sqrt", "log", "log2", "log10"}
OPEN_UNIT = {"arcsin", "arccos"}
BOUNDED = {"exp", "expm1", "sinh", "cosh", "tan"}
KINKED = {"abs", "sign", "relu"}
SMOOTH = ["sin", "cos", "tanh", "sigmoid", "arctan", "softplus", "square", "negative"]

V = tuple[Any, Any]  # (expression, NumPy value)


class Traced(NamedTuple):
    """A keyword argument that is an expression (a traced fill value), not a static value."""

    e: Any
    v: Any


@dataclass
class Spec:
    """A generated program with everything a check needs."""

    program: P.Program
    inputs: dict[str, np.ndarray]  # float64 values (float32-representable when dtype is)
    dtype: str  # "float64" or "float32"
    constants: frozenset[str] = frozenset()  # inputs sent with requires_grad false
    wrt: tuple[str, ...] | None = None
    decisions: list[bool] = field(default_factory=list)
    outputs: tuple[Any, ...] = ()
    seed: int = 0

    @property
    def diff(self) -> list[str]:
        """Differentiated inputs, in the order of the program's inputs."""
        names = [n for n, _ in self.program.inputs if n not in self.constants]
        return names if self.wrt is None else [n for n in names if n in self.wrt]

    @property
    def scalar(self) -> bool:
        return len(self.outputs) == 1 and np.size(self.outputs[0]) == 1


def size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


class Generator:
    """One program's worth of generation state."""

    def __init__(self, rng: random.Random, pool: list[V], safe: bool = False) -> None:
        self.rng = rng
        self.model = NumpyModel()
        self.pool = pool
        self.safe = safe  # loop bodies: smooth, total ops only (values change per turn)

    # ----------------------------------------------------------------- evaluation helpers
    def call(
        self, op: str, args: list[V], kwargs: dict[str, Any] | None = None, style: str = "call"
    ) -> V:
        kwargs = kwargs or {}
        values = {k: v.v if isinstance(v, Traced) else v for k, v in kwargs.items()}
        value = self.model.call(op, [v for _, v in args], values)
        if not isinstance(value, tuple) and np.size(value) > MAX_SIZE:
            raise Reject
        exprs = tuple((k, v.e if isinstance(v, Traced) else v) for k, v in kwargs.items())
        e = P.Call(op, tuple(e for e, _ in args), exprs, style)
        return e, value

    def index(self, a: V, entries: tuple[Any, ...]) -> V:
        value = self.model.index(a[1], entries)
        if not isinstance(value, tuple) and np.size(value) > MAX_SIZE:
            raise Reject
        return P.Index(a[0], entries), value

    def lit(self, value: Any) -> V:
        if isinstance(value, np.ndarray):
            value = np.round(value, 3)
            return P.Lit(value.tolist()), value
        if isinstance(value, int):
            return P.Lit(value), value
        value = round(float(value), 4)
        return P.Lit(value), value

    def choice(self, items: Any) -> Any:
        return items[self.rng.randrange(len(items))]

    # ----------------------------------------------------------------- expressions
    def expr(self, depth: int) -> V:
        if depth <= 0 or self.rng.random() < 0.2:
            return self.leaf()
        families = [
            (self.unary, 6),
            (self.binary, 6),
            (self.where, 2),
            (self.reduction, 4),
            (self.shape_op, 4),
            (self.indexing, 5),
            (self.linalg, 3),
            (self.softmax, 1),
            (self.constructor, 2),
            (self.detach, 1),
            (self.clip, 1),
            (self.traced_list, 1),
        ]
        if self.safe:
            families = [(self.smooth, 5), (self.binary_safe, 3), (self.indexing, 1)]
        funcs, weights = zip(*families, strict=True)
        for _ in range(8):
            family = self.rng.choices(funcs, weights)[0]
            try:
                return family(depth - 1)
            except Reject:
                continue
        return self.leaf()

    def leaf(self) -> V:
        if self.rng.random() < 0.08:
            return self.lit(self.choice([0.5, 1.5, 2.0, -0.7, 3.0]))
        return self.choice(self.pool)

    def of_shape(self, shape: tuple[int, ...], depth: int) -> V:
        """An expression of exactly ``shape``, adapting one of another shape if need be."""
        for _ in range(4):
            e = self.expr(depth)
            if np.shape(e[1]) == shape and not isinstance(e[1], tuple):
                return e
        same = [p for p in self.pool if np.shape(p[1]) == shape]
        if same and self.rng.random() < 0.5:
            e = self.choice(same)
            return self.call(self.choice(SMOOTH), [e]) if self.rng.random() < 0.5 else e
        e = self.leaf()
        n = np.size(e[1])
        if n == size(shape) and n > 0 and self.rng.random() < 0.5:
            return self.call("reshape", [e], {"shape": shape})
        scalar = self.call(self.choice(["sum", "mean"]), [e]) if np.ndim(e[1]) else e
        how = self.rng.random()
        if how < 0.3:
            return self.call("broadcast_to", [scalar], {"shape": shape})
        if how < 0.6:
            return self.call("multiply", [scalar, self.call("ones", [], {"shape": shape})])
        vals = np.asarray(self.rng_values(shape))
        return self.call("add", [self.lit(vals), scalar], style="infix")

    def rng_values(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(
            [self.rng.uniform(0.3, 1.5) * self.choice([-1, 1]) for _ in range(size(shape))]
        ).reshape(shape)

    def broadcastable(self, shape: tuple[int, ...], depth: int) -> V:
        """An operand that broadcasts against ``shape``."""
        r = self.rng.random()
        if r < 0.5 or not shape:
            return self.of_shape(shape, depth)
        if r < 0.7:
            return self.of_shape(shape[self.rng.randrange(len(shape) + 1) :], depth)
        ones = tuple(1 if self.rng.random() < 0.5 else d for d in shape)
        return self.of_shape(ones, depth)

    # ----------------------------------------------------------------- families
    def unary(self, depth: int) -> V:
        op = self.choice(UNARY)
        a = self.expr(depth)
        if isinstance(a[1], tuple):
            raise Reject
        try:
            return self.call(
                op, [a], style="unary" if op == "negative" and self.rng.random() < 0.5 else "call"
            )
        except Reject:
            pass
        if op in POSITIVE:
            a = self.call("add", [self.call("softplus", [a]), self.lit(0.5)], style="infix")
        elif op in OPEN_UNIT or op in BOUNDED:
            a = self.call("multiply", [self.call("tanh", [a]), self.lit(0.8)], style="infix")
        elif op == "log1p":
            a = self.call("sigmoid", [a])
        return self.call(op, [a])

    def smooth(self, depth: int) -> V:
        return self.call(self.choice(SMOOTH), [self.expr(depth)])

    def binary_safe(self, depth: int) -> V:
        a = self.expr(depth)
        b = self.broadcastable(np.shape(a[1]), depth)
        op = self.choice(["add", "subtract", "multiply"])
        return self.call(op, [a, b], style="infix" if self.rng.random() < 0.6 else "call")

    def binary(self, depth: int) -> V:
        op = self.choice(BINARY)
        a = self.expr(depth)
        if isinstance(a[1], tuple):
            raise Reject
        if op == "power":
            return self.power(a, depth)
        b = self.broadcastable(np.shape(a[1]), depth)
        if self.rng.random() < 0.5:
            a, b = b, a
        style = "infix" if op in P.INFIX and self.rng.random() < 0.6 else "call"
        return self.call(op, [a, b], style=style)

    def power(self, a: V, depth: int) -> V:
        style = "infix" if self.rng.random() < 0.6 else "call"
        r = self.rng.random()
        if r < 0.4:
            return self.call("power", [a, self.lit(self.choice([2.0, 3.0, 2, -1.0]))], style=style)
        base = a if np.all(np.asarray(a[1]) > 0.3) else self.call("exp", [self.call("tanh", [a])])
        if r < 0.7:
            return self.call(
                "power", [base, self.lit(self.choice([0.5, 1.5, -0.5, 2.5]))], style=style
            )
        exponent = self.broadcastable(np.shape(base[1]), depth)
        return self.call("power", [base, exponent], style=style)

    def condition(self, depth: int) -> V:
        a = self.expr(depth)
        if isinstance(a[1], tuple):
            raise Reject
        b = (
            self.broadcastable(np.shape(a[1]), depth)
            if self.rng.random() < 0.6
            else self.lit(self.choice([0.0, 0.5, -0.5, 1.0]))
        )
        op = self.choice(COMPARE)
        cond = self.call(op, [a, b], style="infix" if self.rng.random() < 0.7 else "call")
        r = self.rng.random()
        if r < 0.15:
            cond = self.call(
                "logical_not", [cond], style="unary" if self.rng.random() < 0.5 else "call"
            )
        elif r < 0.3:
            other = self.condition(depth - 1)
            logic = self.choice(["logical_and", "logical_or"])
            cond = self.call(
                logic, [cond, other], style="infix" if self.rng.random() < 0.5 else "call"
            )
        return cond

    def where(self, depth: int) -> V:
        cond = self.condition(depth)
        shape = np.shape(cond[1])
        x = self.broadcastable(shape, depth)
        y = self.broadcastable(shape, depth) if self.rng.random() < 0.7 else self.lit(0.0)
        return self.call("where", [cond, x, y])

    def clip(self, depth: int) -> V:
        a = self.expr(depth)
        lo = round(self.rng.uniform(-1.0, 0.3), 3)
        hi = round(lo + self.rng.uniform(0.3, 1.5), 3)
        if self.rng.random() < 0.25:  # keywords: the B7 (derivative crashed)
            return self.call("clip", [a], {"a_min": lo, "a_max": hi})
        if self.rng.random() < 0.2:
            # a traced bound
            bound = self.call("mean", [self.expr(depth - 1)])
            return self.call("clip", [a, bound, self.lit(bound[1] + 1.0)])
        return self.call("clip", [a, self.lit(lo), self.lit(hi)])

    def axis_arg(self, ndim: int) -> Any:
        r = self.rng.random()
        if ndim == 0 or r < 0.35:
            return None
        if r < 0.8 or ndim == 1:
            return self.rng.randrange(-ndim, ndim)
        k = self.rng.randint(1, ndim)
        axes = self.rng.sample(range(ndim), k)
        return tuple(a - ndim if self.rng.random() < 0.3 else a for a in axes)

    def reduction(self, depth: int) -> V:
        op = self.choice(REDUCE)
        a = self.expr(depth)
        if isinstance(a[1], tuple):
            raise Reject
        ndim = np.ndim(a[1])
        kwargs: dict[str, Any] = {}
        if op == "norm":
            return self.norm(a)
        axis = self.axis_arg(ndim)
        if axis is not None or self.rng.random() < 0.3:
            kwargs["axis"] = axis
        if self.rng.random() < 0.3:
            kwargs["keepdims"] = True
        if op in ("var", "std") and self.rng.random() < 0.4:
            kwargs["ddof"] = 1
        return self.call(op, [a], kwargs)

    def norm(self, a: V) -> V:
        x = np.asarray(a[1])
        kwargs: dict[str, Any] = {}
        r = self.rng.random()
        if x.ndim >= 2 and r < 0.4:
            axes = tuple(self.rng.sample(range(x.ndim), 2)) if x.ndim > 2 or r < 0.2 else None
            if axes is not None:
                kwargs["axis"] = axes
            kwargs["ord"] = self.choice([None, 1, -1, math.inf, -math.inf, 2, -2])
        elif x.ndim >= 1 and r < 0.8:
            kwargs["axis"] = self.rng.randrange(-x.ndim, x.ndim) if x.ndim > 1 or r < 0.6 else None
            if kwargs["axis"] is None and x.ndim > 1:
                del kwargs["axis"]
            else:
                kwargs["ord"] = self.choice([None, 1, 2, 3, math.inf, -math.inf, 0, 0.5])
        if self.rng.random() < 0.25:
            kwargs["keepdims"] = True
        if kwargs.get("ord", "absent") is None and self.rng.random() < 0.5:
            del kwargs["ord"]
        return self.call("norm", [a], kwargs)

    def softmax(self, depth: int) -> V:
        a = self.expr(depth)
        if isinstance(a[1], tuple) or np.ndim(a[1]) == 0:
            raise Reject
        kwargs = {}
        if self.rng.random() < 0.6:
            kwargs["axis"] = self.rng.randrange(-np.ndim(a[1]), np.ndim(a[1]))
        return self.call(self.choice(["softmax", "log_softmax"]), [a], kwargs)

    def detach(self, depth: int) -> V:
        a = self.expr(depth)
        d = self.call("detach", [a])
        b = self.broadcastable(np.shape(a[1]), depth)
        return self.call("multiply", [b, d], style="infix")

    def traced_list(self, depth: int) -> V:
        """An array literal of traced values: ``mean([a, b])`` (the issue's B6)."""
        items = [self.call("sum", [self.expr(depth)]) for _ in range(self.rng.randint(2, 3))]
        seq = (P.Seq(tuple(e for e, _ in items)), self.model.stack([v for _, v in items]))
        return self.call(self.choice(["mean", "sum", "prod", "max"]), [seq])

    def constructor(self, depth: int) -> V:
        a = self.expr(depth)
        if isinstance(a[1], tuple):
            raise Reject
        shape = np.shape(a[1])
        n = shape[-1] if shape else 3
        r = self.rng.random()
        if r < 0.12:
            c = self.call(self.choice(["zeros", "ones"]), [], {"shape": shape})
            return self.call("add", [a, c], style="infix")
        if r < 0.25:
            c = self.call(self.choice(["zeros_like", "ones_like"]), [a])
            half = self.call("add", [c, self.lit(0.5)], style="infix")
            return self.call("multiply", [a, half], style="infix")
        if r < 0.4:
            fill = round(self.rng.uniform(0.5, 2.0), 3)
            c = self.call("full", [], {"shape": shape, "fill_value": fill})
            return self.call("multiply", [a, c], style="infix")
        if r < 0.5:  # a traced fill value: the B4 (gradient lost)
            s = self.call("mean", [a])
            return self.call("full", [], {"shape": (n,), "fill_value": Traced(*s)})
        if r < 0.65:
            start = self.rng.choice([0, 1])
            kw = {"start": start, "stop": start + n} if self.rng.random() < 0.5 else {"start": n}
            c = self.call("arange", [], kw)
            return self.call("multiply", [a, c], style="infix")
        if r < 0.78:
            c = self.call("linspace", [], {"start": 0.5, "stop": 1.5, "num": n})
            return self.call("add", [a, c], style="infix")
        if r < 0.85:  # a traced end point: the B4
            s = self.call("sum", [a])
            kw = {"start": Traced(*s), "stop": 2.0, "num": self.rng.randint(2, 5)}
            return self.call("linspace", [], kw)
        m = self.rng.randint(2, 3)
        kwargs: dict[str, Any] = {"N": m}
        if self.rng.random() < 0.3:
            kwargs["k"] = self.choice([-1, 1])
        eye = self.call("eye", [], kwargs)
        s = self.call(self.choice(["sum", "mean"]), [a])
        return self.call("multiply", [eye, s], style="infix")

    # ----------------------------------------------------------------- shape ops
    def shape_op(self, depth: int) -> V:
        a = self.expr(depth)
        if isinstance(a[1], tuple):
            raise Reject
        x = np.asarray(a[1])
        op = self.choice(SHAPE)
        nd = x.ndim
        if op == "reshape":
            return self.call("reshape", [a], {"shape": self.new_shape(x.size)})
        if op == "transpose" and nd >= 2:
            axes = tuple(self.rng.sample(range(nd), nd)) if self.rng.random() < 0.6 else None
            return self.call("transpose", [a], {} if axes is None else {"axes": axes})
        if op == "swapaxes" and nd >= 2:
            i, j = self.rng.sample(range(-nd, nd), 2)
            return self.call("swapaxes", [a], {"axis1": i, "axis2": j})
        if op == "expand_dims":
            return self.call("expand_dims", [a], {"axis": self.rng.randrange(-nd - 1, nd + 1)})
        if op == "squeeze":
            ones = [i for i, d in enumerate(x.shape) if d == 1]
            if not ones:
                a = self.call("expand_dims", [a], {"axis": self.rng.randrange(-nd - 1, nd + 1)})
                ones = [i for i, d in enumerate(np.shape(a[1])) if d == 1]
            kwargs = {"axis": self.choice(ones)} if self.rng.random() < 0.6 else {}
            return self.call("squeeze", [a], kwargs)
        if op in ("concatenate", "stack") and nd >= 1:
            k = self.rng.randint(1, 3)
            axis = (
                self.rng.randrange(-nd, nd)
                if op == "concatenate"
                else self.rng.randrange(-nd - 1, nd + 1)
            )
            items = [a]
            for _ in range(k):
                shape = list(x.shape)
                if op == "concatenate":
                    shape[axis] = self.rng.randint(1, 2)
                items.append(self.of_shape(tuple(shape), depth))
            self.rng.shuffle(items)
            seq = (P.Seq(tuple(e for e, _ in items)), [v for _, v in items])
            kwargs = {"axis": axis} if axis != 0 or self.rng.random() < 0.5 else {}
            value = self.model.call(op, [seq[1]], kwargs)
            if np.size(value) > MAX_SIZE:
                raise Reject
            return P.Call(op, (seq[0],), tuple(kwargs.items())), value
        if op == "broadcast_to":
            target = tuple(d if d != 1 else self.rng.randint(1, 3) for d in x.shape)
            if self.rng.random() < 0.5:
                target = (self.rng.randint(1, 3), *target)
            return self.call("broadcast_to", [a], {"shape": target})
        if op == "flip":
            kwargs = {} if nd == 0 or self.rng.random() < 0.3 else {"axis": self.axis_arg(nd)}
            return self.call("flip", [a], kwargs)
        if op == "tile":
            reps: Any = (
                self.rng.randint(1, 2)
                if self.rng.random() < 0.4
                else tuple(self.rng.randint(1, 2) for _ in range(self.rng.randint(1, nd + 1)))
            )
            return self.call("tile", [a], {"reps": reps})
        if op == "repeat":
            kwargs = {"repeats": self.rng.randint(1, 3)}
            if nd and self.rng.random() < 0.7:
                kwargs["axis"] = self.rng.randrange(-nd, nd)
            return self.call("repeat", [a], kwargs)
        raise Reject

    def new_shape(self, n: int) -> tuple[int, ...]:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        d = self.choice(divisors)
        shape: tuple[int, ...] = (d, n // d) if self.rng.random() < 0.7 else (n,)
        if self.rng.random() < 0.3:
            shape = tuple(-1 if i == 0 else s for i, s in enumerate(shape))
        if n == 1 and self.rng.random() < 0.5:
            shape = ()
        return shape

    # ----------------------------------------------------------------- indexing
    def indexing(self, depth: int) -> V:
        a = self.expr(depth)
        # 2.0[None] (or t = 2.0; t[None]) is no program: a number is a Python float
        if isinstance(a[1], tuple) or type(a[1]) in (float, int):
            raise Reject
        return self.index(a, self.index_entries(np.shape(a[1])))

    def index_entries(self, shape: tuple[int, ...]) -> tuple[Any, ...]:
        nd = len(shape)
        used = self.rng.randint(0 if nd == 0 else 1, nd)
        entries: list[Any] = []
        # advanced indices broadcast together: one shape for all of them
        adv_shape = self.choice([(2,), (3,), (1,), (2, 2), (2, 1)])
        ellipsis = nd > used and self.rng.random() < 0.4
        # with an Ellipsis, the entries after it index the last axes
        split = self.rng.randint(0, used) if ellipsis else used
        axes = list(range(split)) + list(range(nd - (used - split), nd))
        for axis in axes:
            n = shape[axis]
            r = self.rng.random() if n else 0.4  # an empty axis takes a slice
            if r < 0.25:
                entries.append(self.rng.randrange(-n, n))
            elif r < 0.55:
                entries.append(self.random_slice(n))
            elif r < 0.8:
                flat = [self.rng.randrange(-n, n) for _ in range(size(adv_shape))]
                entries.append(np.asarray(flat).reshape(adv_shape).tolist())
            else:
                entries.append(P.Slice(None, None, None))
        if ellipsis:
            entries.insert(split, Ellipsis)
        for _ in range(self.rng.choice([0, 0, 1, 2])):
            entries.insert(self.rng.randint(0, len(entries)), None)
        return tuple(entries)

    def random_slice(self, n: int) -> P.Slice:
        step = self.choice([None, None, 1, 2, -1, -2])
        start = self.choice([None, self.rng.randrange(-n, n)])
        stop = self.choice([None, self.rng.randint(-n, n)])
        s = slice(start, stop, step)
        if len(range(*s.indices(n))) == 0 and self.rng.random() < 0.9:
            # size-0 results: rare on purpose (the A6 class)
            return P.Slice(None, None, step)
        return P.Slice(start, stop, step)

    # ----------------------------------------------------------------- linear algebra
    def linalg(self, depth: int) -> V:
        op = self.choice(LINALG)
        n, m, k = self.rng.randint(2, 3), self.rng.randint(1, 3), self.rng.randint(2, 3)
        if op == "dot":
            kind = self.rng.randrange(3)
            shapes = [((n,), (n,)), ((m, n), (n,)), ((m, n), (n, k))][kind]
            return self.call("dot", [self.of_shape(s, depth) for s in shapes])
        if op == "matmul":
            kind = self.rng.randrange(3)
            shapes = [((m, n), (n, k)), ((n,), (n, k)), ((2, m, n), (n, k))][kind]
            args = [self.of_shape(s, depth) for s in shapes]
            return self.call("matmul", args, style="infix" if self.rng.random() < 0.6 else "call")
        if op == "outer":
            return self.call("outer", [self.expr(depth), self.expr(depth)])
        if op == "inner":
            a = self.expr(depth)
            if isinstance(a[1], tuple) or np.ndim(a[1]) == 0:
                raise Reject
            b = self.of_shape(
                (self.rng.randint(1, 2), np.shape(a[1])[-1])[self.rng.randrange(2) :], depth
            )
            return self.call("inner", [a, b])
        if op == "tensordot":
            if self.rng.random() < 0.5:
                args = [self.of_shape((m, n), depth), self.of_shape((n, k), depth)]
                return self.call("tensordot", args, {"axes": 1})
            args = [self.of_shape((n, m), depth), self.of_shape((k, n), depth)]
            return self.call("tensordot", args, {"axes": ((0,), (1,))})
        if op == "einsum":
            return self.einsum(depth, n, m, k)
        if op == "trace":
            if self.rng.random() < 0.6:
                a = self.of_shape((n, k), depth)
                return self.call("trace", [a], {"offset": self.choice([0, 0, 1, -1])})
            a = self.of_shape((2, n, n), depth)
            return self.call("trace", [a], {"axis1": 1, "axis2": 2})
        if op == "diag":
            kw = {"k": self.choice([-1, 1])} if self.rng.random() < 0.3 else {}
            shape = (n,) if self.rng.random() < 0.5 else (n, k)
            return self.call("diag", [self.of_shape(shape, depth)], kw)
        if op in ("tril", "triu"):
            kw = {"k": self.choice([-1, 1, 2])} if self.rng.random() < 0.5 else {}
            shape = (n, k) if self.rng.random() < 0.6 else (2, n, n)
            return self.call(op, [self.of_shape(shape, depth)], kw)
        if op == "solve":
            b = self.of_shape((n,) if self.rng.random() < 0.5 else (n, k), depth)
            return self.call("solve", [self.well_conditioned(n, depth), b])
        if op == "cholesky":
            return self.call("cholesky", [self.spd(n, depth)])
        if op == "slogdet":
            return self.index(self.call("slogdet", [self.well_conditioned(n, depth)]), (1,))
        return self.call(op, [self.well_conditioned(n, depth)])

    def einsum(self, depth: int, n: int, m: int, k: int) -> V:
        templates = [
            ("ij,jk->ik", [(m, n), (n, k)]),
            ("ij->ji", [(m, n)]),
            ("ii->", [(n, n)]),
            ("i,i->", [(n,), (n,)]),
            ("ij,j->i", [(m, n), (n,)]),
            ("i,j->ij", [(n,), (k,)]),
            ("bij,bjk->bik", [(2, m, n), (2, n, k)]),
            ("ij,ij->", [(m, n), (m, n)]),
        ]
        subscripts, shapes = self.choice(templates)
        operands = [self.of_shape(s, depth) for s in shapes]
        sub = (P.Lit(subscripts), subscripts)
        value = self.model.call("einsum", [subscripts] + [v for _, v in operands], {})
        return P.Call("einsum", (sub[0], *(e for e, _ in operands))), value

    def well_conditioned(self, n: int, depth: int) -> V:
        """tanh(m) + n*I: strictly diagonally dominant, positive diagonal (det > 0)."""
        m = self.of_shape((n, n), depth)
        eye = self.call("eye", [], {"N": n})
        scaled = self.call("multiply", [eye, self.lit(float(n))], style="infix")
        return self.call("add", [self.call("tanh", [m]), scaled], style="infix")

    def spd(self, n: int, depth: int) -> V:
        """c @ c.T + I with c = tanh(m): symmetric positive definite, eigenvalues in [1, n+1]."""
        c = self.call("tanh", [self.of_shape((n, n), depth)])
        ct = self.call("transpose", [c])
        gram = self.call("matmul", [c, ct], style="infix")
        return self.call("add", [gram, self.call("eye", [], {"N": n})], style="infix")


# --------------------------------------------------------------------------- programs

NAMES = ["x", "y", "w"]


def make_inputs(rng: random.Random, dtype: str) -> dict[str, np.ndarray]:
    count = rng.choice([1, 1, 2, 2, 3])
    inputs = {}
    for name in NAMES[:count]:
        shape = rng.choice(INPUT_SHAPES)
        values = np.array(
            [rng.uniform(0.3, 1.5) * rng.choice([-1, 1]) for _ in range(size(shape))]
        ).reshape(shape)
        if dtype == "float32":
            values = values.astype(np.float32).astype(np.float64)
        inputs[name] = values
    return inputs


def program(seed: int) -> Spec:
    """The program of this seed (the same seed always gives the same program)."""
    rng = random.Random(seed)
    for _ in range(20):
        try:
            spec = _attempt(rng)
        except (Reject, P.LoopLimit, FloatingPointError, RecursionError, ValueError, IndexError):
            continue  # an attempt that went nowhere (an empty axis, a shape that never fit)
        if spec is not None:
            spec.seed = seed
            return spec
    raise RuntimeError(f"no program for seed {seed}")


def _attempt(rng: random.Random) -> Spec | None:
    dtype = "float32" if rng.random() < 0.25 else "float64"
    inputs = make_inputs(rng, dtype)
    pool = [(P.Name(n), v) for n, v in inputs.items()]
    g = Generator(rng, pool)
    depth = rng.choice([2, 3, 3, 4])
    want_scalar = rng.random() < 0.5
    n_out = 1 if rng.random() < 0.75 else rng.randint(2, 3)
    r = rng.random()
    if r < 0.45:
        body: tuple[Any, ...] = (P.Return(tuple(g.expr(depth)[0] for _ in range(n_out))),)
        body = _outputs(g, body, want_scalar)
    elif r < 0.65:
        body = _straight(g, depth, n_out, want_scalar)
    else:
        body = _control(g, depth, n_out, want_scalar)
    prog = P.Program(body, tuple((n, v.shape) for n, v in inputs.items()))
    model = NumpyModel()
    outputs = P.run(prog, model, dict(inputs))
    for o in outputs:
        if isinstance(o, tuple) or np.any(np.abs(np.asarray(o, float)) > MAX_ABS):
            return None
    names = list(inputs)
    constants: frozenset[str] = frozenset()
    wrt = None
    if len(names) > 1 and rng.random() < 0.2:
        constants = frozenset([rng.choice(names)])
    elif len(names) > 1 and rng.random() < 0.15:
        wrt = tuple(rng.sample(names, rng.randint(1, len(names) - 1)))
    return Spec(prog, inputs, dtype, constants, wrt, model.decisions, outputs)


def _outputs(g: Generator, body: tuple[Any, ...], want_scalar: bool) -> tuple[Any, ...]:
    """Replace the Return's values: one scalar when wanted, and no tuple-valued outputs."""
    ret = body[-1]
    env = _values(body[:-1], g)
    values = []
    for e in ret.values:
        v = P.evaluate(e, env, g.model)
        if isinstance(v, tuple):
            e, v = P.Index(e, (1,)), v[1]
        values.append((e, v))
    if want_scalar:
        values = [values[0]]
        e, v = values[0]
        if np.size(v) != 1 or np.ndim(v) != 0:
            op = g.choice(["sum", "sum", "mean", "logsumexp", "norm", "max"])
            try:
                values = [g.call(op, [(e, v)])]
            except Reject:
                values = [g.call("sum", [(e, v)])]
    return (*body[:-1], P.Return(tuple(e for e, _ in values)))


def _values(body: tuple[Any, ...], g: Generator) -> dict[str, Any]:
    env = {n.name: v for n, v in g.pool if isinstance(n, P.Name)}
    model = NumpyModel()
    P._block(body, env, model)
    return env


def _straight(g: Generator, depth: int, n_out: int, want_scalar: bool) -> tuple[Any, ...]:
    body: list[Any] = []
    for i in range(g.rng.randint(1, 4)):
        r = g.rng.random()
        if r < 0.15:
            a, b = g.expr(depth - 1), g.expr(depth - 1)
            names = (f"t{i}a", f"t{i}b")
            body.append(P.Assign(names, (a[0], b[0])))
            g.pool += [(P.Name(names[0]), a[1]), (P.Name(names[1]), b[1])]
        elif r < 0.25:
            n = g.rng.randint(2, 3)
            call = g.call("slogdet", [g.well_conditioned(n, depth - 1)])
            names = (f"t{i}s", f"t{i}l")
            body.append(P.Assign(names, call[0]))
            g.pool += [(P.Name(names[0]), call[1][0]), (P.Name(names[1]), call[1][1])]
        else:
            e = g.expr(depth)
            if isinstance(e[1], tuple):
                continue
            body.append(P.Assign((f"t{i}",), e[0]))
            g.pool.append((P.Name(f"t{i}"), e[1]))
    ret = P.Return(tuple(g.expr(depth - 1)[0] for _ in range(n_out)))
    return _outputs(g, (*body, ret), want_scalar)


def _control(g: Generator, depth: int, n_out: int, want_scalar: bool) -> tuple[Any, ...]:
    body: list[Any] = []
    for i in range(g.rng.randint(1, 3)):
        kind = g.rng.choice(["if", "for", "while", "aug", "assign"])
        target = f"t{i}"
        start = g.expr(depth - 1)
        if isinstance(start[1], tuple):
            continue
        body.append(P.Assign((target,), start[0]))
        g.pool.append((P.Name(target), start[1]))
        if kind == "if":
            body.append(_if(g, target, depth))
        elif kind == "for":
            body.append(_for(g, target, depth, i))
        elif kind == "while":
            loop = _while(g, target, depth, tuple(body))
            if loop is not None:
                body.append(loop)
        elif kind == "aug":
            shape = np.shape(start[1])
            body.append(
                P.AugAssign(target, g.choice(["+", "-", "*"]), g.of_shape(shape, depth - 1)[0])
            )
        # refresh the pool's values after control flow (define-by-run)
        env = _values(tuple(body), g)
        g.pool = [
            (n, env[n.name]) if isinstance(n, P.Name) and n.name in env else (n, v)
            for n, v in g.pool
        ]
    ret = P.Return(tuple(g.expr(depth - 1)[0] for _ in range(n_out)))
    return _outputs(g, (*body, ret), want_scalar)


def _if(g: Generator, target: str, depth: int) -> P.If:
    shape = np.shape(dict((n.name, v) for n, v in g.pool if isinstance(n, P.Name))[target])
    s = g.call(g.choice(["sum", "mean", "max", "norm"]), [g.expr(depth - 1)])
    offset = g.rng.uniform(0.2, 0.6) * max(1.0, abs(float(s[1]))) * g.choice([-1, 1])
    cond = g.call(
        g.choice(["greater", "less"]), [s, g.lit(round(float(s[1]) + offset, 3))], style="infix"
    )
    if g.rng.random() < 0.2:
        other = g.call("less", [g.call("sum", [g.leaf()]), g.lit(100.0)], style="infix")
        cond = g.call(g.choice(["logical_and", "logical_or"]), [cond, other], style="infix")

    def branch() -> tuple[Any, ...]:
        return (P.Assign((target,), g.of_shape(shape, depth - 1)[0]),)

    orelse: tuple[Any, ...] = branch()
    if g.rng.random() < 0.3:
        inner = g.call("less", [g.call("sum", [g.leaf()]), g.lit(0.123)], style="infix")
        orelse = (P.If(inner[0], branch(), branch()),)
    return P.If(cond[0], branch(), orelse)


def _for(g: Generator, target: str, depth: int, i: int) -> P.For:
    env = dict((n.name, v) for n, v in g.pool if isinstance(n, P.Name))
    shape = np.shape(env[target])
    safe = Generator(g.rng, g.pool, safe=True)
    step = safe.of_shape(shape, 1)
    var = f"i{i}"
    decay = g.lit(g.choice([0.5, 0.8, 0.9]))
    update = P.Call(
        "add",
        (
            P.Call("multiply", (P.Name(target), decay[0]), style="infix"),
            P.Call("multiply", (step[0], P.Name(var)), style="infix"),
        ),
        style="infix",
    )
    return P.For(var, g.rng.randint(1, 3), (P.Assign((target,), update),))


def _while(g: Generator, target: str, depth: int, before: tuple[Any, ...]) -> P.While | None:
    """``while metric(t) < bound: t = t * 1.5 + small``, the bound set for 1-3 turns."""
    env = _values(before, g)
    if np.size(env[target]) == 0:
        return None
    growth = g.lit(g.choice([1.5, 2.0]))
    safe = Generator(g.rng, g.pool, safe=True)
    small = safe.of_shape(np.shape(env[target]), 1)
    update = P.Call(
        "add",
        (
            P.Call("multiply", (P.Name(target), growth[0]), style="infix"),
            P.Call("multiply", (P.Call("tanh", (small[0],)), P.Lit(0.1)), style="infix"),
        ),
        style="infix",
    )
    metric = (
        P.Call("norm", (P.Name(target),))
        if g.rng.random() < 0.5
        else P.Call("sum", (P.Call("square", (P.Name(target),)),))
    )
    model = NumpyModel(checked=False)
    values, scratch = [], dict(env)
    for _ in range(4):
        values.append(float(P.evaluate(metric, scratch, model)))
        scratch[target] = P.evaluate(update, scratch, model)
    turns = g.rng.randint(1, 3)
    if not all(b > a * 1.2 + 0.05 for a, b in zip(values, values[1:], strict=False)):
        return None
    bound = round((values[turns - 1] + values[turns]) / 2, 4)
    cond = P.Call("less", (metric, P.Lit(bound)), style="infix")
    return P.While(cond, (P.Assign((target,), update),))
