"""Every indexing form NumPy allows, on every path: random index expressions over random
shapes (ints, slices with any step, None, Ellipsis, integer arrays of any rank with
negative and repeated entries, boolean masks, mixed and placed anywhere, chained), checked
for the value against NumPy and for the Jacobian (forward and reverse, whole and chunked),
the VJP, the JVP, the Hessian, the HVP and reverse-over-reverse second order against exact
references built by NumPy indexing and against JAX.

The batched paths (a Jacobian's or Hessian's stacked basis) index with leading batch axes,
which moves the advanced axes when NumPy puts them first (advanced indices separated by a
slice, None or Ellipsis): that is what these tests exist for.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError

Index = tuple[Any, ...]


def _index_array(rng: np.random.Generator, d: int, shape: tuple[int, ...]) -> np.ndarray:
    """Integers in [-d, d) (negative and repeated entries)."""
    return rng.integers(-d, d, size=shape)


KINDS = ["int", "slice", "none", "ellipsis", "array", "mask"]
KIND_ODDS = [0.2, 0.2, 0.1, 0.1, 0.3, 0.1]


def _random_index(rng: np.random.Generator, shape: tuple[int, ...]) -> Index:
    """A random index into an array of ``shape`` that NumPy accepts."""
    adv_shape = tuple(int(n) for n in rng.integers(1, 4, size=rng.integers(0, 3)))
    items: list[Any] = []
    axis = 0
    used_ellipsis = False
    while axis < len(shape) and rng.random() < 0.85:
        d = shape[axis]
        kind = rng.choice(KINDS, p=KIND_ODDS)
        if kind == "int":
            items.append(int(rng.integers(-d, d)))
            axis += 1
        elif kind == "slice":
            start = rng.choice([None, int(rng.integers(-d - 1, d + 1))])
            stop = rng.choice([None, int(rng.integers(-d - 1, d + 1))])
            step = rng.choice([None, 1, 2, -1, -2, 3])
            items.append(slice(start, stop, step))
            axis += 1
        elif kind == "none":
            items.append(None)
        elif kind == "ellipsis" and not used_ellipsis:
            items.append(Ellipsis)
            used_ellipsis = True
            axis = len(shape) - rng.integers(0, len(shape) - axis + 1)  # may cover no axis
        elif kind == "array":
            # a shape that broadcasts with the other arrays: a suffix, some axes set to 1
            sub = adv_shape[rng.integers(0, len(adv_shape) + 1) :]
            sub = tuple(1 if rng.random() < 0.3 else n for n in sub)
            items.append(_index_array(rng, d, sub))
            axis += 1
        elif kind == "mask":
            k = int(rng.integers(1, min(2, len(shape) - axis) + 1))
            mask = rng.random(shape[axis : axis + k]) < 0.6
            if not any(type(i) is np.ndarray for i in items):
                items.append(mask)  # its nonzero() count must broadcast with other arrays
                axis += k
    return tuple(items)


def _separated(index: Index) -> bool:
    """Whether a slice, None or Ellipsis separates the advanced items (arrays and masks, and
    ints when an array is present): NumPy then puts the advanced axes first."""
    if not any(isinstance(i, np.ndarray) for i in index):
        return False
    adv = [k for k, i in enumerate(index) if isinstance(i, np.ndarray | int)]
    return adv[-1] - adv[0] + 1 != len(adv)


def _case(seed: int) -> tuple[np.ndarray, list[Index]]:
    """An input and a chain of one or two indices that NumPy accepts (retrying otherwise);
    for even seeds the first index has separated advanced items."""
    rng = np.random.default_rng(seed)
    while True:
        shape = tuple(int(n) for n in rng.integers(1, 4, size=rng.integers(1, 5)))
        x = rng.uniform(-1.5, 1.5, size=shape)
        chain = [_random_index(rng, shape)]
        if seed % 2 == 0 and not _separated(chain[0]):
            continue
        try:
            y = x[chain[0]]
            if y.ndim and rng.random() < 0.4:
                chain.append(_random_index(rng, y.shape))
                y = y[chain[1]]
        except (IndexError, ValueError):
            continue
        if 0 < y.size <= 60:
            return x, chain


def _apply(x: Any, chain: list[Index]) -> Any:
    for index in chain:
        x = x[index]
    return x


def _picks(x: np.ndarray, chain: list[Index]) -> np.ndarray:
    """For each output element, the flat index of the input element it reads."""
    return np.asarray(_apply(np.arange(x.size).reshape(x.shape), chain))


def _exact_jacobian(x: np.ndarray, chain: list[Index]) -> np.ndarray:
    picks = _picks(x, chain)
    jac = np.zeros((picks.size, x.size))
    jac[np.arange(picks.size), picks.ravel()] = 1.0
    return jac.reshape(picks.shape + x.shape)


SEEDS = range(160)
JAX_SEEDS = [2]


@pytest.mark.parametrize("seed", SEEDS)
def test_index_values_jacobians_vjp_jvp(seed: int) -> None:
    x, chain = _case(seed)
    expected = _apply(x, chain)
    out_shape = np.shape(expected)
    f = lambda v: _apply(v, chain)  # noqa: E731
    value, vjp_fn = ad.vjp(f, x)
    np.testing.assert_array_equal(value, expected)
    jac = _exact_jacobian(x, chain)
    for mode in ("forward", "reverse"):
        got = ad.jacobian(f, mode=mode)(x)
        assert np.shape(got) == out_shape + x.shape, (mode, chain)
        np.testing.assert_array_equal(got, jac, err_msg=f"{mode} {chain}")
        chunked = ad.jacobian(f, mode=mode, chunk_size=2)(x)
        np.testing.assert_array_equal(chunked, jac, err_msg=f"{mode} chunked {chain}")
    rng = np.random.default_rng(seed + 1000)
    u = rng.normal(size=out_shape)
    v = rng.normal(size=x.shape)
    (ct,) = vjp_fn(u)
    np.testing.assert_allclose(ct, np.tensordot(u, jac, axes=len(out_shape)), atol=1e-12)
    _, tangent = ad.jvp(f, (x,), (v,))
    np.testing.assert_allclose(tangent, np.tensordot(jac, v, axes=x.ndim), atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_index_second_order(seed: int) -> None:
    """Hessian (forward over reverse, one batched pass), HVP, reverse over reverse and the
    Jacobian of the gradient in both modes, against the exact Hessian of
    ``sum(w * sin(x[index]))``: diagonal, ``-sin(x_i)`` times the weights that read x_i."""
    x, chain = _case(seed)
    rng = np.random.default_rng(seed + 2000)
    w = rng.normal(size=np.shape(_apply(x, chain)))

    def f(v: Any) -> Any:
        return anp.sum(w * anp.sin(_apply(v, chain)))

    weight = np.zeros(x.size)
    np.add.at(weight, _picks(x, chain).ravel(), np.ravel(w))
    exact = np.diag(-np.sin(x.ravel()) * weight).reshape(x.shape + x.shape)
    np.testing.assert_allclose(ad.hessian(f)(x), exact, atol=1e-12, err_msg=str(chain))
    for mode in ("forward", "reverse"):
        got = ad.jacobian(ad.grad(f), mode=mode)(x)
        np.testing.assert_allclose(got, exact, atol=1e-12, err_msg=f"{mode} {chain}")
    v = rng.normal(size=x.shape)
    (hv,) = ad.hvp(f, (x,), (v,))
    expected_hv = np.tensordot(exact, v, axes=x.ndim)
    np.testing.assert_allclose(hv, expected_hv, atol=1e-12)
    rev = ad.grad(lambda y: anp.sum(ad.grad(f)(y) * v))(x)
    np.testing.assert_allclose(rev, expected_hv, atol=1e-12)


def _jax_index(index: Index) -> Index:
    import jax.numpy as jnp

    return tuple(jnp.asarray(i) if isinstance(i, np.ndarray) else i for i in index)


# JAX compiles every program (seconds each here): a few seeds whose advanced indices are
# separated (their axes go first) or chained
@pytest.mark.parametrize("seed", JAX_SEEDS)
def test_index_against_jax(seed: int) -> None:
    """The same programs' Jacobians and Hessians against JAX in float64 (a smooth, non-linear
    function of the indexed values, so the second derivatives are not only diagonal)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x, chain = _case(seed)
    jchain = [_jax_index(i) for i in chain]

    def f(v: Any) -> Any:
        y = _apply(v, chain)
        return anp.sin(y) * anp.sum(y * y)

    def jf(v: Any) -> Any:
        y = _apply(v, jchain)
        return jnp.sin(y) * jnp.sum(y * y)

    for mode, ref in (("forward", jax.jacfwd), ("reverse", jax.jacrev)):
        np.testing.assert_allclose(ad.jacobian(f, mode=mode)(x), ref(jf)(x), atol=1e-12)
    h = ad.hessian(lambda v: anp.sum(f(v)))(x)
    np.testing.assert_allclose(h, jax.hessian(lambda v: jnp.sum(jf(v)))(x), atol=1e-11)


