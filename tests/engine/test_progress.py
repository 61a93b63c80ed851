"""The progress callback of chunked Jacobians and Hessians (the service's jobs report it):
called with (0, total) and then after each chunk, and the chunked answer is the same."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.numpy as anp


def f(x: object) -> object:
    return anp.sin(x) * anp.sum(x * x)


def scalar(x: object) -> object:
    return anp.sum(anp.sin(x) ** 2) * anp.sum(x)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_reports_each_chunk_and_keeps_its_answer(mode: str) -> None:
    x = np.linspace(-1.0, 1.0, 10)
    calls: list[tuple[int, int]] = []
    _, jac, _, ran = engine.jacobian_and_value(
        f, (x,), 0, mode, chunk_size=3, progress=lambda d, t: calls.append((d, t))
    )
    assert ran == mode
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]  # 10 rows in chunks of 3
    _, whole, _, _ = engine.jacobian_and_value(f, (x,), 0, mode)
    np.testing.assert_allclose(jac[0][0], whole[0][0], rtol=1e-14, atol=1e-14)


def test_hessian_reports_each_chunk_and_keeps_its_answer() -> None:
    x = np.linspace(-1.0, 1.0, 9)
    calls: list[tuple[int, int]] = []
    value, grads, h = engine.hessian_and_grad(
        scalar, (x,), 0, chunk_size=4, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    _, _, whole = engine.hessian_and_grad(scalar, (x,), 0)
    np.testing.assert_allclose(h[0][0], whole[0][0], rtol=1e-14, atol=1e-14)
    # against central differences of the gradient, in float64
    eps = 1e-6
    grad = engine.grad(scalar)
    fd = np.stack(
        [(grad(x + eps * e) - grad(x - eps * e)) / (2 * eps) for e in np.eye(x.size)], axis=1
    )
    np.testing.assert_allclose(h[0][0], fd, rtol=1e-6, atol=1e-6)


def test_chunk_size_and_memory_limit_take_the_smaller_chunk() -> None:
    x = np.linspace(-1.0, 1.0, 12)
    calls: list[tuple[int, int]] = []
    # the memory limit allows chunks of max_elements / peak (12 elements) = 2 rows
    engine.jacobian_and_value(
        f,
        (x,),
        0,
        "forward",
        chunk_size=6,
        max_elements=24,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (6, 6)  # chunks of 2, not 6
    calls.clear()
    engine.jacobian_and_value(
        f,
        (x,),
        0,
        "forward",
        chunk_size=4,
        max_elements=10**6,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (3, 3)  # chunks of 4, not the memory limit's 12
