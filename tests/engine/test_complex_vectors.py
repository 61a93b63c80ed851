"""The singular vectors and eigh's eigenvectors of a complex matrix: their rules are the real
ones (no phase terms), so reverse mode refuses them and forward mode answers nan, never a
wrong finite derivative (HIPS autograd's test_svd_*_complex and test_eigvalh_*_complex, run
by bench/hips_suite.py, got wrong values). The values' derivatives are checked in
cases_complex.py (rows svd/norm/eigh with complex tags)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import NotDifferentiableError

RNG = np.random.default_rng(7)
WIDE = RNG.standard_normal((2, 3)) + 1j * RNG.standard_normal((2, 3))
_H = RNG.standard_normal((3, 3)) + 1j * RNG.standard_normal((3, 3))
HERMITIAN = _H + _H.conj().T

VECTOR_USES = {
    "svd-u": (lambda a: anp.sum(anp.abs(anp.svd(a, full_matrices=False)[0]) ** 2 * 1.3), WIDE),
    "svd-vt": (lambda a: anp.sum(anp.real(anp.svd(a, full_matrices=False)[2])), WIDE),
    "eigh-v": (lambda a: anp.sum(anp.real(anp.eigh(a)[1])), HERMITIAN),
}


@pytest.mark.parametrize("name", sorted(VECTOR_USES))
def test_reverse_mode_refuses_a_complex_matrixs_vectors(name: str) -> None:
    f, a = VECTOR_USES[name]
    with pytest.raises(NotDifferentiableError, match="vectors of a complex matrix"):
        ad.grad(f)(a)


@pytest.mark.parametrize("name", sorted(VECTOR_USES))
def test_forward_mode_gives_nan_for_a_complex_matrixs_vectors(name: str) -> None:
    f, a = VECTOR_USES[name]
    _, tangent = ad.jvp(f, [a], [np.ones_like(a)])
    assert np.isnan(tangent)


def _values_only(a: Any) -> Any:
    u, s, vt = anp.svd(a, full_matrices=False)
    return s[0] * 2.0 + s[1]


def test_the_singular_values_alone_still_differentiate_in_both_modes() -> None:
    direction = RNG.standard_normal(WIDE.shape) + 1j * RNG.standard_normal(WIDE.shape)
    _, tangent = ad.jvp(_values_only, [WIDE], [direction])
    eps = 1e-6
    plain = lambda a: np.linalg.svd(a, compute_uv=False) @ np.array([2.0, 1.0])  # noqa: E731
    numeric = (plain(WIDE + eps * direction) - plain(WIDE - eps * direction)) / (2 * eps)
    assert np.isclose(tangent, numeric, rtol=1e-6)
    grad = ad.grad(_values_only)(WIDE)
    assert np.isclose(np.real(np.sum(grad * direction)), numeric, rtol=1e-6)