@pytest.mark.parametrize(
    ("shape", "index"),
    [
        ((2, 3, 4), ([1, 0], slice(None), 0)),  # the issue's: array, slice, int
        ((2, 3, 4), (0, slice(None), [1, 0])),
        ((2, 3, 4), ([1, 0], slice(None), [0, 3])),  # two arrays separated by a slice
        ((2, 3, 4), ([[1], [0]], Ellipsis, [0, 2, 3])),
        ((2, 3), ([0, 1], Ellipsis, 0)),  # an Ellipsis that covers no axis still separates
        ((3, 4), (0, None, [1, 2])),
        ((3, 4), (slice(None), [True, False, True, True])),
        ((3, 4), (np.array([[True, False, True, True]] * 3),)),
        ((3, 4, 2), ([2, -1], [0, 3], slice(None, None, -1))),
        ((3, 4, 2), (np.int64(1), slice(None), [1, 1, 0])),
    ],
)
def test_named_mixed_indices(shape: tuple[int, ...], index: Index) -> None:
    """Forms named one by one (the issue's case and its neighbours), value and Jacobians."""
    x = np.arange(float(np.prod(shape))).reshape(shape) / 7.0
    np_index = tuple(np.asarray(i) if isinstance(i, list) else i for i in index)
    f = lambda v: v[index]  # noqa: E731
    np.testing.assert_array_equal(ad.vjp(f, x)[0], x[np_index])
    jac = _exact_jacobian(x, [np_index])
    for mode in ("forward", "reverse"):
        np.testing.assert_array_equal(ad.jacobian(f, mode=mode)(x), jac)
    h = ad.hessian(lambda v: anp.sum(anp.sin(v[index])))(x)
    g = ad.jacobian(ad.grad(lambda v: anp.sum(anp.sin(v[index]))), mode="reverse")(x)
    np.testing.assert_allclose(h, g, atol=1e-12)


