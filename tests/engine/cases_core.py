"""Test rows for the elementwise, reduction, shape, softmax and constructor families."""

from __future__ import annotations

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case

UNARY_SHAPES = [(), (3,), (2, 3)]
BINARY_SHAPES = [((), (3,)), ((2, 3), (3,)), ((1, 3), (2, 1)), ((2, 3), (2, 3))]

UNARY = {
    "negative": "real",
    "abs": "real",
    "sqrt": "pos",
    "square": "real",
    "exp": "real",
    "expm1": "real",
    "log": "pos",
    "log1p": "pos",
    "log2": "pos",
    "log10": "pos",
    "sin": "real",
    "cos": "real",
    "tan": "unit",
    "arcsin": "unit",
    "arccos": "unit",
    "arctan": "real",
    "sinh": "real",
    "cosh": "real",
    "tanh": "real",
    "sigmoid": "real",
    "relu": "real",
    "softplus": "real",
}
KINKED = {"abs", "relu"}  # second derivative is zero a.e.; finite differences still agree

BINARY = {
    "add": "real",
    "subtract": "real",
    "multiply": "real",
    "divide": "pos",
    "power": "pos",
    "arctan2": "pos",
    "maximum": "real",
    "minimum": "real",
}


def _unary(name: str, domain: str) -> list[Case]:
    op = getattr(anp, name)
    return [Case(name, op, (s,), domain=domain) for s in UNARY_SHAPES]


def _binary(name: str, domain: str) -> list[Case]:
    op = getattr(anp, name)
    return [Case(name, op, shapes, domain=domain) for shapes in BINARY_SHAPES]


