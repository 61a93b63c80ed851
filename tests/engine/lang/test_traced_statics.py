"""Traced values in the language's static places (issue 13, B4 and B6).

An op's static argument (a shape, axis, count, option) computed from a differentiated
input is refused with a TracedValueError naming the op, the argument and where; full's
fill value and linspace's start and stop are array arguments and differentiated; a list
literal of traced values is a stacked array; an index, a slice bound, a range bound and
a condition read the value (they select, and contribute no derivative).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import engine
from engine.errors import TracedValueError
from engine.lang import compile_graph, compile_source

EPS = 1e-6


def _grad(source: str, x: Any) -> Any:
    program = compile_source(source)
    return engine.grad(lambda v: program.run({"x": v}))(np.asarray(x, dtype=np.float64))


def _fd(source: str, x: np.ndarray, v: np.ndarray) -> Any:
    program = compile_source(source)
    f = lambda y: np.asarray(program.run({"x": y}))  # noqa: E731
    return (f(x + EPS * v) - f(x - EPS * v)) / (2 * EPS)


DIFFERENTIATED = [
    "sum(linspace(x[0], 2.0, 5))",
    "sum(linspace(0.5, x[1], 4) ** 2)",
    "sum(linspace(start=x[0], stop=x[1], num=3) * x[1])",
    "sum(full((3,), x[0]))",
    "sum(full((2, 2), x) * x)",
    "sum(full(shape=(2,), fill_value=x[1]) ** 3)",
    "mean([x[0], x[0] + 2])",
    "sum([x[1], x[0]] * x)",
    "sum(exp([[x[0], 1.0], [x[1], x[0] * x[1]]]))",
    "prod(stack([x[1], x[0] ** 2]))",
]


@pytest.mark.parametrize("source", DIFFERENTIATED)
def test_traced_arguments_are_differentiated(source: str) -> None:
    x = np.array([0.6, -1.1])
    v = np.array([0.3, 0.8])
    program = compile_source(source)
    f = lambda y: program.run({"x": y})  # noqa: E731
    g = engine.grad(f)(x)
    assert float(np.sum(g * v)) == pytest.approx(float(_fd(source, x, v)), rel=1e-6, abs=1e-8)
    _, t = engine.jvp(f, (x,), (v,))
    assert float(t) == pytest.approx(float(_fd(source, x, v)), rel=1e-6, abs=1e-8)
    # second order: H v against differences of the gradient, both ways of getting H v
    expected = (engine.grad(f)(x + EPS * v) - engine.grad(f)(x - EPS * v)) / (2 * EPS)
    np.testing.assert_allclose(engine.hessian(f)(x) @ v, expected, rtol=1e-5, atol=1e-6)
    _, _, (hv,) = engine.hvp_and_grad(f, (x,), (v,))
    np.testing.assert_allclose(hv, expected, rtol=1e-5, atol=1e-6)


def test_the_issue_examples() -> None:
    assert _grad("sum(linspace(x, 2.0, 5))", 0.5) == pytest.approx(2.5)
    assert _grad("sum(full((3,), x))", 0.5) == pytest.approx(3.0)
    assert _grad("mean([x, x + 2])", 0.5) == pytest.approx(1.0)


REFUSED = [
    ("sum(zeros(n))", "zeros", "shape"),
    ("sum(ones((2, n)))", "ones", "shape"),
    ("sum(full((n,), 1.0))", "full", "shape"),
    ("sum(eye(3, k=n))", "eye", "k"),
    ("sum(eye(n))", "eye", "N"),
    ("sum(arange(n))", "arange", "start"),
    ("sum(arange(0, 4, n))", "arange", "step"),
    ("sum(linspace(0.0, 1.0, n))", "linspace", "num"),
    ("sum(reshape(ones(4), (n, 2)))", "reshape", "shape"),
    ("sum(reshape(ones(4), (2 * n, 1)))", "reshape", "shape"),
    ("sum(sum(ones((2, 2)) * n, axis=n - 2))", "sum", "axis"),
    ("sum(sum(ones((2, 2)) * n, 0, n - 1))", "sum", "keepdims"),
    ("var(ones(3) * n, ddof=n - 1)", "var", "ddof"),
    ("std(ones(3) * n, ddof=n - 1)", "std", "ddof"),
    ("norm(ones(3) * n, ord=n)", "norm", "ord"),
    ("sum(repeat(ones(2), n))", "repeat", "repeats"),
    ("sum(tile(ones(2), n))", "tile", "reps"),
    ("sum(softmax(ones((2, 2)) * n, axis=n - 2))", "softmax", "axis"),
    ("trace(ones((3, 3)) * n, offset=n - 2)", "trace", "offset"),
]


@pytest.mark.parametrize(("source", "op", "argument"), REFUSED)
def test_traced_static_arguments_are_refused(source: str, op: str, argument: str) -> None:
    program = compile_source(source)
    with pytest.raises(TracedValueError) as err:
        engine.grad(lambda n: program.run({"n": n}))(np.float64(2.0))
    assert f"{op}(): argument {argument!r}" in err.value.message
    assert err.value.loc is not None and "line" in err.value.loc
    with pytest.raises(TracedValueError):
        engine.jvp(lambda n: program.run({"n": n}), (np.float64(2.0),), (np.float64(1.0),))
    # a constant there is fine, and so is a detached traced value
    assert np.isfinite(program.run({"n": np.float64(2.0)}))
    detached = compile_source(re.sub(r"\bn\b", "detach(n)", source))
    assert np.isfinite(engine.grad(lambda n: detached.run({"n": n}))(np.float64(2.0)))


SELECTING = [
    "x[n]",
    "sum(x[n:])",
    "s = 0.0\nfor i in range(n):\n    s = s + x[i]\nreturn s",
    "s = 0.0\nif n > 1:\n    s = x[0]\nreturn s",
]


@pytest.mark.parametrize("source", SELECTING)
def test_indices_bounds_and_conditions_read_traced_values(source: str) -> None:
    program = compile_source(source)
    x = np.array([1.0, 2.0, 3.0])
    gx, gn = engine.grad(lambda x, n: program.run({"x": x, "n": n}), (0, 1))(x, np.float64(2.0))
    assert np.asarray(gn) == 0.0  # n selects: no derivative
    assert np.sum(gx) > 0


def test_graph_form_differentiates_full_and_linspace() -> None:
    g = {
        "nodes": [
            {"id": "f", "op": "full", "inputs": ["x"], "attrs": {"shape": [3]}},
            {"id": "l", "op": "linspace", "inputs": ["x", 2.0], "attrs": {"num": 5}},
            {"id": "s1", "op": "sum", "inputs": ["f"]},
            {"id": "s2", "op": "sum", "inputs": ["l"]},
            {"id": "y", "op": "add", "inputs": ["s1", "s2"]},
        ],
        "outputs": ["y"],
    }
    program = compile_graph(g)
    assert engine.grad(lambda x: program.run({"x": x}))(np.float64(0.5)) == pytest.approx(5.5)
