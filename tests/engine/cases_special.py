"""Test rows for the ufuncs (engine/ops/ufuncs.py) and scipy.special (engine/ops/special.py)
families: each input drawn inside the function's domain, away from its kinks and jumps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special as sc

import engine.numpy as anp
from tests.engine.cases import Case

SHAPES = [(), (3,), (2, 3)]
PAIRS = [((), (3,)), ((2, 3), (3,)), ((1, 3), (2, 1))]


def _f32(values: list[float]) -> np.ndarray:
    """A constant that keeps a float32 row float32 (a float64 array would promote it, as in
    NumPy); exact in both types."""
    return np.array(values, dtype=np.float32)


def _within(lo: float, hi: float, *shapes: tuple[int, ...]) -> Callable[..., list[np.ndarray]]:
    return lambda rng: [rng.uniform(lo, hi, size=s) for s in shapes]


def _unary(name: str, lo: float, hi: float, shapes: Any = SHAPES) -> list[Case]:
    op = getattr(anp, name)
    return [Case(name, op, (s,), make=_within(lo, hi, s)) for s in shapes]


def _binary(name: str, lo: float, hi: float, lo2: float | None = None, hi2: float | None = None):  # type: ignore[no-untyped-def]
    op = getattr(anp, name)
    lo2, hi2 = (lo, hi) if lo2 is None else (lo2, hi2)
    rows = []
    for sx, sy in PAIRS:

        def make(rng, sx=sx, sy=sy):  # type: ignore[no-untyped-def]
            return [rng.uniform(lo, hi, size=sx), rng.uniform(lo2, hi2, size=sy)]

        rows.append(Case(name, op, (sx, sy), make=make))
    return rows


UNARY: dict[str, tuple[float, float]] = {
    # ufuncs
    "exp2": (-2.0, 2.0),
    "arcsinh": (-2.0, 2.0),
    "arccosh": (1.2, 3.0),
    "arctanh": (-0.8, 0.8),
    "sinc": (-2.0, 2.0),
    "deg2rad": (-2.0, 2.0),
    "radians": (-2.0, 2.0),
    "rad2deg": (-2.0, 2.0),
    "degrees": (-2.0, 2.0),
    "reciprocal": (0.5, 2.0),
    "cbrt": (0.5, 2.0),
    "positive": (-2.0, 2.0),
    # scipy.special
    "erf": (-2.0, 2.0),
    "erfc": (-2.0, 2.0),
    "erfinv": (-0.9, 0.9),
    "erfcinv": (0.1, 1.9),
    "ndtr": (-2.0, 2.0),
    "log_ndtr": (-6.0, 2.0),
    "ndtri": (0.1, 0.9),
    "gamma": (0.5, 3.0),
    "gammaln": (0.5, 3.0),
    "rgamma": (0.5, 3.0),
    "digamma": (0.5, 3.0),
    "psi": (0.5, 3.0),
    "expit": (-4.0, 4.0),
    "logit": (0.1, 0.9),
    "i0": (-3.0, 3.0),
    "i1": (-3.0, 3.0),
    "i0e": (0.2, 3.0),
    "i1e": (0.2, 3.0),
    "j0": (0.2, 8.0),
    "j1": (0.2, 8.0),
    "y0": (0.5, 8.0),
    "y1": (0.5, 8.0),
}
BINARY: dict[str, tuple[float, float, float, float]] = {
    "hypot": (-2.0, 2.0, -2.0, 2.0),
    "logaddexp": (-2.0, 2.0, -2.0, 2.0),
    "logaddexp2": (-2.0, 2.0, -2.0, 2.0),
    "float_power": (0.5, 2.0, -2.0, 2.0),
    "fmod": (-3.0, 3.0, 0.5, 1.5),
    "mod": (-3.0, 3.0, 0.5, 1.5),
    "copysign": (-2.0, 2.0, -2.0, 2.0),
    "true_divide": (-2.0, 2.0, 0.5, 2.0),
    "beta": (0.5, 3.0, 0.5, 3.0),
    "betaln": (0.5, 3.0, 0.5, 3.0),
    "xlogy": (-2.0, 2.0, 0.5, 2.0),
    "xlog1py": (-2.0, 2.0, -0.5, 2.0),
}


def _steps() -> list[Case]:
    """Step functions times x: the gradient is the step's value (its own is 0)."""
    rows = []
    for name in ["floor", "ceil", "trunc", "fix", "rint"]:
        op = getattr(anp, name)
        rows.append(Case(name, lambda x, op=op: op(x) * x, ((2, 3),), tag="times-x"))
    rows.append(Case("round", lambda x: anp.round(x) * x, ((3,),), tag="times-x"))
    rows.append(Case("round", lambda x: anp.round(x, 2) + x, ((3,),), tag="decimals2"))
    rows.append(Case("around", lambda x: anp.around(x, decimals=1) * x, ((3,),), tag="decimals1"))
    rows.append(Case("fabs", anp.fabs, ((2, 3),), smooth=False))
    rows.append(Case("absolute", anp.absolute, ((2, 3),), smooth=False))
    for name in ("fmax", "fmin"):
        op = getattr(anp, name)

        def spread(rng, shape=(2, 3)):  # type: ignore[no-untyped-def]  # no ties near a kink
            n = int(np.prod(shape))
            values = rng.permutation(2 * n) * 0.37 - 2.0
            return [values[:n].reshape(shape), values[n:].reshape(shape)]

        rows.append(Case(name, op, ((2, 3), (2, 3)), make=spread, smooth=False))
        rows.append(
            Case(
                name,
                lambda y, op=op: op(_f32([np.nan, 1.0, -1.0]), y) * y,
                ((3,),),
                tag="nan",
            )
        )
    rows.append(
        Case(
            "heaviside",
            lambda y: anp.heaviside(_f32([-1.0, 0.0, 2.0]), y) * y,
            ((3,),),
            tag="x2-at-0",
        )
    )
    rows.append(Case("heaviside", lambda x: anp.heaviside(x, 0.5) * x, ((2, 3),), tag="x1"))
    rows.append(
        Case(
            "nan_to_num",
            lambda x: anp.nan_to_num(anp.where(x > 0, x, np.inf), posinf=3.0) * x,
            ((2, 3),),
            tag="posinf",
        )
    )
    rows.append(
        Case(
            "nan_to_num",
            lambda x: anp.nan_to_num(anp.where(x > 0, x * x, -np.inf), neginf=-2.0, nan=1.0),
            ((4,),),
            tag="neginf",
        )
    )
    # sinc at and near 0, where its derivatives come from the series
    rows.append(
        Case(
            "sinc",
            anp.sinc,
            make=lambda rng: [np.array([0.0, 1e-3, -0.3, 1.0, -1.5, 2.7])],
            tag="near-zero",
        )
    )
    rows.append(Case("sinc", lambda x: anp.sinc(x * 4.0), ((5,),), tag="far"))
    return rows