def _spread(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Distinct values well apart, so max/min and clip have no ties near the kinks."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.37 - 0.9 + rng.uniform(0, 0.05, n)).reshape(shape)


def _reductions() -> list[Case]:
    rows = []
    variants = [
        ((3,), {}),
        ((2, 3), {}),
        ((2, 3), {"axis": 0}),
        ((2, 3), {"axis": -1, "keepdims": True}),
        ((2, 3, 2), {"axis": (0, 2)}),
    ]
    for name in ["sum", "mean", "prod", "max", "min", "var", "std", "norm", "logsumexp"]:
        op = getattr(anp, name)
        for shape, kw in variants:

            def fn(x, op=op, kw=kw):  # type: ignore[no-untyped-def]
                return op(x, **kw)

            make = (lambda rng, s=shape: [_spread(rng, s)]) if name in ("max", "min") else None
            tag = f"{'x'.join(map(str, shape))}-{kw}"
            rows.append(Case(name, fn, (shape,), make=make, tag=tag))
    rows.append(Case("var", lambda x: anp.var(x, axis=1, ddof=1), ((2, 3),), tag="ddof1"))
    rows.append(Case("std", lambda x: anp.std(x, ddof=1), ((4,),), tag="ddof1"))
    rows.append(Case("norm", lambda x: anp.norm(x, ord=1), ((4,),), smooth=False, tag="ord1"))
    rows.append(Case("norm", lambda x: anp.norm(x, ord=3, axis=1), ((2, 3),), tag="ord3"))
    rows.append(
        Case(
            "norm",
            lambda x: anp.norm(x, ord=np.inf),
            make=lambda rng: [_spread(rng, (4,))],
            smooth=False,
            tag="ordinf",
        )
    )
    rows.append(Case("prod", lambda x: anp.prod(x, axis=0), ((3, 2),), tag="axis0"))
    # exact to every order with zeros in the product (the rule has no division there)
    zeros = [
        ("one-zero", (4,), {}, [1.5, 0.0, -0.7, 1.2]),
        ("issue", (3,), {}, [2.0, 0.0, 0.3]),
        ("two-zeros", (4,), {}, [0.0, 1.3, 0.0, -0.6]),
        ("all-zero", (3,), {}, [0.0, 0.0, 0.0]),
        ("axis0", (3, 2), {"axis": 0}, [[0.0, 1.1], [0.7, 0.0], [-1.2, 0.0]]),
        ("axis1-keep", (2, 3), {"axis": 1, "keepdims": True}, [[0.0, 1.1, 0.7], [2.0, 0.5, 0.9]]),
        ("axes02", (2, 2, 2), {"axis": (0, 2)}, np.array([0.0, 1, 2, 0, 1.5, -1, 0.5, 2])),
    ]
    for tag, shape, kw, values in zeros:
        rows.append(
            Case(
                "prod",
                lambda x, kw=kw: anp.prod(x, **kw),
                make=lambda rng, v=values, s=shape: [np.reshape(np.array(v, dtype=float), s)],
                tag=f"zero-{tag}",
            )
        )
    return rows


def _softmax() -> list[Case]:
    return [
        Case("softmax", lambda x: anp.softmax(x), ((4,),)),
        Case("softmax", lambda x: anp.softmax(x, axis=0), ((3, 2),)),
        Case("log_softmax", lambda x: anp.log_softmax(x), ((2, 4),)),
        Case("log_softmax", lambda x: anp.log_softmax(x, axis=0), ((3, 2),)),
    ]


def _shape_ops() -> list[Case]:
    return [
        Case("reshape", lambda x: anp.reshape(x, (3, 2)), ((2, 3),)),
        Case("reshape", lambda x: anp.reshape(x, (-1,)), ((2, 3),), tag="infer"),
        Case("transpose", lambda x: anp.transpose(x), ((2, 3),)),
        Case("transpose", lambda x: anp.transpose(x, (1, 2, 0)), ((2, 3, 2),), tag="axes"),
        Case("swapaxes", lambda x: anp.swapaxes(x, 0, -1), ((2, 3, 2),)),
        Case("expand_dims", lambda x: anp.expand_dims(x, 1), ((2, 3),)),
        Case("expand_dims", lambda x: anp.expand_dims(x, (0, -1)), ((3,),), tag="tuple"),
        Case("squeeze", lambda x: anp.squeeze(x), ((1, 3, 1),)),
        Case("squeeze", lambda x: anp.squeeze(x, axis=0), ((1, 3),), tag="axis"),
        Case("concatenate", lambda x, y: anp.concatenate([x, y], axis=0), ((2, 3), (1, 3))),
        Case(
            "concatenate",
            lambda x, y: anp.concatenate([x, y], axis=-1),
            ((2, 1), (2, 3)),
            tag="last",
        ),
        Case("stack", lambda x, y: anp.stack([x, y]), ((3,), (3,))),
        Case("stack", lambda x, y: anp.stack([x, y], axis=1), ((2, 3), (2, 3)), tag="axis1"),
        Case("broadcast_to", lambda x: anp.broadcast_to(x, (2, 3)), ((3,),)),
        Case("broadcast_to", lambda x: anp.broadcast_to(x, (2, 2, 3)), ((2, 1, 3),), tag="mid"),
        Case("flip", lambda x: anp.flip(x), ((2, 3),)),
        Case("flip", lambda x: anp.flip(x, 1), ((2, 3),), tag="axis"),
        Case("tile", lambda x: anp.tile(x, (2, 1)), ((2, 3),)),
        Case("tile", lambda x: anp.tile(x, (2, 2)), ((3,),), tag="promote"),
        Case("repeat", lambda x: anp.repeat(x, 2, axis=0), ((2, 3),)),
        Case("repeat", lambda x: anp.repeat(x, 3), ((2, 2),), tag="flat"),
        Case("getitem", lambda x: x[1], ((3, 2),), tag="int"),
        Case("getitem", lambda x: x[1:3], ((4,),), tag="slice"),
        Case("getitem", lambda x: x[:, 0], ((2, 3),), tag="col"),
        Case("getitem", lambda x: x[::-1], ((4,),), tag="reverse"),
        Case("getitem", lambda x: x[None, ..., 1], ((2, 3),), tag="newaxis"),
        Case("getitem", lambda x: x[np.array([0, 2, 0])], ((3, 2),), tag="gather-dup"),
        Case("getitem", lambda x: x[:, np.array([1, 1])], ((2, 3),), tag="gather-col"),
        Case("where", lambda x, y: anp.where(x > 0, x, y), ((2, 3), (3,))),
        Case("where", lambda x, y: anp.where(x > y, x * y, 1.0), ((3,), (3,)), tag="const"),
        Case(
            "clip",
            lambda x: anp.clip(x, -0.5, 0.5),
            make=lambda rng: [_spread(rng, (2, 3))],
            smooth=False,
        ),
        Case("floor_divide", lambda x, y: x // y + x, ((3,), (3,)), domain="pos", tag="with-x"),
        Case("remainder", lambda x, y: x % y, ((3,), ()), domain="pos"),
        Case("sign", lambda x: anp.sign(x) * x, ((3,),), smooth=False, tag="times-x"),
    ]


def _no_grad(op: str, fn, reference, shapes) -> Case:  # type: ignore[no-untyped-def]
    return Case(op, fn, shapes, diff=False, reference=reference)


def _constants() -> list[Case]:
    rows = [
        _no_grad(name, getattr(anp, name), getattr(np, name), ((2, 3), (3,)))
        for name in ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]
    ]
    rows += [
        _no_grad(
            "logical_and",
            lambda x, y: anp.logical_and(x > 0, y > 0),
            lambda x, y: np.logical_and(x > 0, y > 0),
            ((3,), (3,)),
        ),
        _no_grad(
            "logical_or",
            lambda x, y: anp.logical_or(x > 0, y > 0),
            lambda x, y: np.logical_or(x > 0, y > 0),
            ((3,), (3,)),
        ),
        _no_grad("logical_not", lambda x: anp.logical_not(x > 0), lambda x: ~(x > 0), ((3,),)),
        _no_grad("zeros", lambda x: anp.zeros((2, 3)) + x, lambda x: np.zeros((2, 3)) + x, ((3,),)),
        _no_grad("ones", lambda x: anp.ones(3) * x, lambda x: np.ones(3) * x, ((3,),)),
        _no_grad("full", lambda x: anp.full((3,), 2.5) * x, lambda x: np.full(3, 2.5) * x, ((3,),)),
        _no_grad("eye", lambda x: anp.eye(3) * x, lambda x: np.eye(3) * x, ((3,),)),
        _no_grad("arange", lambda x: anp.arange(3) * x, lambda x: np.arange(3) * x, ((3,),)),
        _no_grad(
            "linspace",
            lambda x: anp.linspace(0, 1, 3) * x,
            lambda x: np.linspace(0, 1, 3) * x,
            ((3,),),
        ),
        _no_grad("zeros_like", lambda x: anp.zeros_like(x) + x, lambda x: x, ((3,),)),
        _no_grad("detach", lambda x: anp.detach(x * x), lambda x: x * x, ((3,),)),
        _no_grad("stop_gradient", lambda x: anp.stop_gradient(x), lambda x: x, ((3,),)),
        _no_grad("ones_like", lambda x: anp.ones_like(x) * x, lambda x: x, ((3,),)),
    ]
    return rows


def _traced_constructors() -> list[Case]:
    """Constructors given traced values: full is linear in its fill value, linspace in its
    start and stop (scalars, size-1 arrays, and fill values that broadcast)."""
    return [
        Case("full", lambda x: anp.full((2, 3), x) * x, ((),), tag="scalar-fill"),
        Case("full", lambda x: anp.full((2, 3), x) ** 2, ((3,),), tag="row-fill"),
        Case("full", lambda x: anp.sin(anp.full((2,), fill_value=x)), ((1,),), tag="keyword"),
        Case("linspace", lambda a, b: anp.linspace(a, b, 5) ** 2, ((), ()), tag="start-stop"),
        Case("linspace", lambda a: anp.exp(anp.linspace(a, 2.0, 4)), ((1,),), tag="start"),
        Case("linspace", lambda b: anp.linspace(0.5, b, 1) * b, ((),), tag="num-1"),
    ]


CASES: list[Case] = (
    [c for name, dom in UNARY.items() for c in _unary(name, dom)]
    + [c for name, dom in BINARY.items() for c in _binary(name, dom)]
    + _reductions()
    + _softmax()
    + _shape_ops()
    + _constants()
    + _traced_constructors()
)
