"""Differential: the decompositions and matrix functions of issue 15 against PyTorch's
autograd (float64, random well-conditioned inputs). JAX agrees on all of them (checked
while writing this; its eager linear algebra compiles per shape, minutes here, so the
suite runs torch).

For every case and seed: the value, a VJP, a JVP and a Hessian-vector product of a
random-weighted sum, engine against reference. Singular vectors and eigenvectors are
defined up to sign (a full factor's extra columns up to rotation), so the functions
compared are gauge-invariant (``v ** 2``, ``u * s @ vh``, projectors), as JAX's and HIPS
autograd's tests compare them. Inputs include stacks, broadcasting, non-contiguous views
(transposed and strided), several axes, and sizes 1; sizes 0 are checked against NumPy.
``FIGURES`` collects the number of comparisons and the largest error per op; the last
test prints them (``pytest -s``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from tests.differential.backends import torch_module

SEEDS = range(3)
TOL = 1e-8  # |engine - reference| / (1 + |reference|), every comparison
FIGURES: dict[str, list[float]] = {}  # op -> [comparisons, max error]

# these ops are compared here, not by the random program generator (test_differential.py)
COVERED = {
    "eigh",
    "eigvalsh",
    "svd",
    "qr",
    "pinv",
    "lstsq",
    "matrix_power",
    "expm",
    "kron",
    "cross",
    "norm",
}


@dataclass
class Case:
    op: str
    engine: Callable[..., Any]
    reference: Callable[..., Any]  # the same function in torch
    make: Callable[[np.random.Generator], list[np.ndarray]]
    tag: str

    @property
    def id(self) -> str:
        return f"{self.op}-{self.tag}"


# --- inputs ---------------------------------------------------------------------------------


def _spread(shape: tuple[int, ...], view: str = "") -> Callable[..., list[np.ndarray]]:
    """Matrices with singular values 1, 2, 3... (rotated, perturbed); ``view``: given as a
    transposed ("T") or strided ("strided") view, not a contiguous array."""

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        m, n = shape[-2:]
        out = np.empty(shape)
        for idx in np.ndindex(*shape[:-2]):
            u, _ = np.linalg.qr(rng.normal(size=(m, m)))
            v, _ = np.linalg.qr(rng.normal(size=(n, n)))
            s = np.zeros((m, n))
            s[range(min(m, n)), range(min(m, n))] = 1.0 + np.arange(min(m, n))
            out[idx] = u @ s @ v.T + 0.05 * rng.normal(size=(m, n))
        return [_as_view(out, view)]

    return make


def _as_view(a: np.ndarray, view: str) -> np.ndarray:
    if view == "T":  # same values, Fortran-ordered memory
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    if view == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],))
        wide[..., ::2] = a
        return wide[..., ::2]
    return a


def _sym(shape: tuple[int, ...], view: str = "") -> Callable[..., list[np.ndarray]]:
    base = _spread(shape)

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        a = base(rng)[0]
        return [_as_view(0.5 * (a + np.swapaxes(a, -1, -2)), view)]

    return make


def _uniform(*shapes: tuple[int, ...], shift: float = 0.0) -> Callable[..., list[np.ndarray]]:
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        out = [rng.uniform(-1, 1, size=s) for s in shapes]
        if shift:
            out = [x + shift * np.eye(s[-1]) for x, s in zip(out, shapes, strict=True)]
        return out

    return make


def _both(first: Callable[..., Any], second: Callable[..., Any]) -> Callable[..., Any]:
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        return first(rng) + second(rng)

    return make


# --- gauge-invariant functions ---------------------------------------------------------------

torch = torch_module()
tl = torch.linalg


def _mT(x: Any) -> Any:  # noqa: N802
    return x.swapaxes(-1, -2) if isinstance(x, torch.Tensor) else anp.swapaxes(x, -1, -2)


def eigh_engine(uplo: str) -> Callable[..., Any]:
    def f(a: Any) -> Any:
        w, v = anp.eigh(a, UPLO=uplo)
        return anp.matmul(v**2 * anp.expand_dims(w, -2), _mT(v**2)) + anp.expand_dims(w, -2)

    return f


def eigh_torch(uplo: str) -> Callable[..., Any]:
    def f(a: Any) -> Any:
        w, v = tl.eigh(a, UPLO=uplo)
        return (v**2 * w[..., None, :]) @ _mT(v**2) + w[..., None, :]

    return f


def svd_thin_engine(a: Any) -> Any:
    u, s, vh = anp.svd(a, full_matrices=False)
    s2 = anp.expand_dims(s, -2)
    return anp.matmul(u**2 * s2, vh**2) + anp.matmul(u * s2**2, vh)


def svd_thin_torch(a: Any) -> Any:
    u, s, vh = tl.svd(a, full_matrices=False)
    s2 = s[..., None, :]
    return (u**2 * s2) @ vh**2 + (u * s2**2) @ vh


def svd_full_engine(a: Any) -> Any:
    """The projector onto U's extra columns (full_matrices=True, NumPy's default)."""
    u, s, _ = anp.svd(a)
    k = s.shape[-1]
    rest = anp.matmul(u[..., :, k:], _mT(u[..., :, k:]))
    return rest * anp.expand_dims(anp.sum(s**2, axis=-1), (-2, -1))


def svd_full_torch(a: Any) -> Any:
    """The same function as I - U1 U1^T (torch ignores a full factor's extra columns)."""
    u, s, _ = tl.svd(a, full_matrices=False)
    rest = torch.eye(a.shape[-2], dtype=a.dtype) - u @ _mT(u)
    return rest * torch.sum(s**2, dim=-1)[..., None, None]


def qr_engine(a: Any) -> Any:
    q, r = anp.qr(a)
    return anp.matmul(q, r**2)


def qr_torch(a: Any) -> Any:
    q, r = tl.qr(a)
    return q @ r**2


def qr_complete_engine(a: Any) -> Any:
    q, r = anp.qr(a, mode="complete")
    n = a.shape[-1]
    rest = anp.matmul(q[..., :, n:], _mT(q[..., :, n:]))
    return rest + anp.expand_dims(anp.sum(r**2, axis=(-2, -1)), (-2, -1))


def qr_complete_torch(a: Any) -> Any:
    q, r = tl.qr(a)
    rest = torch.eye(a.shape[-2], dtype=a.dtype) - q @ _mT(q)
    return rest + torch.sum(r**2, dim=(-2, -1))[..., None, None]


def lstsq_engine(a: Any, b: Any) -> Any:
    x, _, _, s = anp.lstsq(a, b)
    return x * anp.sum(s)


def lstsq_torch(a: Any, b: Any) -> Any:
    """pinv(a) @ b at full rank (torch's lstsq gives no singular values' gradient)."""
    return (tl.pinv(a) @ b) * torch.sum(tl.svdvals(a))


def cross_torch(axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: Any = None) -> Any:
    if axis is not None:
        axisa = axisb = axisc = axis

    def f(a: Any, b: Any) -> Any:
        a, b = torch.movedim(a, axisa, -1), torch.movedim(b, axisb, -1)
        nd = max(a.ndim, b.ndim)  # torch's cross wants as many axes in both
        a, b = a.reshape((1,) * (nd - a.ndim) + a.shape), b.reshape((1,) * (nd - b.ndim) + b.shape)
        c = tl.cross(a, b)
        return torch.movedim(c, -1, axisc)

    return f


def norm_torch(ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    return lambda a: tl.norm(a, ord=ord, dim=axis, keepdim=keepdims)


def _tagged(shape: tuple[int, ...], view: str = "") -> str:
    return "x".join(map(str, shape)) + view


def _decomposition_cases() -> list[Case]:
    cases: list[Case] = []
    for shape, view in [((3, 3), ""), ((2, 4, 4), "T"), ((1, 1), ""), ((3, 2, 3, 3), "strided")]:
        tag = _tagged(shape, view)
        cases.append(Case("eigh", eigh_engine("L"), eigh_torch("L"), _sym(shape, view), tag))
        cases.append(
            Case(
                "eigvalsh",
                lambda a: anp.eigvalsh(a, "U"),
                lambda a: tl.eigvalsh(a, UPLO="U"),
                _sym(shape, view),
                tag,
            )
        )
    cases.append(Case("eigh", eigh_engine("U"), eigh_torch("U"), _sym((4, 4)), "upper"))
    for shape, view in [((4, 3), ""), ((3, 5), "T"), ((3, 3), ""), ((2, 5, 2), "strided")]:
        tag = _tagged(shape, view)
        make = _spread(shape, view)
        cases.append(Case("svd", svd_thin_engine, svd_thin_torch, make, tag))
        s_engine = lambda a: anp.svd(a, compute_uv=False)  # noqa: E731
        cases.append(Case("svd", s_engine, tl.svdvals, make, f"s-{tag}"))
    for shape in [(5, 3), (2, 4, 2), (1, 3, 1)]:
        make = _spread(shape)
        cases.append(Case("svd", svd_full_engine, svd_full_torch, make, f"full-{_tagged(shape)}"))
    for shape, view in [
        ((4, 3), ""),
        ((3, 3), "T"),
        ((2, 5, 2), "strided"),
        ((1, 1), ""),
        ((3, 5), ""),
        ((2, 2, 4), "T"),
    ]:
        tag = _tagged(shape, view)
        make = _spread(shape, view)
        cases.append(Case("qr", qr_engine, qr_torch, make, tag))
        r_engine = lambda a: anp.qr(a, mode="r") ** 2  # noqa: E731
        cases.append(Case("qr", r_engine, lambda a: tl.qr(a)[1] ** 2, make, f"r-{tag}"))
    for shape in [(5, 3), (2, 4, 1)]:
        make = _spread(shape)
        tag = f"complete-{_tagged(shape)}"
        cases.append(Case("qr", qr_complete_engine, qr_complete_torch, make, tag))
    for shape, view in [((4, 3), ""), ((3, 5), "T"), ((3, 3), ""), ((2, 4, 2), "strided")]:
        cases.append(Case("pinv", anp.pinv, tl.pinv, _spread(shape, view), _tagged(shape, view)))
    for a_shape, b_shape in [((5, 3), (5,)), ((5, 3), (5, 2)), ((3, 5), (3, 2)), ((4, 4), (4,))]:
        make = _both(_spread(a_shape), _uniform(b_shape))
        tag = f"{_tagged(a_shape)}-{_tagged(b_shape)}"
        cases.append(Case("lstsq", lstsq_engine, lstsq_torch, make, tag))
    return cases


def _function_cases() -> list[Case]:
    cases: list[Case] = []
    for n in [0, 1, 2, 5, 12, -1, -4]:
        cases.append(
            Case(
                "matrix_power",
                lambda a, n=n: anp.matrix_power(a, n),
                lambda a, n=n: tl.matrix_power(a, n) + 0.0 * a,  # n = 0: still a function of a
                _uniform((2, 3, 3), shift=2.0) if n < 0 else _uniform((3, 3)),
                f"n{n}",
            )
        )
    for shape in [(3, 3), (2, 4, 4), (1, 1)]:
        for scale in [0.5, 4.0]:  # 4.0: SciPy scales and squares
            cases.append(
                Case(
                    "expm",
                    lambda a, c=scale: anp.expm(c * a),
                    lambda a, c=scale: tl.matrix_exp(c * a),
                    _uniform(shape),
                    f"{_tagged(shape)}-scale{scale}",
                )
            )
    for sa, sb in [((2, 3), (3, 2)), ((3,), (2, 2)), ((2, 1, 2), (2, 3)), ((1,), (1, 1))]:
        tag = f"{_tagged(sa)}-{_tagged(sb)}"
        cases.append(Case("kron", anp.kron, torch.kron, _uniform(sa, sb), tag))
    for sa, sb, kw in [
        ((3,), (3,), {}),
        ((4, 3), (3,), {}),
        ((2, 1, 3), (4, 3), {}),
        ((3, 4), (2, 4, 3), {"axisa": 0}),
        ((3, 4), (4, 3), {"axisa": 0, "axisc": 0}),
        ((5, 3), (5, 3), {"axis": 1}),
    ]:
        cases.append(
            Case(
                "cross",
                lambda a, b, kw=kw: anp.cross(a, b, **kw),
                cross_torch(**kw),
                _uniform(sa, sb),
                f"{_tagged(sa)}-{_tagged(sb)}-{'-'.join(f'{k}{v}' for k, v in kw.items())}",
            )
        )
    for kw, shape in [
        ({"ord": 2}, (3, 4)),
        ({"ord": -2}, (4, 3)),
        ({"ord": "nuc"}, (3, 3)),
        ({"ord": "fro"}, (3, 4)),
        ({"ord": 1}, (3, 4)),
        ({"ord": -np.inf}, (3, 4)),
        ({"ord": 2, "axis": (0, 2)}, (3, 2, 4)),
        ({"ord": "nuc", "axis": (2, 0), "keepdims": True}, (3, 2, 4)),
        ({"ord": 3.5}, (5,)),
        ({"ord": -1.5, "axis": 1}, (3, 4)),
        ({"ord": 2, "axis": 0}, (3, 4)),
    ]:
        make = _spread(shape) if len(shape) > 1 else _uniform(shape)
        tag = f"{'-'.join(f'{k}{v}' for k, v in kw.items())}-{_tagged(shape)}"
        engine_norm = lambda a, kw=kw: anp.norm(a, **kw)  # noqa: E731
        cases.append(Case("norm", engine_norm, norm_torch(**kw), make, tag))
    return cases


CASES = _decomposition_cases() + _function_cases()


# --- the comparison ---------------------------------------------------------------------------


def _reference(case: Case, xs: list[np.ndarray], u: np.ndarray, vs: list[np.ndarray]) -> Any:
    """value, VJP, JVP and HVP of sum(f * u), by torch.autograd: the JVP is the derivative
    of a VJP in its (linear) cotangent, the HVP reverse over reverse."""
    tx = [torch.tensor(np.ascontiguousarray(x), requires_grad=True) for x in xs]
    tu, tv = torch.tensor(u), [torch.tensor(v) for v in vs]
    value = case.reference(*tx)
    probe = torch.zeros_like(value, requires_grad=True)
    vjps = torch.autograd.grad(value, tx, probe, create_graph=True, allow_unused=True)
    directional = sum(torch.sum(g * v) for g, v in zip(vjps, tv, strict=True) if g is not None)
    (tangent,) = torch.autograd.grad(directional, probe, allow_unused=True)
    cts = torch.autograd.grad(value, tx, tu, create_graph=True, allow_unused=True)
    along = sum(torch.sum(g * v) for g, v in zip(cts, tv, strict=True) if g is not None)
    if not isinstance(along, torch.Tensor) or not along.requires_grad:
        hvs = [torch.zeros_like(t) for t in tx]
    else:
        hvs = torch.autograd.grad(along, tx, allow_unused=True)
    out = [value, *cts, tangent, *hvs]
    zeros = [np.zeros(np.shape(value))] + [np.zeros(x.shape) for x in xs]
    shapes = [zeros[0], *zeros[1:], zeros[0], *zeros[1:]]
    return [np.zeros_like(z) if t is None else _numpy(t) for t, z in zip(out, shapes, strict=True)]


def _numpy(t: Any) -> np.ndarray:
    """A tensor's values (a ZeroTensor, torch's symbolic zero, made an array)."""
    return np.array(t.detach().numpy(force=True))


def _engine(case: Case, xs: list[np.ndarray], u: np.ndarray, vs: list[np.ndarray]) -> Any:
    value, pull = ad.vjp(case.engine, *xs)
    cts = pull(u)
    _, tangent = ad.jvp(case.engine, xs, vs)
    _, _, hv = ad.hvp_and_grad(lambda *a: anp.sum(case.engine(*a) * u), xs, vs)
    return [value, *cts, tangent, *hv]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_the_reference(case: Case, seed: int) -> None:
    rng = np.random.default_rng([seed, len(case.id), sum(map(ord, case.id))])
    xs = case.make(rng)
    out = np.asarray(case.engine(*xs))
    u = rng.normal(size=out.shape)
    vs = [rng.normal(size=x.shape) for x in xs]
    mine, ref = _engine(case, xs, u, vs), _reference(case, xs, u, vs)
    worst = 0.0
    for a, b in zip(mine, ref, strict=True):
        assert np.shape(a) == np.shape(b)
        scale = 1.0 + float(np.max(np.abs(b), initial=0.0))
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - b), initial=0.0)) / scale)
    figures = FIGURES.setdefault(case.op, [0, 0.0])
    figures[0] += 1
    figures[1] = max(figures[1], worst)
    assert worst < TOL, f"{case.id}: error {worst:.2e}"