def _with_orders() -> list[Case]:
    """Functions of an order (an integer or a parameter) and x: gradient in x."""
    rows = [
        Case(
            "polygamma",
            lambda x: anp.polygamma(_f32([0.0, 1.0, 2.0]), x),
            make=_within(0.5, 3.0, (2, 3)),
            tag="orders-0-1-2",
        ),
        Case("polygamma", lambda x: anp.polygamma(3, x), make=_within(0.5, 3.0, (3,)), tag="n3"),
        Case(
            "multigammaln",
            lambda a: anp.multigammaln(a, 3),
            make=_within(4.0, 5.0, (2, 3)),
            tag="d3",
        ),
        Case(
            "gammainc",
            lambda x: anp.gammainc(_f32([0.5, 1.0, 2.5]), x),
            make=_within(0.3, 3.0, (2, 3)),
        ),
        Case("gammaincc", lambda x: anp.gammaincc(1.5, x), make=_within(0.3, 3.0, (3,))),
        Case(
            "betainc",
            lambda x: anp.betainc(_f32([0.75, 2.0, 3.0]), 1.5, x),
            make=_within(0.1, 0.9, (2, 3)),
        ),
    ]
    for name, lo, hi in [("iv", 0.2, 3.0), ("ive", 0.2, 3.0), ("jv", 0.2, 8.0)]:
        op = getattr(anp, name)
        rows.append(
            Case(
                name,
                lambda x, op=op: op(_f32([0.0, 1.0, 2.5]), x),
                make=_within(lo, hi, (2, 3)),
            )
        )
    rows.append(Case("jn", lambda x: anp.jn(2, x), make=_within(0.2, 8.0, (3,))))
    rows.append(Case("yv", lambda x: anp.yv(1.5, x), make=_within(0.5, 8.0, (3,))))
    rows.append(Case("yn", lambda x: anp.yn(3, x), make=_within(0.5, 8.0, (3,))))
    rows.append(Case("gammasgn", lambda x: anp.gammasgn(x) * x, make=_within(-2.8, -2.2, (3,))))
    rows.append(
        Case(
            "betainc",
            lambda x: anp.betainc(1.0, 1.0, x),
            make=_within(0.1, 0.9, (3,)),
            tag="uniform",
        )
    )
    return rows


