"""General eigendecomposition: ``eigvals`` and ``eig`` (``(w, v)``), complex results always
(as ``jax.numpy.linalg``; NumPy answers real arrays when every eigenvalue is real).

Eigenvalues are differentiable with JAX's rule: ``dw = diag(V^-1 dA V)`` forward, and its
transpose ``V^-T diag(g) V^T`` in reverse (a transpose, not an adjoint: README, "Complex
numbers"). Where eigenvalues repeat but ``V`` stays invertible (a diagonalisable matrix) the
rule answers ``diag(V^-1 dA V)`` for the ``V`` NumPy returns, as JAX does (the eigenvalues
are not differentiable there); at a defective matrix ``V`` is singular and the derivative is
not finite. Eigenvectors have no derivative here (their phase is arbitrary, and JAX does not
differentiate them either): a gradient that flows through ``v`` of ``eig`` is a 422 naming
the op, and so is a second derivative of the eigenvalues (their rule reads ``V``); forward
mode, which pushes a tangent through every output, gives ``v`` a nan tangent instead (so a
JVP of a function of ``w`` alone is exact, and one that uses ``v`` is not finite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import NotDifferentiableError
from engine.ops._linalg import _guard, _square
from engine.ops.kinds import def_custom
from engine.registry import Op, register, shape_of


def _complex(x: np.ndarray[Any, Any], like: np.ndarray[Any, Any]) -> Any:
    """``x`` as complex of ``like``'s precision (complex64 for float32 and complex64)."""
    single = like.dtype in (np.float32, np.complex64)
    return x.astype(np.complex64 if single else np.complex128)


def _eigvals(a: Any) -> Any:
    return _complex(np.linalg.eigvals(a), a)


def _eigvecs(a: Any) -> Any:
    return _complex(np.linalg.eig(a)[1], a)


def _values_shape(a: Any) -> tuple[int, ...]:
    return _square("eigvals", a)[:-1]


def _no_vector_derivative(*_: Any) -> Any:
    raise NotDifferentiableError(
        "eig: the eigenvectors have no derivative here (their phase is arbitrary; jax does not "
        "differentiate them either): differentiate functions of the eigenvalues only "
        "(eigvals), once",
        op="eig",
    )


def _nan_vector_tangent(tangents: list[Any], ans: Any, a: Any) -> Any:
    """Forward mode pushes every output's tangent, used or not: the eigenvectors' is nan (no
    derivative), so ``eig(a)[0]`` alone stays exact and a use of ``v`` is not finite."""
    t = tangents[0]
    if t is None:
        return None
    batch = shape_of(t)[: len(shape_of(t)) - len(shape_of(a))]
    return anp.full(batch + shape_of(ans), np.nan) * (1.0 + 0.0j)


VECTORS = def_custom(
    "_eig_vectors",
    _guard("eig", _eigvecs, "did not converge", lambda a: _square("eig", a)),
    "a",
    "Internal: the eigenvectors of eig (columns; no derivative).",
    lambda a: _square("eig", a),
    vjps=[_no_vector_derivative],
    jvp=_nan_vector_tangent,
)


def _values_vjp(g: Any, ans: Any, a: Any) -> Any:
    v = VECTORS(a)
    vt = anp.swapaxes(v, -1, -2)
    # V^-T diag(g) V^T, g with any leading batch axes
    return anp.matmul(anp.swapaxes(anp.inv(v), -1, -2), anp.expand_dims(g, -1) * vt)


def _values_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    t = tangents[0]
    if t is None:
        return None
    v = VECTORS(a)
    m = anp.matmul(anp.inv(v), t)  # V^-1 dA, then the diagonal of (V^-1 dA) V
    return anp.sum(m * anp.swapaxes(v, -1, -2), axis=-1)


VALUES = def_custom(
    "eigvals",
    _guard("eigvals", _eigvals, "did not converge", lambda a: _square("eigvals", a)),
    "a",
    "Eigenvalues of a general square matrix (complex); gradient as jax's.",
    _values_shape,
    vjps=[_values_vjp],
    jvp=_values_jvp,
)


@dataclass(eq=False)
class _TupleOp(Op):
    """An op with several outputs, each computed (and recorded) by its own op."""

    parts: tuple[Op, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return tuple(part(*args, **kwargs) for part in self.parts)


register(
    _TupleOp(
        name="eig",
        impl=lambda a: (_eigvals(a), _eigvecs(a)),
        params=VALUES.params,
        doc="Eigenvalues and right eigenvectors (w, v) of a general square matrix (complex); "
        "only w is differentiable.",
        shape_fn=lambda a: shape_of(a)[:-1],
        vjps=VALUES.vjps,
        jvp_rule=VALUES.jvp_rule,
        cost="decomposition",
        kind="custom",
        parts=(VALUES, VECTORS),
    )
)
