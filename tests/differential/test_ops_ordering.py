"""The ordering family against JAX (``jax.numpy``, float64) on random inputs: values, VJPs
with a random cotangent, JVPs with a random tangent, and Hessian-vector products where the
op is smooth (or piecewise linear: a zero second derivative). Inputs include non-contiguous
views (a transposed or strided array), broadcast views, several axes, sizes 0 and 1.

Sort-based ops get distinct values (a gradient at a tie is a convention: ``test_ties``
checks that ours, the stable permutation, is JAX's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from tests.differential.backends import jax_modules

COVERED = {  # the ops this file compares (tests/differential/test_differential.py)
    "cumsum", "cumprod", "diff", "sort", "argsort", "argmax", "argmin", "take",
    "take_along_axis", "searchsorted", "nansum", "nanmean", "average", "median",
    "percentile", "quantile",
}  # fmt: skip

jax, jnp = jax_modules()

RTOL, ATOL = 1e-10, 1e-10


@dataclass
class Row:
    name: str
    ours: Callable[..., Any]
    theirs: Callable[..., Any]
    shape: tuple[int, ...]
    layout: str = "plain"  # plain, strided (non-contiguous), transposed, broadcast
    distinct: bool = False  # sort-based: no ties
    smooth: bool = False  # curved: compare Hessian-vector products with JAX's (else H v = 0)
    nan: bool = False  # put NaNs in (nansum, nanmean)

    @property
    def id(self) -> str:
        return f"{self.name}-{'x'.join(map(str, self.shape)) or 's'}-{self.layout}"


def _input(row: Row, rng: np.random.Generator) -> np.ndarray:
    size = int(np.prod(row.shape))
    if row.distinct:
        flat = rng.permutation(size) * 0.37 - 0.9 + rng.uniform(0, 0.05, size)
    else:
        flat = rng.uniform(-2.0, 2.0, size)
    x = flat.reshape(row.shape)
    if row.nan and size:
        x.flat[rng.choice(size, max(1, size // 4), replace=False)] = np.nan
    if row.layout == "strided":  # every other element of a larger array
        big = np.zeros(row.shape[:-1] + (2 * row.shape[-1],)) if row.shape else x
        if row.shape:
            big[..., ::2] = x
            x = big[..., ::2]
    elif row.layout == "transposed":
        x = np.ascontiguousarray(x.T).T
    elif row.layout == "broadcast" and row.shape:  # a stride-0 axis in front
        x = np.broadcast_to(x[:1], row.shape)
    return x


def _rows() -> list[Row]:
    rows: list[Row] = []

    def add(name: str, ours: Any, theirs: Any, shapes: Any, **kw: Any) -> None:
        for shape, layout in shapes:
            rows.append(Row(name, ours, theirs, shape, layout, **kw))

    common = [((5,), "plain"), ((3, 4), "strided"), ((4, 3), "transposed"), ((3, 4), "broadcast")]
    edges = [((0,), "plain"), ((1,), "plain"), ((2, 0), "plain"), ((1, 3), "plain")]
    add("cumsum", anp.cumsum, jnp.cumsum, common + edges)
    add("cumsum-axis0", lambda x: anp.cumsum(x, axis=0), lambda x: jnp.cumsum(x, axis=0), common)
    add("cumprod", anp.cumprod, jnp.cumprod, common[:2] + edges[:2], smooth=True)
    add(
        "cumprod-axis-1",
        lambda x: anp.cumprod(x, -1),
        lambda x: jnp.cumprod(x, -1),
        [((4, 3), "transposed"), ((3, 4), "broadcast"), ((2, 3, 4), "plain"), ((3, 1), "plain")],
        smooth=True,
    )
    add("diff", anp.diff, jnp.diff, common + edges[1:])
    add(
        "diff-n2-axis0",
        lambda x: anp.diff(x, 2, axis=0, append=1.5),
        lambda x: jnp.diff(x, 2, axis=0, append=1.5),
        [((4, 3), "plain"), ((3, 4), "strided"), ((1, 3), "plain")],
    )
    sorted_shapes = [((6,), "plain"), ((3, 4), "strided"), ((4, 3), "transposed")]
    add("sort", anp.sort, jnp.sort, sorted_shapes + edges, distinct=True)
    add(
        "sort-axis0",
        lambda x: anp.sort(x, axis=0),
        lambda x: jnp.sort(x, axis=0),
        sorted_shapes[1:] + [((2, 3, 2), "plain")],
        distinct=True,
    )
    add(
        "sort-flat",
        lambda x: anp.sort(x, axis=None),
        lambda x: jnp.sort(x, axis=None),
        sorted_shapes,
        distinct=True,
    )
    index = np.array([[0, 2], [1, 1], [2, 0]])
    add(
        "take",
        lambda x: anp.take(x, index, axis=-1),
        lambda x: jnp.take(x, index, axis=-1),
        common[1:] + [((2, 3), "plain")],
    )
    add(
        "take-flat-wrap",
        lambda x: anp.take(x, [7, -1, 0, 7], mode="wrap"),
        lambda x: jnp.take(x, np.array([7, -1, 0, 7]), mode="wrap"),
        common + [((1,), "plain")],
    )
    add(
        "take-clip",
        lambda x: anp.take(x, [5, -3, 1], axis=0, mode="clip"),
        lambda x: jnp.take(x, np.array([5, -3, 1]), axis=0, mode="clip"),
        common,
    )
    add(
        "take_along_axis-argsort",
        lambda x: anp.take_along_axis(x, anp.argsort(x, axis=0), axis=0),
        lambda x: jnp.take_along_axis(x, jnp.argsort(x, axis=0), axis=0),
        sorted_shapes[1:],
        distinct=True,
    )
    add(
        "take_along_axis-broadcast",
        lambda x: anp.take_along_axis(x, np.array([[2, 0, 0, 1]]), axis=-1),
        lambda x: jnp.take_along_axis(x, jnp.array([[2, 0, 0, 1]]), axis=-1),
        [((3, 4), "strided"), ((4, 4), "transposed"), ((1, 3), "plain")],
    )
    add("median", anp.median, jnp.median, sorted_shapes + [((1,), "plain")], distinct=True)
    add(
        "median-axes",
        lambda x: anp.median(x, axis=(0, 2), keepdims=True),
        lambda x: jnp.median(x, axis=(0, 2), keepdims=True),
        [((3, 2, 4), "plain"), ((2, 3, 3), "transposed")],
        distinct=True,
    )
    q = np.array([0.0, 0.13, 0.5, 0.77, 1.0])
    add(
        "quantile",
        lambda x: anp.quantile(x, q, axis=-1),
        lambda x: jnp.quantile(x, q, axis=-1),
        sorted_shapes + [((1, 1), "plain")],
        distinct=True,
    )
    add(
        "percentile-axis0",
        lambda x: anp.percentile(x, 42.0, axis=0),
        lambda x: jnp.percentile(x, 42.0, axis=0),
        sorted_shapes[1:],
        distinct=True,
    )
    for method in ("lower", "higher", "nearest", "midpoint"):
        add(
            f"quantile-{method}",
            lambda x, m=method: anp.quantile(x, [0.27, 0.62], method=m),
            lambda x, m=method: jnp.quantile(x, jnp.array([0.27, 0.62]), method=m),
            sorted_shapes[1:2],
            distinct=True,
        )
    add("nansum", anp.nansum, jnp.nansum, common + edges, nan=True)
    add(
        "nanmean-axis0",
        lambda x: anp.nanmean(x, axis=0),
        lambda x: jnp.nanmean(x, axis=0),
        [((6, 3), "plain"), ((6, 4), "strided")],
        nan=True,
    )
    add("average", anp.average, jnp.average, common + [((1,), "plain")])
    w = np.array([0.5, 1.0, 2.0, 0.25])
    add(
        "average-weights",
        lambda x: anp.average(x, axis=-1, weights=w),
        lambda x: jnp.average(x, axis=-1, weights=w),
        [((3, 4), "strided"), ((2, 4), "plain"), ((4, 4), "transposed")],
    )
    add(
        "average-self-weights",
        lambda x: anp.average(x, axis=0, weights=x * x + 1.0, returned=True)[0],
        lambda x: jnp.average(x, axis=0, weights=x * x + 1.0, returned=True)[0],
        [((3, 4), "strided"), ((4, 3), "transposed")],
        smooth=True,
    )
    return rows


ROWS = _rows()


def _rng(row: Row) -> np.random.Generator:
    return np.random.default_rng(abs(hash(row.id)) % 2**32)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_against_jax(row: Row) -> None:
    rng = _rng(row)
    x = _input(row, rng)
    value, vjp_fn = ad.vjp(row.ours, x)
    theirs = jax.jit(row.theirs)
    expected, jax_vjp = jax.vjp(theirs, jnp.asarray(x))
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL)
    assert np.shape(value) == np.shape(expected)
    u = rng.normal(size=np.shape(expected))
    (got,) = vjp_fn(u)
    (want,) = jax_vjp(jnp.asarray(u))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    v = rng.normal(size=x.shape)
    _, tangent = ad.jvp(row.ours, (x,), (v,))
    _, jax_tangent = jax.jvp(theirs, (jnp.asarray(x),), (jnp.asarray(v),))
    np.testing.assert_allclose(tangent, jax_tangent, rtol=RTOL, atol=ATOL)
    if row.nan:
        return
    (hv,) = ad.hvp(lambda y: anp.sum(row.ours(y) * u), (x,), (v,))
    if not row.smooth:  # linear or piecewise linear: the second derivative is zero
        np.testing.assert_allclose(hv, 0.0, atol=1e-12)
        return

    def scalar(y: Any) -> Any:
        return jnp.sum(theirs(y) * u)

    _, jax_hv = jax.jvp(jax.grad(scalar), (jnp.asarray(x),), (jnp.asarray(v),))
    np.testing.assert_allclose(hv, jax_hv, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (0,), (1,), (4, 1)])
def test_nondifferentiable_ops_agree(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape) * 10 + sum(shape))
    x = np.round(rng.uniform(-2, 2, shape), 1)  # ties on purpose: stable argsort
    np.testing.assert_array_equal(anp.argsort(x), jnp.argsort(x))
    np.testing.assert_array_equal(anp.argsort(x, axis=0), jnp.argsort(x, axis=0))
    if x.size:
        np.testing.assert_array_equal(anp.argmax(x), jnp.argmax(x))
        np.testing.assert_array_equal(anp.argmin(x, axis=0), jnp.argmin(x, axis=0))
        np.testing.assert_array_equal(
            anp.argmax(x, axis=-1, keepdims=True), jnp.argmax(x, axis=-1, keepdims=True)
        )
    a = np.sort(rng.uniform(-2, 2, 6))
    for side in ("left", "right"):
        np.testing.assert_array_equal(
            anp.searchsorted(a, x, side=side), jnp.searchsorted(a, x, side=side)
        )
    perm = rng.permutation(6)
    np.testing.assert_array_equal(
        anp.searchsorted(a[perm], x, sorter=np.argsort(perm)),
        np.searchsorted(a[perm], x, sorter=np.argsort(perm)),
    )


def test_nearest_rounds_half_to_even_as_numpy() -> None:
    """At q (n - 1) exactly half-way, 'nearest' is NumPy's (round half to even; JAX differs)."""
    x = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    for q in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert anp.quantile(x, q, method="nearest") == np.quantile(x, q, method="nearest")