def _logsumexp() -> list[Case]:
    pos = _within(0.2, 2.0, (2, 3))
    return [
        Case(
            "logsumexp",
            lambda a, b: anp.logsumexp(a, b=b),
            ((2, 3), (2, 3)),
            make=lambda rng: [rng.uniform(-2, 2, (2, 3)), rng.uniform(0.2, 2.0, (2, 3))],
            tag="b",
        ),
        Case(
            "logsumexp",
            lambda a, b: anp.logsumexp(a, axis=0, b=b, keepdims=True),
            make=lambda rng: [rng.uniform(-2, 2, (2, 3)), rng.uniform(0.2, 2.0, (3,))],
            tag="b-broadcast-axis0",
        ),
        Case(
            "logsumexp",
            lambda a: anp.logsumexp(a, 1, _f32([1.0, -0.5, 2.0]), return_sign=True)[0],
            ((2, 3),),
            tag="signed-value",
        ),
        Case(
            "logsumexp",
            lambda a: anp.logsumexp(a, axis=-1, return_sign=True)[0],
            ((2, 3),),
            tag="return-sign",
        ),
        Case(
            "logsumexp",
            lambda b: anp.logsumexp(_f32([0.5, -1.0, 2.0]), b=b),
            make=_within(0.2, 2.0, (3,)),
            tag="b-only",
        ),
        Case("logsumexp", lambda a: anp.logsumexp(a, axis=(0, 2)), ((2, 3, 2),), tag="axes02"),
        Case("logsumexp", lambda a: anp.logsumexp(a * 1.0, b=2.0), make=pos, tag="scalar-b"),
    ]


def _no_grad(name: str, fn: Any, reference: Any, shapes: Any) -> Case:
    return Case(name, fn, shapes, diff=False, reference=reference)


def _booleans() -> list[Case]:
    def funny(x: np.ndarray) -> np.ndarray:  # nan, inf, -inf and -0.0 among the values
        return np.where(
            x > 1.0, np.inf, np.where(x < -1.0, -np.inf, np.where(np.abs(x) < 0.3, np.nan, x))
        )

    return [
        _no_grad("isnan", lambda x: anp.isnan(funny(x)), lambda x: np.isnan(funny(x)), ((9,),)),
        _no_grad("isinf", lambda x: anp.isinf(funny(x)), lambda x: np.isinf(funny(x)), ((9,),)),
        _no_grad(
            "isfinite", lambda x: anp.isfinite(funny(x)), lambda x: np.isfinite(funny(x)), ((9,),)
        ),
        _no_grad(
            "signbit", lambda x: anp.signbit(x * 0.0), lambda x: np.signbit(x * 0.0), ((2, 3),)
        ),
        _no_grad(
            "logical_xor",
            lambda x, y: anp.logical_xor(x > 0, y > 0),
            lambda x, y: np.logical_xor(x > 0, y > 0),
            ((2, 3), (3,)),
        ),
        _no_grad(
            "nan_to_num",
            lambda x: anp.nan_to_num(funny(x)),
            lambda x: np.nan_to_num(funny(x)),
            ((9,),),
        ),
        _no_grad(
            "polygamma",
            lambda x: anp.polygamma(np.array([0.0, 1.5, -1.0]), 1.0 + x * x),
            lambda x: np.where([True, False, False], sc.polygamma(0, 1.0 + x * x), np.nan),
            ((3,),),
        ),
    ]


CASES: list[Case] = (
    [c for name, (lo, hi) in UNARY.items() for c in _unary(name, lo, hi)]
    + [c for name, bounds in BINARY.items() for c in _binary(name, *bounds)]
    + _steps()
    + _with_orders()
    + _logsumexp()
    + _booleans()
)
