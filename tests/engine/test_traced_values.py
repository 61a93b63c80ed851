"""A traced value never silently becomes a constant (issue 13, B4 and B6).

Either the derivative flows through it (a list of traced values given to an op is an
array; full's fill value, linspace's start and stop), checked here against central
differences in reverse and forward mode and to second order, or it is refused with a
``TracedValueError`` naming what was asked (``float(x)``, a traced shape or count).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import TracedValueError

EPS = 1e-6
X = np.array([0.7, -1.3])


def _fd(f: Callable[[Any], Any], x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.asarray(f(x + EPS * v)) - np.asarray(f(x - EPS * v))) / (2 * EPS)


def _check_all_orders(f: Callable[[Any], Any], x: np.ndarray) -> None:
    """Reverse and forward mode against differences of f; H v against differences of the
    gradient, forward-over-reverse and reverse-over-reverse."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=x.shape)
    scalar = lambda y: anp.sum(f(y))  # noqa: E731
    g = ad.grad(scalar)(x)
    np.testing.assert_allclose(np.sum(g * v), np.sum(_fd(scalar, x, v)), rtol=1e-6, atol=1e-8)
    _, t = ad.jvp(f, (x,), (v,))
    np.testing.assert_allclose(t, _fd(f, x, v), rtol=1e-6, atol=1e-8)
    expected = _fd(ad.grad(scalar), x, v)
    _, _, (hv,) = ad.hvp_and_grad(scalar, (x,), (v,))
    np.testing.assert_allclose(hv, expected, rtol=1e-5, atol=1e-6)
    rev = ad.grad(lambda y: anp.sum(ad.grad(scalar)(y) * v))(x)
    np.testing.assert_allclose(rev, expected, rtol=1e-5, atol=1e-6)


LISTS = {
    "mean of a list": lambda x: anp.mean([x[0], x[0] + 2.0]),
    "mean of a list of arrays": lambda x: anp.mean([x, x * x], axis=0),
    "a list and a number": lambda x: anp.sum(anp.multiply([x[0], 1.0, x[1]], [2.0, 3.0, x[0]])),
    "nested lists": lambda x: anp.sum(anp.sin([[x[0], x[1]], [x[1] * x[0], 0.5]])),
    "a tuple": lambda x: anp.dot((x[1], x[0]), (x[0], 2.0)),
    "reordered items": lambda x: anp.exp([x[1], x[0]]),
    "sequence items": lambda x: anp.concatenate([[x[0], x[1]], x, [x[1] ** 2]]),
    "operands": lambda x: anp.einsum("i,i->", [x[0], x[1]], x),
    "full's fill value": lambda x: anp.full((3,), x[0]) * x[1],
    "full broadcasting a row": lambda x: anp.full((2, 2), x) ** 2,
    "linspace's start and stop": lambda x: anp.linspace(x[0], x[1], 5) ** 3,
    "linspace by keyword": lambda x: anp.linspace(start=x[0], stop=2.0, num=4) * x[1],
}


@pytest.mark.parametrize("name", LISTS)
def test_traced_values_given_as_arrays_are_differentiated(name: str) -> None:
    _check_all_orders(LISTS[name], X)


def test_the_issue_examples() -> None:
    # each had gradient 0 before
    assert ad.grad(lambda x: anp.mean([x, x + 2]))(1.5) == pytest.approx(1.0)
    assert ad.grad(lambda x: anp.sum(anp.linspace(x, 2.0, 5)))(0.3) == pytest.approx(2.5)
    assert ad.grad(lambda x: anp.sum(anp.full((3,), x)))(0.3) == pytest.approx(3.0)


def test_constructors_keep_numpy_dtypes() -> None:
    assert anp.full((2,), np.float32(1.0)).dtype == np.float32
    assert anp.full((2,), 1.0).dtype == np.float64
    assert anp.linspace(np.float32(0.0), np.float32(1.0), 3).dtype == np.float32
    np.testing.assert_array_equal(anp.linspace(0, 1, 5), np.linspace(0, 1, 5))
    g = ad.grad(lambda x: anp.sum(anp.full((3,), x)))(np.float32(1.0))
    assert np.asarray(g).dtype == np.float32


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "float": float,
    "int": int,
    "complex": complex,
    "an index": operator.index,
    "np.asarray": np.asarray,
    "a NumPy function": np.sin,
    "np.array of a list": lambda x: np.array([x, x]),
    "a Python list index": lambda x: [1.0, 2.0][x],
    "range": lambda x: range(x),
}


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", CONVERSIONS)
def test_converting_a_traced_value_raises(name: str, mode: str) -> None:
    convert = CONVERSIONS[name]

    def f(x: Any) -> Any:
        return x * convert(x)

    with pytest.raises(TracedValueError, match="derivative would be lost"):
        if mode == "reverse":
            ad.grad(f)(np.float64(1.0))
        else:
            ad.jvp(f, (np.float64(1.0),), (np.float64(1.0),))


def test_conditions_still_read_the_value() -> None:
    def f(x: Any) -> Any:
        if x > 0 and bool(x < 10):  # a comparison's result, and bool() of a box
            return x * x
        return -x

    assert ad.grad(f)(3.0) == pytest.approx(6.0)
    assert ad.grad(f)(-3.0) == pytest.approx(-1.0)
    assert ad.jvp(f, (3.0,), (1.0,))[1] == pytest.approx(6.0)


REFUSED = {
    "zeros shape": (lambda x: anp.zeros(x), "zeros", "shape"),
    "ones shape in a tuple": (lambda x: anp.ones((x, 2)), "ones", "shape"),
    "full shape": (lambda x: anp.full(x, 1.0), "full", "shape"),
    "eye N": (lambda x: anp.eye(x), "eye", "N"),
    "eye k": (lambda x: anp.eye(3, k=x), "eye", "k"),
    "arange start": (lambda x: anp.arange(x), "arange", "start"),
    "arange step": (lambda x: anp.arange(0, 5, step=x), "arange", "step"),
    "linspace num": (lambda x: anp.linspace(0.0, 1.0, x), "linspace", "num"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_constructors_refuse_traced_shapes_and_counts(name: str) -> None:
    f, op, argument = REFUSED[name]
    for run in (lambda: ad.grad(lambda x: anp.sum(f(x)))(2.0), lambda: ad.jvp(f, (2.0,), (1.0,))):
        with pytest.raises(TracedValueError) as err:
            run()
        assert err.value.op == op
        assert f"{op}: argument {argument!r}" in err.value.message
    # the same call with a constant works
    assert np.asarray(f(2)).size > 0