@pytest.mark.parametrize(
    "values", [[1.0, -0.5, 1.0, 2.0, -0.5], [3.0, 3.0, 3.0], [[2.0, 1.0], [2.0, 2.0]]]
)
def test_ties(values: Any) -> None:
    """At ties the gradient of sort, median, quantile, cumprod, max and min is JAX's."""
    x = np.array(values)
    u = np.arange(x.size, dtype=float).reshape(x.shape) + 1.0
    pairs = [
        (lambda y: anp.sort(y, axis=0) * u, lambda y: jnp.sort(y, axis=0) * u),
        (lambda y: anp.median(y), lambda y: jnp.median(y)),
        (lambda y: anp.quantile(y, 0.3), lambda y: jnp.quantile(y, 0.3)),
        (lambda y: anp.cumprod(y) * u.reshape(-1), lambda y: jnp.cumprod(y) * u.reshape(-1)),
        # max and min keep their convention: ties share the gradient evenly, as in JAX
        (lambda y: anp.max(y, axis=0) * 2.0, lambda y: jnp.max(y, axis=0) * 2.0),
        (lambda y: anp.min(y), lambda y: jnp.min(y)),
    ]
    for ours, theirs in pairs:
        got = ad.grad(lambda y, f=ours: anp.sum(f(y)))(x)
        want = jax.grad(lambda y, f=theirs: jnp.sum(f(y)))(jnp.asarray(x))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
