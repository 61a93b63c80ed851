"""Test rows for the decompositions and matrix functions of issue 15 (consumed by
``test_ops.py``): eigh, eigvalsh, svd, qr, pinv, lstsq, matrix_power, expm, kron, cross.

Inputs are well conditioned with well separated eigenvalues and singular values (so the
vectors are differentiable and finite differences accurate). Eigenvectors and singular
vectors are defined up to sign (and, for a full factor's extra columns, up to rotation),
so the rows differentiate gauge-invariant functions of them: ``v ** 2``, reconstructions
``u * s @ vh``, projectors ``q q^T``, as HIPS autograd's and JAX's tests do. ``eigh`` rows
symmetrise their input: the op reads one triangle, its gradient is the symmetric one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case


def _mT(x: Any) -> Any:  # noqa: N802 (NumPy's name)
    return anp.swapaxes(x, -1, -2)


def _sym(a: Any) -> Any:
    return 0.5 * (a + _mT(a))


def _spread_spectrum(*shape: int) -> Any:
    """A maker of matrices with well separated singular values (and, when square and
    symmetrised, eigenvalues): a rotation of diag(1, 2, 3, ...) plus a small perturbation."""

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        m, n = shape[-2:]
        k = min(m, n)
        out = np.empty(shape)
        for idx in np.ndindex(*shape[:-2]):
            u, _ = np.linalg.qr(rng.normal(size=(m, m)))
            v, _ = np.linalg.qr(rng.normal(size=(n, n)))
            s = np.zeros((m, n))
            s[range(k), range(k)] = 1.0 + np.arange(k)
            out[idx] = u @ s @ v.T + 0.05 * rng.normal(size=(m, n))
        return [out]

    return make


def _symmetric(*shape: int) -> Any:
    base = _spread_spectrum(*shape)

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        a = base(rng)[0]
        return [0.5 * (a + np.swapaxes(a, -1, -2))]

    return make


def _near_identity(*shape: int, scale: float = 0.4) -> Any:
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.uniform(-scale, scale, size=shape) + np.eye(*shape[-2:])]

    return make


def _eigh_rows() -> list[Case]:
    rows = []
    for shape in [(3, 3), (2, 3, 3), (1, 1)]:
        make = _symmetric(*shape)
        rows.append(Case("eigvalsh", lambda a: anp.eigvalsh(_sym(a)), (shape,), make=make))
        rows.append(
            Case("eigh", lambda a: anp.eigh(_sym(a))[0], (shape,), make=make, tag=f"w{shape}")
        )
        rows.append(
            Case("eigh", lambda a: anp.eigh(_sym(a))[1] ** 2, (shape,), make=make, tag=f"v2{shape}")
        )
    rows += [
        Case(
            "eigvalsh",
            lambda a: anp.eigvalsh(_sym(a), UPLO="U"),
            ((4, 4),),
            make=_symmetric(4, 4),
            tag="upper",
        ),
        Case(
            "eigh",
            lambda a: _projector(anp.eigh(_sym(a), "U")[1][..., :, :2]),
            ((4, 4),),
            make=_symmetric(4, 4),
            tag="projector-upper",
        ),
        Case(
            "eigh",
            lambda a: _eigh_reconstruct(*anp.eigh(_sym(a))),
            ((3, 3),),
            make=_symmetric(3, 3),
            tag="v-diag-w-vt",
        ),
    ]
    return rows


def _projector(q: Any) -> Any:
    return anp.matmul(q, _mT(q))


def _eigh_reconstruct(w: Any, v: Any) -> Any:
    return anp.matmul(v * anp.expand_dims(w, -2), _mT(v)) * anp.sin(w[..., :1, None])


def _svd_rows() -> list[Case]:
    rows = []
    for shape in [(4, 3), (3, 4), (3, 3), (2, 4, 3), (1, 3)]:
        make = _spread_spectrum(*shape)
        tag = "x".join(map(str, shape))
        rows += [
            Case("svd", lambda a: anp.svd(a, compute_uv=False), (shape,), make=make, tag=f"s{tag}"),
            Case("svd", _svd_parts_squared, (shape,), make=make, tag=f"uv2-{tag}"),
            Case("svd", _svd_weighted, (shape,), make=make, tag=f"u-s2-vh-{tag}"),
        ]
    for shape in [(4, 2), (2, 4), (2, 4, 3)]:
        rows.append(
            Case(
                "svd",
                _svd_full_projectors,
                (shape,),
                make=_spread_spectrum(*shape),
                tag=f"full-projectors-{'x'.join(map(str, shape))}",
            )
        )
    return rows


def _svd_parts_squared(a: Any) -> Any:
    u, s, vh = anp.svd(a, full_matrices=False)
    return anp.matmul(u**2 * anp.expand_dims(s, -2), vh**2)


def _svd_weighted(a: Any) -> Any:
    u, s, vh = anp.svd(a, full_matrices=False)
    return anp.matmul(u * anp.expand_dims(s**2, -2), vh)


def _svd_full_projectors(a: Any) -> Any:
    """Row sums of the projectors onto the extra columns of U and rows of V^T (unique,
    unlike the vectors), and of U S V^T."""
    u, s, vh = anp.svd(a)  # full_matrices=True: NumPy's default
    k = s.shape[-1]
    left, right = u[..., :, k:], vh[..., k:, :]
    thin = anp.matmul(u[..., :, :k] * anp.expand_dims(s, -2), vh[..., :k, :])
    right_sum = anp.sum(anp.matmul(_mT(right), right) * vh[..., :1, :], axis=(-2, -1))
    return (
        2.0 * anp.sum(_projector(left) * u[..., :1], axis=-1)
        + anp.sum(thin, axis=-1)
        + anp.expand_dims(right_sum, -1)
    )


def _qr_rows() -> list[Case]:
    rows = []
    for shape in [(4, 3), (3, 3), (3, 4), (2, 4, 3), (2, 2, 3)]:
        make = _near_identity(*shape) if shape[-1] <= shape[-2] else _spread_spectrum(*shape)
        tag = "x".join(map(str, shape))
        rows += [
            Case("qr", lambda a: anp.qr(a)[0], (shape,), make=make, tag=f"q{tag}"),
            Case("qr", lambda a: anp.qr(a)[1], (shape,), make=make, tag=f"r{tag}"),
            Case("qr", lambda a: anp.qr(a, mode="r"), (shape,), make=make, tag=f"mode-r{tag}"),
        ]
    for shape in [(4, 2), (2, 4, 3)]:
        rows.append(
            Case(
                "qr",
                _qr_complete,
                (shape,),
                make=_near_identity(*shape),
                tag=f"complete-{'x'.join(map(str, shape))}",
            )
        )
    return rows


def _qr_complete(a: Any) -> Any:
    """The projector onto the extra columns of the complete Q, and R."""
    q, r = anp.qr(a, mode="complete")
    n = a.shape[-1]
    r_sum = anp.sum(r * r, axis=(-2, -1))
    return anp.sum(_projector(q[..., :, n:]) * q[..., :1], axis=-1) + anp.expand_dims(r_sum, -1)


def _pinv_lstsq_rows() -> list[Case]:
    rows = []
    for shape in [(4, 3), (3, 4), (3, 3), (2, 4, 3)]:
        rows.append(Case("pinv", anp.pinv, (shape,), make=_spread_spectrum(*shape)))
    rows.append(
        Case(
            "pinv",
            lambda a: anp.pinv(a, rcond=1e-10, hermitian=False),
            ((3, 2),),
            make=_spread_spectrum(3, 2),
            tag="rcond",
        )
    )

    def lstsq_make(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> Any:
        def make(rng: np.random.Generator) -> list[np.ndarray]:
            return [_spread_spectrum(*a_shape)(rng)[0], rng.uniform(-2, 2, size=b_shape)]

        return make

    for a_shape, b_shape in [((5, 3), (5,)), ((5, 3), (5, 2)), ((3, 5), (3,)), ((3, 3), (3, 2))]:
        tag = f"{'x'.join(map(str, a_shape))}-{'x'.join(map(str, b_shape))}"
        make = lstsq_make(a_shape, b_shape)
        rows.append(
            Case("lstsq", lambda a, b: anp.lstsq(a, b)[0], (a_shape, b_shape), make=make, tag=tag)
        )
        rows.append(
            Case(
                "lstsq",
                lambda a, b: anp.lstsq(a, b, rcond=None)[3] + anp.sum(anp.lstsq(a, b)[1]),
                (a_shape, b_shape),
                make=make,
                tag=f"s-res-{tag}",
            )
        )
    return rows


def _power_rows() -> list[Case]:
    rows = []
    for n in [0, 1, 2, 3, 6, 13]:
        rows.append(
            Case(
                "matrix_power",
                lambda a, n=n: anp.matrix_power(a, n),
                ((3, 3),),
                make=_near_identity(3, 3, scale=0.3),
                tag=f"n{n}",
            )
        )
    for n in [-1, -3]:
        rows.append(
            Case(
                "matrix_power",
                lambda a, n=n: anp.matrix_power(a, n),
                ((2, 3, 3),),
                make=_near_identity(2, 3, 3, scale=0.3),
                tag=f"stack-n{n}",
            )
        )
    return rows


def _expm_rows() -> list[Case]:
    return [
        Case("expm", anp.expm, ((3, 3),), tag="small"),
        Case("expm", lambda a: anp.expm(3.0 * a), ((3, 3),), tag="scaled"),  # squarings
        Case("expm", anp.expm, ((2, 2, 2),)),
        Case("expm", anp.expm, ((1, 1),)),
        Case("expm", lambda a: anp.expm(a - _mT(a)), ((3, 3),), tag="rotation"),
    ]


def _kron_cross_rows() -> list[Case]:
    rows = [
        Case("kron", anp.kron, shapes)
        for shapes in [
            ((2, 3), (3, 2)),
            ((3,), (2,)),
            ((3,), (2, 2)),
            ((2, 2), (3,)),
            ((), (3,)),
            ((2, 1, 2), (2, 3)),
        ]
    ]
    rows.append(Case("kron", lambda a: anp.kron(a, a), ((2, 2),), tag="square-of-a"))
    for shapes, kw in [
        (((3,), (3,)), {}),
        (((4, 3), (3,)), {}),
        (((2,), (2,)), {}),
        (((4, 2), (3,)), {}),
        (((3, 4), (2, 4)), {"axisa": 0, "axisb": 0}),
        (((3, 4), (4, 3)), {"axisa": 0, "axisc": 0}),
        (((2, 3), (2, 3)), {"axis": 1}),
        (((2, 3, 4), (3, 1)), {"axisa": 1, "axisb": 0, "axisc": 0}),
    ]:
        tag = "-".join(f"{k}{v}" for k, v in kw.items()) or "default"
        rows.append(
            Case(
                "cross",
                lambda a, b, kw=kw: anp.cross(a, b, **kw),
                shapes,
                tag=f"{tag}-{'x'.join(map(str, shapes[0]))}-{'x'.join(map(str, shapes[1]))}",
            )
        )
    rows.append(Case("cross", lambda a: anp.cross(a, a * a), ((2, 3),), tag="self"))
    return rows


CASES: list[Case] = (
    _eigh_rows()
    + _svd_rows()
    + _qr_rows()
    + _pinv_lstsq_rows()
    + _power_rows()
    + _expm_rows()
    + _kron_cross_rows()
)
