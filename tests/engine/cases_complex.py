"""Test rows for complex numbers (consumed by ``test_ops.py``).

The table's inputs are real: each row builds ``z = x + 1j y`` from two of them, goes
through complex values and comes back to a real output, so the table's finite
differences (in the real coordinates x and y), forward against reverse, both Jacobian
modes, second order and float32 (complex64 inside) check the complex rules under the
convention (README, "Complex numbers"). ``z`` stays away from 0, where ``abs`` and
``angle`` are not differentiable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from engine.registry import shape_of
from tests.engine.cases import Case

PAIR = ((3,), (3,))
BROADCAST = ((2, 3), (3,))


def _z(x: Any, y: Any) -> Any:
    return x + 1j * y


def _away_from_zero(rng: np.random.Generator) -> list[np.ndarray]:
    """x in +-[0.5, 2] and y in [-2, 2]: z is never near 0 (nor on the negative real axis,
    where angle jumps)."""
    x = rng.uniform(0.5, 2.0, size=(3,))
    return [x, rng.uniform(-2.0, 2.0, size=(3,))]


def _rows() -> list[Case]:
    rows = [
        Case("real", lambda x, y: anp.real(anp.exp(_z(x, y)) * (x - 2j)), PAIR),
        Case("real", lambda x, y: anp.real(_z(x, y) * 3.0), BROADCAST, tag="broadcast"),
        Case("imag", lambda x, y: anp.imag(anp.sin(_z(x, y)) * y), PAIR),
        Case("imag", lambda x: anp.imag(x), ((3,),), tag="of-real"),
        Case("real", lambda x: anp.real(x) * x, ((3,),), tag="of-real"),
        Case("conj", lambda x, y: anp.real(anp.conj(_z(x, y)) * anp.exp(1j * x + y)), PAIR),
        Case("conj", lambda x, y: anp.imag(anp.conj(_z(x, y)) ** 2), PAIR, tag="imag"),
        Case("conjugate", lambda x, y: anp.real(anp.conjugate(_z(x, y)) * _z(y, x)), PAIR),
        Case("abs", lambda x, y: anp.abs(_z(x, y)), PAIR, make=_away_from_zero, tag="complex"),
        Case("absolute", lambda x, y: anp.absolute(_z(x, y)) ** 3, PAIR, make=_away_from_zero),
        Case("angle", lambda x, y: anp.angle(_z(x, y)), PAIR, make=_away_from_zero),
        Case(
            "angle",
            lambda x, y: anp.angle(_z(x, y) * _z(y, x), deg=True),
            PAIR,
            make=_away_from_zero,
            tag="deg",
        ),
        Case("angle", lambda x: anp.angle(x) + x, ((3,),), domain="pos", tag="of-real"),
        # holomorphic ops on complex values: the real rules, transposed (not conjugated)
        Case("exp", lambda x, y: anp.abs(anp.exp(_z(x, y)) * _z(y, x)), PAIR, tag="complex"),
        Case(
            "log",
            lambda x, y: anp.real(anp.log(_z(x, y)) * anp.conj(_z(y, x))),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "power",
            lambda x, y: anp.imag(_z(x, y) ** 2.5 + _z(x, y) ** _z(y, 0.5)),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "divide",
            lambda x, y: anp.real(_z(y, 1.0) / _z(x, y)),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "matmul",
            lambda x, y: anp.abs(anp.matmul(_z(x, y), anp.transpose(_z(y, x)))),
            ((2, 3), (2, 3)),
            tag="complex",
        ),
        Case(
            "sum",
            lambda x, y: anp.real(anp.sum(_z(x, y) ** 2, axis=0) * 1j),
            ((2, 3), (2, 3)),
            tag="complex",
        ),
        Case(
            "prod",
            lambda x, y: anp.imag(anp.prod(_z(x, y), axis=-1)),
            ((2, 3), (2, 3)),
            tag="complex",
        ),
        Case(
            "tanh",
            lambda x, y: anp.real(anp.tanh(0.3 * _z(x, y)) + anp.cos(_z(y, x))),
            PAIR,
            tag="complex",
        ),
        Case(  # its real rule used hypot, which has no complex loop (found by hips_suite)
            "arcsinh",
            lambda x, y: anp.real(anp.arcsinh(_z(x, y)) * _z(y, x)),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "sqrt",
            lambda x, y: anp.imag(anp.sqrt(_z(x, y))),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
    ]
    return rows + _fft_rows() + _eig_rows() + _svd_rows() + _eigh_rows()


def _hermitian(x: Any, y: Any) -> Any:
    """A Hermitian matrix from two real ones (x's upper part scaled: distinct eigenvalues)."""
    z = _z(x * 3.0, y)
    return z + anp.conj(anp.transpose(z))


def _eigh_rows() -> list[Case]:
    """eigh's eigenvalues of a complex Hermitian matrix: their rules conjugate V (HIPS
    autograd's test_eigvalh_*_complex, run by bench/hips_suite.py, found them transposed
    only). First order: the eigenvectors' own rules are real-only for complex input."""
    return [
        Case(
            "eigh",
            lambda x, y: _weighted(anp.eigh(_hermitian(x, y))[0]),
            ((3, 3), (3, 3)),
            smooth=False,
            tag="complex-hermitian-eigenvalues",
        ),
    ]


def _weighted(s: Any) -> Any:
    return s[0] + 0.4 * s[1]  # Python weights: float32 stays float32


def _svd_rows() -> list[Case]:
    """Singular values of a complex matrix (real, distinct for random inputs): their rules
    conjugate U and V^T (HIPS autograd's test_svd_only_s_*_complex and test_norm_nuclear_
    complex, run against the engine by bench/hips_suite.py, found them transposed only)."""
    wide = ((2, 3), (2, 3))
    return [
        Case(
            "svd",
            lambda x, y: _weighted(anp.svd(_z(x, y), compute_uv=False)),
            wide,
            smooth=False,  # its second order reads U and V's rules, still real-only for complex
            tag="complex-values-only",
        ),
        Case(
            "norm",
            lambda x, y: anp.norm(_z(x, y), ord="nuc") * 1.5,
            ((3, 2), (3, 2)),
            smooth=False,
            tag="complex-nuc",
        ),
    ]


def _spectrum_loss(y: Any) -> Any:
    """A real, smooth, non-holomorphic loss of a complex spectrum (weights break symmetry)."""
    w = np.resize(np.linspace(0.3, 1.7, 7) + 0.4j, shape_of(y)[-1:])
    w = w.astype(np.complex64 if y.dtype in (np.float32, np.complex64) else np.complex128)
    return anp.abs(y * w) ** 2 + anp.real(y) * anp.imag(y * w)


FFT_CALLS: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("fft", {}, (2, 4)),
    ("fft", {"n": 6, "norm": "ortho"}, (2, 4)),
    ("fft", {"n": 3, "axis": 0}, (4, 2)),
    ("ifft", {"n": 5, "norm": "forward"}, (2, 4)),
    ("fft2", {"s": (3, 2)}, (2, 4)),
    ("ifft2", {}, (2, 3)),
    ("fftn", {"axes": (1, 0), "s": (5, 1)}, (2, 3)),
    ("ifftn", {"norm": "ortho"}, (2, 3)),
    ("rfft", {}, (2, 5)),
    ("rfft", {"n": 6, "axis": 0, "norm": "ortho"}, (4, 2)),
    ("irfft", {}, (2, 4)),
    ("irfft", {"n": 5, "norm": "forward"}, (2, 4)),
    ("rfft2", {}, (2, 4)),
    ("irfft2", {"s": (2, 5)}, (2, 3)),
    ("rfftn", {"s": (3, 4)}, (2, 4)),
    ("irfftn", {}, (2, 3)),
    ("fftshift", {}, (2, 5)),
    ("ifftshift", {"axes": 1}, (2, 5)),
]


