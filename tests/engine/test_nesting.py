"""Every composition of grad, jacobian (forward and reverse), hessian, vjp, jvp and hvp up
to third order: ``T1(T2(T3(f)))`` runs, and each layer agrees with central finite
differences of the layer below it (itself checked one order lower), so every composition
is anchored in finite differences of ``f``. A few are also checked against JAX."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.registry import shape_of

Fn = Callable[[Any], Any]
EPS = 1e-6


def f(x: Any) -> Any:
    """R^2 -> R^2, with non-zero derivatives of every order, an index and a product."""
    return anp.sin(x) * x[0] + x**3 / 3.0 + anp.exp(0.3 * x[1] * x)


def _constant(shape: tuple[int, ...], phase: float) -> np.ndarray:
    """A fixed cotangent or tangent of ``shape``, not all equal."""
    return np.cos(phase + np.arange(math.prod(shape), dtype=float)).reshape(shape)


def _scalar(g: Fn) -> Fn:
    return lambda x: anp.sum(anp.sin(g(x)))


def _vjp(g: Fn) -> Fn:
    def h(x: Any) -> Any:
        out, pullback = ad.vjp(g, x)
        return pullback(_constant(shape_of(out), 0.5))[0]

    return h


def _jvp(g: Fn) -> Fn:
    return lambda x: ad.jvp(g, (x,), (_constant(shape_of(x), 1.5),))[1]


def _hvp(g: Fn) -> Fn:
    return lambda x: ad.hvp(_scalar(g), (x,), (_constant(shape_of(x), 1.5),))[0]


TRANSFORMS: dict[str, Callable[[Fn], Fn]] = {
    "grad": lambda g: ad.grad(_scalar(g)),
    "jacfwd": lambda g: ad.jacobian(g, mode="forward"),
    "jacrev": lambda g: ad.jacobian(g, mode="reverse"),
    "hessian": lambda g: ad.hessian(_scalar(g)),
    "vjp": _vjp,
    "jvp": _jvp,
    "hvp": _hvp,
}


def _fd_jacobian(g: Fn, x: np.ndarray) -> np.ndarray:
    """Central differences: shape g(x).shape + x.shape."""
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = EPS
        e = e.reshape(x.shape)
        cols.append((np.asarray(g(x + e)) - np.asarray(g(x - e))) / (2 * EPS))
    out = np.stack(cols, axis=-1)
    return out.reshape(out.shape[:-1] + x.shape)


def _reference(name: str, g: Fn, x: np.ndarray) -> np.ndarray:
    """``TRANSFORMS[name](g)(x)`` from finite differences of ``g`` (and, for the second
    order transforms, of the engine's gradient of ``g``, which is checked on its own)."""
    y = np.asarray(g(x))
    if name in ("hessian", "hvp"):
        hess = _fd_jacobian(TRANSFORMS["grad"](g), x)
        if name == "hessian":
            return hess
        return np.tensordot(hess, _constant(x.shape, 1.5), axes=x.ndim)
    jac = _fd_jacobian(g, x)
    if name == "grad":
        return np.tensordot(np.cos(y), jac, axes=y.ndim)
    if name == "vjp":
        return np.tensordot(_constant(y.shape, 0.5), jac, axes=y.ndim)
    if name == "jvp":
        return np.tensordot(jac, _constant(x.shape, 1.5), axes=x.ndim)
    return jac


def _compose(names: tuple[str, ...]) -> Fn:
    g: Fn = f
    for name in reversed(names):
        g = TRANSFORMS[name](g)
    return g


CHAINS = [c for n in (1, 2, 3) for c in itertools.product(TRANSFORMS, repeat=n)]
X = np.array([0.7, -0.4])


@pytest.mark.parametrize("names", CHAINS, ids=lambda c: "(".join(c))
def test_composition_matches_finite_differences(names: tuple[str, ...]) -> None:
    got = np.asarray(_compose(names)(X))
    inner = _compose(names[1:])
    expected = _reference(names[0], inner, X)
    assert got.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("names", [("grad", "hessian")])
def test_composition_matches_jax(names: tuple[str, ...]) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def jf(x: Any) -> Any:
        return jnp.sin(x) * x[0] + x**3 / 3.0 + jnp.exp(0.3 * x[1] * x)

    jax_transforms = {
        "grad": lambda g: jax.grad(lambda x: jnp.sum(jnp.sin(g(x)))),
        "jacfwd": jax.jacfwd,
        "jacrev": jax.jacrev,
        "hessian": lambda g: jax.hessian(lambda x: jnp.sum(jnp.sin(g(x)))),
    }
    jg = jf
    for name in reversed(names):
        jg = jax_transforms[name](jg)
    np.testing.assert_allclose(_compose(names)(X), jg(X), rtol=1e-10, atol=1e-10)
