"""Property tests: random compositions of ops agree with finite differences, forward
mode agrees with reverse mode, and float32 agrees with float64 within float32 tolerance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine as ad
import engine.numpy as anp

# Smooth, well-conditioned building blocks on R^n (n = 3): each maps (3,) to (3,).
UNARY: list[tuple[str, Callable[[Any], Any]]] = [
    ("sin", anp.sin),
    ("tanh", anp.tanh),
    ("sigmoid", anp.sigmoid),
    ("softplus", anp.softplus),
    ("exp_damped", lambda x: anp.exp(-0.5 * x * x)),
    ("log1p_sq", lambda x: anp.log1p(x * x)),
    ("square", lambda x: x * x * 0.5),
    ("softmax", anp.softmax),
    ("cumulative", lambda x: anp.stack([x[0], x[0] + x[1], x[1] * x[2]])),
    ("flip", anp.flip),
    (
        "matvec",
        lambda x: anp.matmul(np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.3], [0.2, 0.0, 1.0]]), x),
    ),
]
BINARY: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("add", anp.add),
    ("multiply", anp.multiply),
    ("subtract", anp.subtract),
    ("hypot_like", lambda a, b: anp.sqrt(a * a + b * b + 1.0)),
    ("outer_sum", lambda a, b: anp.sum(anp.outer(a, b), axis=0)),
]
REDUCE: list[tuple[str, Callable[[Any], Any]]] = [
    ("sum", anp.sum),
    ("logsumexp", anp.logsumexp),
    ("norm", lambda x: anp.norm(x + 3.0)),
    ("mean_sq", lambda x: anp.mean(x * x)),
]


@st.composite
def programs(draw: st.DrawFn) -> tuple[str, Callable[[Any], Any]]:
    """A random composition: a few unary/binary steps over a growing pool, then a reduction."""
    steps = draw(st.integers(1, 5))
    plan = []
    for _ in range(steps):
        if draw(st.booleans()):
            plan.append(("u", draw(st.integers(0, len(UNARY) - 1)), draw(st.integers(0, 10))))
        else:
            plan.append(
                (
                    "b",
                    draw(st.integers(0, len(BINARY) - 1)),
                    draw(st.integers(0, 10)),
                    draw(st.integers(0, 10)),
                )
            )
    reducer = draw(st.integers(0, len(REDUCE) - 1))

    def f(x: Any) -> Any:
        pool = [x]
        for step in plan:
            if step[0] == "u":
                pool.append(UNARY[step[1]][1](pool[step[2] % len(pool)]))
            else:
                a, b = pool[step[2] % len(pool)], pool[step[3] % len(pool)]
                pool.append(BINARY[step[1]][1](a, b))
        return REDUCE[reducer][1](pool[-1])

    name = (
        " ".join((UNARY[s[1]][0] if s[0] == "u" else BINARY[s[1]][0]) for s in plan)
        + f" | {REDUCE[reducer][0]}"
    )
    return name, f


POINTS = st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3).map(np.array)
SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(programs(), POINTS, POINTS)
def test_random_compositions_match_finite_differences(
    prog: Any, x: np.ndarray, v: np.ndarray
) -> None:
    _, f = prog
    g = ad.grad(f)(x)
    eps = 1e-6
    fd = (float(f(x + eps * v)) - float(f(x - eps * v))) / (2 * eps)
    assert np.isclose(np.dot(g, v), fd, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(programs(), POINTS, POINTS)
def test_forward_mode_agrees_with_reverse(prog: Any, x: np.ndarray, v: np.ndarray) -> None:
    _, f = prog
    _, tangent = ad.jvp(f, (x,), (v,))
    assert np.isclose(float(tangent), np.dot(ad.grad(f)(x), v), rtol=1e-9, atol=1e-10)


@SETTINGS
@given(programs(), POINTS)
def test_float32_agrees_with_float64(prog: Any, x: np.ndarray) -> None:
    _, f = prog
    v64, g64 = ad.value_and_grad(f)(x)
    v32, g32 = ad.value_and_grad(f)(x.astype(np.float32))
    assert g32.dtype == np.float32
    assert np.isclose(float(v32), float(v64), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g32, g64, rtol=2e-3, atol=2e-3)


@SETTINGS
@given(programs(), POINTS)
def test_hessian_is_symmetric_and_matches_jacobian_of_gradient(prog: Any, x: np.ndarray) -> None:
    _, f = prog
    h = ad.hessian(f)(x)
    np.testing.assert_allclose(h, h.T, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(h, ad.jacobian(ad.grad(f), mode="reverse")(x), rtol=1e-8, atol=1e-9)