def test_issue_chained_reverse_jacobian() -> None:
    """``x[2, None, [0, 1]][[1, 1], 0]`` of a (3, 2) array: the reverse Jacobian was wrong."""
    x = np.arange(6.0).reshape(3, 2)
    f = lambda v: v[2, None, [0, 1]][[1, 1], 0]  # noqa: E731
    jac = _exact_jacobian(x, [(2, None, np.array([0, 1])), (np.array([1, 1]), 0)])
    for mode in ("forward", "reverse"):
        np.testing.assert_array_equal(ad.jacobian(f, mode=mode)(x), jac)


@pytest.mark.parametrize(
    "index",
    [
        (5,),
        (np.array([0, 3]),),
        (np.array([0, 1]), np.array([0, 1, 1])),  # arrays that do not broadcast
        (0, 0, 0),  # too many indices
        (Ellipsis, 0, Ellipsis),
        (np.array([0.5]),),
        (True,),
    ],
)
def test_bad_indices_are_typed_errors(index: Index) -> None:
    x = np.zeros((3, 2))
    with pytest.raises(AutodiffError):
        ad.grad(lambda v: anp.sum(v[index]))(x)
    with pytest.raises(AutodiffError):
        anp.getitem(x, index).shape  # noqa: B018
    with pytest.raises(AutodiffError):
        anp.OPS["getitem"].shape(x, index)


def test_result_shape_is_computed_without_indexing() -> None:
    """The shape of a huge gather comes from the index shapes: nothing is allocated."""
    x = np.zeros((1, 1))
    i = np.zeros((4000, 1), dtype=np.int64)
    j = np.zeros((1, 4000), dtype=np.int64)
    tracemalloc.start()
    try:
        assert anp.OPS["getitem"].shape(x, (i, j)) == (4000, 4000)
        assert anp.OPS["getitem"].shape(np.zeros((2, 3, 1)), (i, slice(None), j)) == (
            4000,
            4000,
            3,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # the result would be 128 MB


@pytest.mark.parametrize(
    "index",
    [
        (np.array([True, False]),),  # shorter than the axis
        ([True, False, True, False, True],),  # longer, as a list
        (slice(None), np.array([True])),  # on the second axis
        (Ellipsis, np.array([True, True, False])),  # after ..., one too long
    ],
)
def test_a_mask_of_the_wrong_length_is_refused_as_numpy_does(index: Index) -> None:
    """A mask must match the axes it covers; before this check a short mask became the
    integer index of its nonzero() and silently selected elements NumPy refuses to."""
    x = np.arange(8.0).reshape(4, 2)
    with pytest.raises(IndexError):
        x[index]
    with pytest.raises(AutodiffError, match="boolean index did not match"):
        anp.getitem(x, index)
    with pytest.raises(AutodiffError, match="boolean index did not match"):
        ad.grad(lambda v: anp.sum(anp.getitem(v, index)))(x)
