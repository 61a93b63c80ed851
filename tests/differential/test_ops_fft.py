"""The FFT family against JAX: gradients (JAX's convention) and JVPs of real-valued losses
through each transform, float64 and complex128 inputs, with n/s padding and truncation,
several axes, every norm, and size-1 axes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp

COVERED = {  # the ops this file compares (tests/differential/test_differential.py)
    "fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2",
    "rfftn", "irfftn", "fftshift", "ifftshift",
}  # fmt: skip

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
jax.config.update("jax_enable_x64", True)

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("fft", {}),
    ("fft", {"n": 4}),
    ("fft", {"n": 9, "axis": 0, "norm": "ortho"}),
    ("ifft", {"n": 8, "norm": "forward"}),
    ("fft2", {}),
    ("ifft2", {"s": (2, 7)}),
    ("fftn", {"axes": (1, 0), "s": (5, 2)}),
    ("ifftn", {"norm": "ortho"}),
    ("rfft", {}),
    ("rfft", {"n": 5}),
    ("rfft", {"n": 8, "axis": 0, "norm": "ortho"}),
    ("irfft", {}),
    ("irfft", {"n": 7}),
    ("irfft", {"n": 3, "norm": "forward"}),
    ("rfft2", {}),
    ("irfft2", {}),
    ("rfftn", {"s": (4, 5)}),
    ("irfftn", {"s": (3, 9)}),
    ("fftshift", {}),
    ("ifftshift", {"axes": 1}),
]


def _loss(m: Any, op: str, kw: dict[str, Any], weights: np.ndarray) -> Any:
    def f(a: Any) -> Any:
        y = getattr(m.fft, op)(a, **kw) if m is jnp else getattr(anp, op)(a, **kw)
        w = np.resize(weights, y.shape)
        return m.sum(m.abs(y * w) ** 2) + m.sum(m.real(y) * m.imag(y * w))

    return f


# every call on a (3, 6) input, and the calls that take it on a size-1 axis too
SIZE_ONE = {"fft", "ifft", "rfft", "fftshift", "ifftshift", "fft2"}
PARAMS = [(op, kw, (3, 6)) for op, kw in CALLS] + [
    (op, kw, (2, 1)) for op, kw in CALLS if op in SIZE_ONE
]


@pytest.mark.parametrize(
    "op, kw, shape", PARAMS, ids=[f"{o}{sorted(k.items())}-{s}" for o, k, s in PARAMS]
)
def test_against_jax(op: str, kw: dict[str, Any], shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(op) + sum(shape))
    weights = rng.normal(size=(4, 9)) + 1j * rng.normal(size=(4, 9))
    x = rng.normal(size=shape)
    inputs = [x] if op.startswith("rfft") else [x, x + 1j * rng.normal(size=shape)]
    for a in inputs:
        f, g = _loss(anp, op, kw, weights), _loss(jnp, op, kw, weights)
        np.testing.assert_allclose(ad.grad(f)(a), jax.grad(g)(a), rtol=1e-10, atol=1e-10)
        v = rng.normal(size=shape) * (1.0 if a.dtype.kind == "f" else 1 + 0.5j)
        np.testing.assert_allclose(
            ad.jvp(f, (a,), (v,))[1], jax.jvp(g, (a,), (v,))[1], rtol=1e-10, atol=1e-10
        )
        if shape == (3, 6):  # second order once per call (the JAX side is slow unjitted)
            np.testing.assert_allclose(
                ad.hvp(f, (a,), (v,))[0],
                jax.jvp(jax.grad(g), (a,), (v,))[1],
                rtol=1e-9,
                atol=1e-9,
            )


def test_irfft_of_one_frequency_needs_n() -> None:
    """2 (m - 1) = 0 has no default length (NumPy refuses it too): a clear error."""
    from engine.errors import ValueDomainError

    with pytest.raises(ValueDomainError, match="irfft"):
        anp.irfft(np.ones((2, 1)) + 0j)
    assert anp.irfft(np.ones((2, 1)) + 0j, n=1).shape == (2, 1)


def test_large_n_is_refused_from_shapes() -> None:
    from engine.errors import SizeLimitError
    from engine.shapes import check_size

    with pytest.raises(SizeLimitError):
        check_size(anp.OPS["fft"], (np.ones(3),), {"n": 10**10}, 10**6)
