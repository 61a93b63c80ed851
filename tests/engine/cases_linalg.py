"""Test rows for the linear-algebra family (consumed by ``test_ops.py``).

Matrix functions get well-conditioned inputs (diagonally dominant, or SPD
for ``cholesky``) so finite differences stay accurate in float64 and the
float32 run stays close to float64. ``cholesky`` rows symmetrise their input
first: the op reads one triangle, its gradient is the symmetric one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case


def _conditioned(*shape: int) -> Any:
    """A maker of matrices near 2I: well conditioned, positive determinant."""

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        n = shape[-1]
        return [rng.uniform(-0.4, 0.4, size=shape) + 2.0 * np.eye(n)]

    return make


def _mixed_sign(rng: np.random.Generator) -> list[np.ndarray]:
    """A batch of two well-conditioned matrices, one with a negative determinant."""
    a = rng.uniform(-0.4, 0.4, size=(2, 3, 3)) + 2.0 * np.eye(3)
    a[1, 0] *= -1.0
    return [a]


def _spd(*shape: int) -> Any:
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        x = rng.uniform(-1.0, 1.0, size=shape)
        return [x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])]

    return make


def _solve_make(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> Any:
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        return [_conditioned(*a_shape)(rng)[0], rng.uniform(-2.0, 2.0, size=b_shape)]

    return make


def _sym(a: Any) -> Any:
    return 0.5 * (a + anp.swapaxes(a, -1, -2))


def _gram(x: Any) -> Any:
    n = x.shape[-1]
    return anp.matmul(x, anp.swapaxes(x, -1, -2)) + n * np.eye(n, dtype=x.dtype)


def _products() -> list[Case]:
    rows = []
    for shapes in [
        ((3, 4), (4, 2)),
        ((4,), (4, 2)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (4, 2)),
        ((3, 4), (2, 4, 2)),
        ((4,), (2, 4, 2)),
        ((2, 3, 4), (4,)),
        ((2, 1, 2, 3), (3, 3, 2)),
    ]:
        rows.append(Case("matmul", anp.matmul, shapes))
    rows.append(Case("matmul", lambda x, y: x @ y, ((2, 3), (3, 2)), tag="operator"))
    for shapes in [
        ((3, 4), (4, 2)),
        ((4,), (4,)),
        ((), (3,)),
        ((2, 3), ()),
        ((2, 3), (3,)),
        ((3,), (2, 3, 2)),
        ((2, 3, 4), (4, 2)),
        ((2, 3, 4), (2, 4, 3)),
    ]:
        rows.append(Case("dot", anp.dot, shapes))
    rows += [
        Case("outer", anp.outer, ((3,), (2,))),
        Case("outer", anp.outer, ((2, 2), (3,))),
        Case("inner", anp.inner, ((3,), (3,))),
        Case("inner", anp.inner, ((2, 3), (4, 3))),
        Case("inner", anp.inner, ((), (2, 3))),
        Case("tensordot", anp.tensordot, ((2, 3, 4), (3, 4, 2)), tag="axes2"),
        Case("tensordot", lambda a, b: anp.tensordot(a, b, 1), ((2, 3), (3, 2)), tag="axes1"),
        Case("tensordot", lambda a, b: anp.tensordot(a, b, 0), ((2,), (3,)), tag="axes0"),
        Case(
            "tensordot",
            lambda a, b: anp.tensordot(a, b, axes=([1, 0], [0, 2])),
            ((3, 4, 2), (4, 2, 3)),
            tag="pairs",
        ),
    ]
    return rows


EINSUMS = [
    ("ij,jk->ik", ((2, 3), (3, 4))),
    ("ij,jk", ((2, 3), (3, 2))),
    ("ii->i", ((3, 3),)),
    ("ii", ((3, 3),)),
    ("iij->j", ((3, 3, 2),)),
    ("ij->ji", ((2, 3),)),
    ("ij->", ((2, 3),)),
    ("i,i", ((4,), (4,))),
    ("i,j->ij", ((2,), (3,))),
    ("ij,ij->i", ((3, 1), (3, 4))),
    ("bij,bjk->bik", ((2, 2, 3), (2, 3, 2))),
    ("...ij,...jk->...ik", ((2, 1, 2, 3), (3, 3, 2))),
    ("i...->...", ((3, 2),)),
    ("ij,jk,kl->il", ((2, 3), (3, 2), (2, 2))),
]


def _einsums() -> list[Case]:
    rows = []
    for subscripts, shapes in EINSUMS:
        rows.append(
            Case(
                "einsum",
                lambda *xs, s=subscripts: anp.einsum(s, *xs),
                shapes,
                tag=subscripts.replace("->", "-to-").replace("...", "E"),
            )
        )
    return rows


def _trace_diag() -> list[Case]:
    return [
        Case("trace", anp.trace, ((3, 3),)),
        Case("trace", lambda a: anp.trace(a, 1), ((3, 4),), tag="offset1"),
        Case("trace", lambda a: anp.trace(a, -1, axis1=2, axis2=0), ((3, 2, 4),), tag="axes"),
        Case("diag", anp.diag, ((3,),)),
        Case("diag", lambda v: anp.diag(v, k=1), ((3,),), tag="v-k1"),
        Case("diag", anp.diag, ((3, 4),)),
        Case("diag", lambda a: anp.diag(a, -1), ((3, 4),), tag="m-k-1"),
        Case("diag", lambda a: anp.diag(a, 2), ((3, 4),), tag="m-k2"),
        Case("tril", anp.tril, ((3, 4),)),
        Case("tril", lambda a: anp.tril(a, k=1), ((2, 3, 3),), tag="batch-k1"),
        Case("tril", lambda a: anp.tril(a, -1) * a, ((4, 3),), tag="k-1-squared"),
        Case("triu", anp.triu, ((3, 4),)),
        Case("triu", lambda a: anp.triu(a, 2), ((3, 4),), tag="k2"),
        Case("triu", lambda a: anp.sin(anp.triu(a, k=-1)), ((2, 3, 3),), tag="batch-sin"),
    ]


def _matrix_functions() -> list[Case]:
    logabs = lambda a: anp.slogdet(a)[1]  # noqa: E731
    return [
        Case("inv", anp.inv, ((3, 3),), make=_conditioned(3, 3)),
        Case("inv", anp.inv, ((2, 3, 3),), make=_conditioned(2, 3, 3)),
        Case("det", anp.det, ((3, 3),), make=_conditioned(3, 3)),
        Case("det", anp.det, ((2, 3, 3),), make=_mixed_sign, tag="stack-signs"),
        Case("det", anp.det, ((2, 2),), tag="random"),
        Case("slogdet", logabs, ((3, 3),), make=_conditioned(3, 3)),
        Case("slogdet", logabs, ((2, 3, 3),), make=_mixed_sign, tag="stack-signs"),
        Case(
            "slogdet",
            lambda a: anp.slogdet(a)[0] * anp.slogdet(a)[1],
            ((2, 3, 3),),
            make=_mixed_sign,
            tag="sign-times-logabs",
        ),
        Case(
            "slogdet",
            lambda a: anp.slogdet(a)[0],
            ((2, 3, 3),),
            diff=False,
            make=_mixed_sign,
            reference=lambda a: np.linalg.slogdet(a)[0],
            tag="sign",
        ),
        Case("solve", anp.solve, ((3, 3), (3,)), make=_solve_make((3, 3), (3,))),
        Case("solve", anp.solve, ((3, 3), (3, 2)), make=_solve_make((3, 3), (3, 2))),
        Case("solve", anp.solve, ((2, 3, 3), (3,)), make=_solve_make((2, 3, 3), (3,))),
        Case("solve", anp.solve, ((3, 3), (2, 3, 2)), make=_solve_make((3, 3), (2, 3, 2))),
        Case("cholesky", lambda a: anp.cholesky(_sym(a)), ((3, 3),), make=_spd(3, 3), tag="sym"),
        Case("cholesky", lambda a: anp.cholesky(_sym(a)), ((2, 3, 3),), make=_spd(2, 3, 3)),
        Case("cholesky", lambda x: anp.cholesky(_gram(x)), ((3, 3),), tag="gram"),
    ]


CASES: list[Case] = _products() + _einsums() + _trace_diag() + _matrix_functions()