# --- sizes 0 ----------------------------------------------------------------------------------


EMPTY = [
    ("eigvalsh", lambda a: anp.eigvalsh(a), np.linalg.eigvalsh, (0, 0)),
    ("eigh", lambda a: anp.eigh(a)[0], lambda a: np.linalg.eigh(a)[0], (2, 0, 0)),
    (
        "svd",
        lambda a: anp.svd(a, compute_uv=False),
        lambda a: np.linalg.svd(a, compute_uv=False),
        (0, 3),
    ),
    ("svd", lambda a: anp.svd(a)[2], lambda a: np.linalg.svd(a)[2], (0, 3)),
    ("qr", lambda a: anp.qr(a)[1], lambda a: np.linalg.qr(a)[1], (3, 0)),
    ("pinv", anp.pinv, np.linalg.pinv, (0, 3)),
    (
        "matrix_power",
        lambda a: anp.matrix_power(a, 3),
        lambda a: np.linalg.matrix_power(a, 3),
        (0, 0),
    ),
    ("expm", anp.expm, lambda a: np.zeros((0, 0)), (0, 0)),
    ("kron", lambda a: anp.kron(a, a), lambda a: np.kron(a, a), (0, 2)),
    ("cross", lambda a: anp.cross(a, a), lambda a: np.cross(a, a), (0, 3)),
]


@pytest.mark.parametrize("row", EMPTY, ids=lambda r: r[0])
def test_size_zero_follows_numpy(row: Any) -> None:
    _, fn, reference, shape = row
    a = np.zeros(shape)
    np.testing.assert_array_equal(fn(a), reference(a))
    value, pull = ad.vjp(fn, a)
    (ct,) = pull(np.zeros(np.shape(value)))
    assert ct.shape == a.shape


def test_figures() -> None:
    """The figures of this run (``pytest -s`` shows them)."""
    total = sum(int(n) for n, _ in FIGURES.values())
    for op, (n, worst) in sorted(FIGURES.items()):
        print(f"{op:14s} {int(n):4d} comparisons, max error {worst:.1e}")
    print(f"{total} comparisons over {len(FIGURES)} ops")
    assert total == 0 or all(worst < TOL for _, worst in FIGURES.values())
