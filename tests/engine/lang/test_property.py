"""Random well-formed expressions over the ops, checked against NumPy."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.lang import compile_source

Env = dict[str, np.ndarray]
Expr = tuple[str, Callable[[Env], Any]]

UNARY: list[tuple[str, Callable[[Any], Any]]] = [
    ("sin", np.sin),
    ("cos", np.cos),
    ("tanh", np.tanh),
    ("exp", np.exp),
    ("abs", np.abs),
    ("negative", np.negative),
    ("square", np.square),
    ("sqrt", np.sqrt),
    ("log1p", np.log1p),
    ("sum", np.sum),
    ("mean", np.mean),
    ("max", np.max),
    ("flip", np.flip),
]
BINARY: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("+", np.add),
    ("-", np.subtract),
    ("*", np.multiply),
    ("/", np.divide),
    ("maximum", np.maximum),
    ("minimum", np.minimum),
]
LEAVES: list[Expr] = [
    ("x", lambda env: env["x"]),
    ("y", lambda env: env["y"]),
    ("2", lambda env: 2.0),
    ("0.5", lambda env: 0.5),
    ("x[::-1]", lambda env: env["x"][::-1]),
    ("[1, -2, 3]", lambda env: np.array([1.0, -2.0, 3.0])),
]


def _unary(name: str, fn: Callable[[Any], Any], arg: Expr) -> Expr:
    return f"{name}({arg[0]})", lambda env: fn(arg[1](env))


def _binary(name: str, fn: Callable[[Any, Any], Any], a: Expr, b: Expr) -> Expr:
    text = f"({a[0]} {name} {b[0]})" if not name.isalpha() else f"{name}({a[0]}, {b[0]})"
    return text, lambda env: fn(a[1](env), b[1](env))


def _where(c: Expr, a: Expr, b: Expr) -> Expr:
    text = f"where({c[0]} < {a[0]}, {a[0]}, {b[0]})"
    return text, lambda env: np.where(c[1](env) < a[1](env), a[1](env), b[1](env))


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(lambda op, a: _unary(op[0], op[1], a), st.sampled_from(UNARY), children),
        st.builds(
            lambda op, a, b: _binary(op[0], op[1], a, b),
            st.sampled_from(BINARY),
            children,
            children,
        ),
        st.builds(_where, children, children, children),
    )


EXPRESSIONS = st.recursive(st.sampled_from(LEAVES), _extend, max_leaves=10)
VECTORS = st.lists(st.floats(-3, 3, allow_nan=False), min_size=3, max_size=3).map(np.array)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, VECTORS, VECTORS)
def test_expressions_match_numpy(expr: Expr, x: np.ndarray, y: np.ndarray) -> None:
    text, reference = expr
    env = {"x": x, "y": y}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.asarray(reference(env), dtype=float)
        got = compile_source(text).run(env)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=0, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(EXPRESSIONS, VECTORS, VECTORS)
def test_program_form_matches_expression_form(expr: Expr, x: np.ndarray, y: np.ndarray) -> None:
    text, _ = expr
    env = {"x": x, "y": y}
    program = f"t = {text}\nif sum(t * 0) == 0:\n    u = t\nelse:\n    u = t\nreturn u"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np.asarray(compile_source(text).run(env))
        b = np.asarray(compile_source(program).run(env))
    np.testing.assert_array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(EXPRESSIONS)
def test_gradients_match_between_text_forms(expr: Expr) -> None:
    text, _ = expr
    x, y = np.array([0.3, 1.2, -0.7]), np.array([1.1, -0.4, 0.9])
    single = compile_source(f"sum({text})")
    program = compile_source(f"s = 0\nfor i in range(1):\n    s = s + sum({text})\nreturn s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        g1 = engine.grad(lambda x, y: single.run({"x": x, "y": y}), argnums=(0, 1))(x, y)
        g2 = engine.grad(lambda x, y: program.run({"x": x, "y": y}), argnums=(0, 1))(x, y)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, equal_nan=True)
