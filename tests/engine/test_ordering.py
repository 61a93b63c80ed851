"""The ordering family's semantics beyond the op table: NumPy's results and shapes (axis=None,
negative axes, keepdims), index arguments as selections, the stable tie convention, exact
cumprod derivatives with zeros, errors before anything runs, and one graph node per op."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError, SizeLimitError
from engine.graph import Recorder
from engine.registry import OPS
from engine.shapes import check_size
from engine.transforms import Trace

RNG = np.random.default_rng(7)
X = RNG.uniform(-2, 2, (3, 4, 2))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("cumsum", {}),
        ("cumsum", {"axis": -2}),
        ("cumprod", {"axis": 0}),
        ("cumprod", {}),
        ("sort", {}),
        ("sort", {"axis": None}),
        ("sort", {"axis": 0, "kind": "mergesort"}),
        ("argsort", {"axis": None}),
        ("argsort", {"axis": 1}),
        ("argmax", {}),
        ("argmax", {"axis": -1, "keepdims": True}),
        ("argmin", {"axis": None, "keepdims": True}),
        ("argmin", {"axis": 1}),
        ("diff", {}),
        ("diff", {"n": 2, "axis": 0}),
        ("diff", {"n": 5, "axis": 1}),
        ("nansum", {"axis": (0, 2), "keepdims": True}),
        ("nanmean", {"axis": -1}),
        ("average", {"axis": (0, 1)}),
        ("median", {}),
        ("median", {"axis": (0, 2)}),
        ("median", {"axis": 1, "keepdims": True}),
        ("quantile", {"q": [0.1, 0.5, 1.0], "axis": 1}),
        ("quantile", {"q": np.array([[0.2], [0.8]]), "keepdims": True}),
        ("percentile", {"q": 90.0, "axis": -1, "method": "lower"}),
        ("percentile", {"q": [5.0, 50.0], "axis": 0, "method": "midpoint"}),
        ("quantile", {"q": 0.3, "axis": 1, "method": "nearest"}),
        ("quantile", {"q": 0.3, "axis": 1, "method": "higher"}),
    ],
)
def test_values_and_shapes_are_numpys(name: str, kwargs: dict[str, Any]) -> None:
    ours = OPS[name](X, **kwargs)
    if name in ("sort", "argsort"):
        kwargs = {**kwargs, "kind": "stable"}
    theirs = getattr(np, name)(X, **kwargs)
    assert np.shape(ours) == np.shape(theirs)
    assert np.shape(ours) == OPS[name].shape(X, **kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=1e-14)


def test_take_and_take_along_axis_are_numpys() -> None:
    idx = np.array([[3, -1], [0, 0]])
    for axis in (None, 1, -2):
        np.testing.assert_array_equal(anp.take(X, idx, axis=axis), np.take(X, idx, axis=axis))
    for mode in ("wrap", "clip"):
        big = np.array([7, -9, 2])
        np.testing.assert_array_equal(
            anp.take(X, big, axis=1, mode=mode), np.take(X, big, axis=1, mode=mode)
        )
    order = np.argsort(X, axis=1)
    np.testing.assert_array_equal(
        anp.take_along_axis(X, order, axis=1), np.take_along_axis(X, order, axis=1)
    )
    flat = np.array([0, 23, 5])
    np.testing.assert_array_equal(
        anp.take_along_axis(X, flat, axis=None), np.take_along_axis(X, flat, axis=None)
    )


def test_index_arguments_select_without_a_derivative() -> None:
    """Traced integral indices select, like x[idx]; their gradient is zero."""
    x = np.array([1.0, 2.0, 3.0])

    def f(x: Any, i: Any) -> Any:
        return anp.sum(anp.take(x, i) * 3.0) + anp.sum(anp.take_along_axis(x, i, axis=0))

    gx, gi = ad.grad(f, (0, 1))(x, np.array([2.0, 2.0, 0.0]))
    np.testing.assert_array_equal(gx, [3.0 + 1.0, 0.0, 6.0 + 2.0])
    np.testing.assert_array_equal(gi, [0.0, 0.0, 0.0])
    jac = ad.jacobian(lambda i: anp.take(x, i), mode="forward")(np.array([1.0, 0.0]))
    np.testing.assert_array_equal(jac, np.zeros((2, 2)))


def test_sort_ties_follow_the_stable_permutation() -> None:
    x = np.array([2.0, 1.0, 2.0, 1.0])
    w = np.array([1.0, 10.0, 100.0, 1000.0])
    # stable: the 1.0s (indices 1, 3) take places 0, 1; the 2.0s (0, 2) places 2, 3
    g = ad.grad(lambda x: anp.sum(anp.sort(x) * w))(x)
    np.testing.assert_array_equal(g, [100.0, 1.0, 1000.0, 10.0])
    np.testing.assert_array_equal(anp.argsort(x), [1, 3, 0, 2])


def test_max_and_min_still_share_ties_evenly() -> None:
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(
        ad.grad(lambda x: anp.sum(anp.max(x, axis=1)))(x),
        [
            [0, 0.5, 0.5],
            [1 / 3, 1 / 3, 1 / 3],
        ],
    )
    np.testing.assert_allclose(ad.grad(lambda x: anp.min(x))(x), [[1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("x", [[2.0, 0.0, 3.0, 0.5], [0.0, 0.0, 1.5, 2.0], [1.0, 2.0, 3.0, 0.0]])
def test_cumprod_third_derivative_is_exact_with_zeros(x: list[float]) -> None:
    """sum(cumprod(x)) is a polynomial: its third derivative along v, from the closed form."""
    x0, v = np.array(x), np.array([0.3, -1.0, 0.7, 2.0])

    def along(t: Any) -> Any:
        return anp.sum(anp.cumprod(x0 + t * v))

    third = ad.grad(ad.grad(ad.grad(along)))(0.0)
    # d^3/dt^3 of prod_{k<=j}(x_k + t v_k) at 0: 6 * sum over triples k1<k2<k3<=j of
    # v_k1 v_k2 v_k3 prod of the other x
    expected = 0.0
    for j in range(4):
        for a in range(j + 1):
            for b in range(a + 1, j + 1):
                for c in range(b + 1, j + 1):
                    rest = np.prod([x0[k] for k in range(j + 1) if k not in (a, b, c)])
                    expected += 6 * v[a] * v[b] * v[c] * rest
    assert third == pytest.approx(expected, abs=1e-12)


def test_float32_stays_float32() -> None:
    x = X.astype(np.float32)
    for f in (
        lambda x: anp.cumprod(x, axis=0),
        lambda x: anp.diff(x, prepend=0.0),
        lambda x: anp.quantile(x, [0.2, 0.7], axis=1),
        lambda x: anp.nanmean(x),
        lambda x: anp.average(x, axis=0, weights=x * x + 1),
    ):
        value, vjp_fn = ad.vjp(f, x)
        assert np.asarray(value).dtype == np.float32
        assert vjp_fn(np.ones_like(value))[0].dtype == np.float32


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: anp.take(X, [12], axis=1), "index 12 is out of bounds for axis 1 with size 4"),
        (lambda: anp.take(X, [-25]), "index -25 is out of bounds for the flattened array"),
        (lambda: anp.take(X, [0.5]), "integers"),
        (lambda: anp.take(X, [0], mode="nope"), "mode must be one of"),
        (lambda: anp.take(np.zeros(0), [0], mode="wrap"), "empty"),
        (lambda: anp.take_along_axis(X, np.zeros((2, 2), int), axis=0), "same number"),
        (lambda: anp.take_along_axis(X, np.full((3, 1, 2), 4), axis=1), "out of bounds"),
        (lambda: anp.take_along_axis(X, np.zeros((2, 1, 2), int), axis=1), "broadcast"),
        (lambda: anp.searchsorted(X, 0.5), "1-D"),
        (lambda: anp.searchsorted(X[0, :, 0], 0.5, side="up"), "side"),
        (lambda: anp.searchsorted(X[0, :, 0], 0.5, sorter=[0, 1]), "sorter"),
        (lambda: anp.quantile(X, 1.01), "range [0, 1]"),
        (lambda: anp.percentile(X, [50.0, np.nan]), "range [0, 100]"),
        (lambda: anp.quantile(X, 0.5, method="weibull"), "method"),
        (lambda: anp.argmax(np.zeros((2, 0)), axis=1), "empty"),
        (lambda: anp.diff(np.float64(1.0)), "at least one dimension"),
        (lambda: anp.diff(X, n=-1), "non-negative"),
        (lambda: anp.diff(X, prepend=np.zeros((3, 5, 2))), "does not fit"),
        (lambda: anp.average(X, weights=np.ones(4)), "axis must be given"),
        (lambda: anp.average(X, axis=1, weights=np.ones(3)), "1-D with the length"),
        (lambda: anp.average(X, axis=0, weights=np.zeros(3)), "sum to zero"),
        (lambda: anp.sort(X, order="f"), "structured"),
        (lambda: anp.cumsum(X, axis=3), "out of bounds"),
        (lambda: anp.cumsum(X, 0, 1), "at most"),
        (lambda: anp.median(X, axes=0), "unexpected argument"),
    ],
)
def test_bad_arguments_are_clear_errors(call: Any, words: str) -> None:
    with pytest.raises(AutodiffError) as info:
        call()
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("take", (np.zeros((10, 1000)), np.zeros((400, 400))), {"axis": 1}),
        ("take_along_axis", (np.zeros((1, 5000)), np.zeros((5000, 1))), {"axis": 0}),
        ("quantile", (np.zeros((4, 1000)), np.linspace(0, 1, 5000)), {"axis": 0}),
        ("percentile", (np.zeros((3, 3000)),), {"q": np.zeros(4000), "axis": 0}),
        ("cumsum", (np.broadcast_to(np.zeros(1), (10**8,)),), {}),
    ],
)
def test_sizes_are_checked_from_shapes(name: str, args: Any, kwargs: Any) -> None:
    with pytest.raises(SizeLimitError):
        check_size(OPS[name], args, kwargs, 1_000_000)


def test_one_graph_node_per_op() -> None:
    x = X[0]
    with Recorder() as rec:

        def f(x: Any) -> Any:
            rec.leaf("x", x, True)
            return anp.sum(anp.quantile(anp.cumprod(x, axis=None), 0.5))

        trace = Trace(f, [x], [0])
    nodes = rec.metadata(trace.outputs)["nodes"]
    ops = [n["op"] for n in nodes if n.get("op") not in (None, "input", "constant")]
    assert ops == ["cumprod", "quantile", "sum"]
