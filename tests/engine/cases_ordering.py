"""Test rows for the cumulative, ordering and order-statistic ops (``engine/ops/ordering.py``),
consumed by ``test_ops.py``.

Ops whose derivative is piecewise constant (sort, take, quantile...) are exact against
finite differences away from ties: their inputs are distinct values well apart
(``_spread``), and their second derivative is zero, which the second-order check sees too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case


def _spread(*shape: int) -> Any:
    """A maker of distinct values well apart (no ties near the kinks of sort and friends)."""

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        n = int(np.prod(shape))
        return [(rng.permutation(n) * 0.37 - 0.9 + rng.uniform(0, 0.05, n)).reshape(shape)]

    return make


def _with(values: Any, shape: tuple[int, ...]) -> Any:
    return lambda rng: [np.reshape(np.array(values, dtype=float), shape)]


def _row(op: str, fn: Any, shapes: Any = None, tag: str = "", **kw: Any) -> Case:
    return Case(op, fn, shapes if shapes is not None else ((3,),), tag=tag, **kw)


def _cumulative() -> list[Case]:
    rows = []
    for name in ("cumsum", "cumprod"):
        op = getattr(anp, name)
        rows += [
            _row(name, lambda x, op=op: op(x), ((4,),), tag="1d"),
            _row(name, lambda x, op=op: op(x), ((2, 3),), tag="flat"),
            _row(name, lambda x, op=op: op(x, axis=0), ((3, 2),), tag="axis0"),
            _row(name, lambda x, op=op: op(x, -1), ((2, 3, 2),), tag="neg-axis"),
            _row(name, lambda x, op=op: op(x, axis=1), ((2, 1, 3),), tag="unit-axis"),
            _row(name, lambda x, op=op: op(x), ((),), tag="scalar"),
        ]
    # exact to every order with zeros (no division in the rules)
    zeros = [
        ("one-zero", [1.5, 0.0, -0.7, 1.2], (4,), {}),
        ("two-zeros", [0.0, 1.3, 0.0, -0.6], (4,), {}),
        ("first", [0.0, 2.0, 3.0], (3,), {}),
        ("all-zero", [0.0, 0.0, 0.0], (3,), {}),
        ("axis1", [[1.0, 0.0, 2.0], [0.0, 0.5, 3.0]], (2, 3), {"axis": 1}),
    ]
    for tag, values, shape, kw in zeros:
        rows.append(
            _row(
                "cumprod",
                lambda x, kw=kw: anp.cumprod(x, **kw),
                make=_with(values, shape),
                tag=f"zero-{tag}",
            )
        )
    rows.append(
        _row("cumprod", lambda x: anp.cumprod(x), ((9,),), tag="long", domain="pos")
    )  # several scan rounds
    return rows


def _diff() -> list[Case]:
    return [
        _row("diff", lambda x: anp.diff(x), ((4,),)),
        _row("diff", lambda x: anp.diff(x, 2), ((5,),), tag="n2"),
        _row("diff", lambda x: anp.diff(x, axis=0), ((3, 2),), tag="axis0"),
        _row("diff", lambda x: anp.diff(x, n=3, axis=-1), ((2, 3),), tag="n3-empty"),
        _row("diff", lambda x: anp.diff(x, n=0), ((2, 3),), tag="n0"),
        _row("diff", lambda x: anp.diff(x, prepend=0.0, append=2.0), ((2, 3),), tag="scalars"),
        _row(
            "diff",
            lambda x, p: anp.diff(x, axis=0, prepend=p) * x[0],
            ((2, 3), (1, 3)),
            tag="traced-prepend",
        ),
        _row("diff", lambda x, a: anp.diff(x**2, append=a), ((3,), ()), tag="traced-append"),
    ]


def _gathers() -> list[Case]:
    idx = np.array([[0, 2], [1, 1]])
    return [
        _row("sort", lambda x: anp.sort(x), make=_spread(5), tag="1d"),
        _row("sort", lambda x: anp.sort(x, axis=0), make=_spread(3, 2), tag="axis0"),
        _row("sort", lambda x: anp.sort(x, axis=None), make=_spread(2, 3), tag="flat"),
        _row("sort", lambda x: anp.sort(x, -2), make=_spread(2, 3, 2), tag="mid"),
        _row("sort", lambda x: anp.sort(x) * x, make=_spread(4), tag="times-x"),
        _row("take", lambda x: anp.take(x, [0, 2, 2]), ((2, 3),), tag="flat-dup"),
        _row("take", lambda x: anp.take(x, idx, axis=1), ((2, 3),), tag="2d-indices"),
        _row("take", lambda x: anp.take(x, -1, axis=0), ((3, 2),), tag="scalar-index"),
        _row("take", lambda x: anp.take(x, [4, -4], axis=0, mode="wrap"), ((3,),), tag="wrap"),
        _row("take", lambda x: anp.take(x, [5, -2], mode="clip"), ((3,),), tag="clip"),
        _row(
            "take_along_axis",
            lambda x: anp.take_along_axis(x, np.array([[2, 0], [1, 1]]), axis=1),
            ((2, 3),),
        ),
        _row(
            "take_along_axis",
            lambda x: anp.take_along_axis(x, np.array([[0], [2]]), -1),
            ((2, 3),),
            tag="default-axis",
        ),
        _row(
            "take_along_axis",
            lambda x: anp.take_along_axis(x, np.array([[1, 0, 1]]), axis=0),
            ((2, 1),),
            tag="broadcast",
        ),
        _row(
            "take_along_axis",
            lambda x: anp.take_along_axis(x, anp.argsort(x, axis=0), axis=0),
            make=_spread(3, 2),
            tag="argsort",
        ),
        _row(
            "take_along_axis",
            lambda x: anp.take_along_axis(x, np.array([3, 0]), axis=None),
            ((2, 2),),
            tag="flat",
        ),
    ]


def _statistics() -> list[Case]:
    return [
        _row("median", lambda x: anp.median(x), make=_spread(5), tag="odd"),
        _row("median", lambda x: anp.median(x), make=_spread(4), tag="even"),
        _row("median", lambda x: anp.median(x, axis=0), make=_spread(4, 3), tag="axis0"),
        _row(
            "median",
            lambda x: anp.median(x, axis=(0, 2), keepdims=True),
            make=_spread(2, 3, 2),
            tag="axes-keep",
        ),
        _row("quantile", lambda x: anp.quantile(x, 0.3), make=_spread(6), tag="scalar-q"),
        _row(
            "quantile",
            lambda x: anp.quantile(x, np.array([0.0, 0.25, 0.9, 1.0]), axis=1),
            make=_spread(2, 5),
            tag="array-q",
        ),
        _row(
            "quantile",
            lambda x: anp.quantile(x, np.array([[0.1], [0.6]]), axis=-1, keepdims=True),
            make=_spread(3, 4),
            tag="2d-q-keep",
        ),
        _row(
            "quantile",
            lambda x, q: anp.quantile(x, q),
            make=lambda rng: [_spread(5)(rng)[0], np.array([0.3, 0.7])],
            tag="traced-q",
        ),
        _row(
            "quantile",
            lambda x: (
                anp.quantile(x, 0.4, method="lower")
                + anp.quantile(x, 0.4, method="higher")
                + anp.quantile(x, 0.4, method="midpoint")
                + anp.quantile(x, 0.4, method="nearest")
            ),
            make=_spread(6),
            tag="methods",
        ),
        _row("percentile", lambda x: anp.percentile(x, 35.0, axis=0), make=_spread(5, 2)),
        _row(
            "percentile",
            lambda x: anp.percentile(x, [10.0, 50.0]),
            make=_spread(2, 3),
            tag="list-q",
        ),
        _row("nansum", lambda x: anp.nansum(x), ((2, 3),)),
        _row(
            "nansum",
            lambda x: anp.nansum(x, axis=1, keepdims=True),
            make=_with([[1.0, np.nan, 0.5], [np.nan, 2.0, -1.0]], (2, 3)),
            tag="nan",
        ),
        _row("nanmean", lambda x: anp.nanmean(x, 0), ((2, 3),)),
        _row(
            "nanmean",
            lambda x: anp.nanmean(x, axis=1),
            make=_with([[1.0, np.nan, 0.5], [np.nan, 2.0, -1.0]], (2, 3)),
            tag="nan",
        ),
        _row("average", lambda x: anp.average(x), ((2, 3),)),
        _row("average", lambda x: anp.average(x, axis=(0, 1), keepdims=True), ((2, 3),), tag="k"),
        _row(
            "average",
            lambda x, w: anp.average(x, axis=1, weights=w),
            ((2, 3), (3,)),
            domain="pos",
            tag="1d-weights",
        ),
        _row(
            "average",
            lambda x, w: anp.average(x, 0, w, True)[0] * anp.average(x, 0, w, True)[1],
            ((3, 2), (3, 2)),
            domain="pos",
            tag="returned",
        ),
    ]


def _constants() -> list[Case]:
    def nd(op: str, fn: Any, ref: Any, shapes: Any = ((2, 3),), tag: str = "") -> Case:
        return Case(op, fn, shapes, diff=False, reference=ref, tag=tag)

    return [
        nd("argsort", lambda x: anp.argsort(x), lambda x: np.argsort(x, kind="stable")),
        nd(
            "argsort",
            lambda x: anp.argsort(x, axis=None),
            lambda x: np.argsort(x, axis=None, kind="stable"),
            tag="flat",
        ),
        nd("argmax", lambda x: anp.argmax(x), np.argmax),
        nd(
            "argmax",
            lambda x: anp.argmax(x, axis=0, keepdims=True),
            lambda x: np.argmax(x, axis=0, keepdims=True),
            tag="keep",
        ),
        nd("argmin", lambda x: anp.argmin(x, 1), lambda x: np.argmin(x, 1)),
        nd(
            "searchsorted",
            lambda a, v: anp.searchsorted(anp.sort(a), v, side="right"),
            lambda a, v: np.searchsorted(np.sort(a), v, side="right"),
            ((5,), (2, 3)),
        ),
        nd(
            "searchsorted",
            lambda a, v: anp.searchsorted(a, v, sorter=anp.argsort(a)),
            lambda a, v: np.searchsorted(a, v, sorter=np.argsort(a)),
            ((5,), (4,)),
            tag="sorter",
        ),
    ]


CASES: list[Case] = _cumulative() + _diff() + _gathers() + _statistics() + _constants()