def _fft_rows() -> list[Case]:
    rows = []
    for op, kw, shape in FFT_CALLS:
        tag = "-".join(f"{k}{v}" for k, v in kw.items()) or "default"
        if op.startswith("rfft"):
            fn = lambda x, op=op, kw=kw: _spectrum_loss(getattr(anp, op)(x, **kw))  # noqa: E731
            rows.append(Case(op, fn, (shape,), tag=tag))
        else:  # through a complex input x + i y (a real output: the real part of the transform)
            fn = lambda x, y, op=op, kw=kw: _spectrum_loss(  # noqa: E731
                getattr(anp, op)(_z(x, y), **kw)
            )
            rows.append(Case(op, fn, (shape, shape), tag=tag))
    return rows


def _eig_matrix(rng: np.random.Generator) -> list[np.ndarray]:
    """Well-separated eigenvalues (a diagonal 1, 2, 3 plus a small perturbation)."""
    return [np.diag([1.0, 2.0, 3.5]) + rng.uniform(-0.2, 0.2, size=(3, 3))]


def _eig_rows() -> list[Case]:
    return [
        Case(
            "eigvals",
            lambda a: _spectrum_loss(anp.eigvals(a)),
            ((3, 3),),
            make=_eig_matrix,
            smooth=False,  # the rule reads the eigenvectors, which have no derivative
        ),
        Case(
            "eig",
            lambda a: anp.abs(anp.eig(a)[0]) * 2.0,
            ((3, 3),),
            make=_eig_matrix,
            smooth=False,
        ),
    ]


CASES: list[Case] = _rows()
