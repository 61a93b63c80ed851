"""Differential: the decompositions and matrix functions of issue 15 against JAX (and
torch.func where JAX has no rule), float64, random well-conditioned inputs.

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
from tests.differential.backends import jax_modules, torch_module

jax, jnp = jax_modules()
import jax.scipy.linalg as jsl  # noqa: E402  (after x64 is switched on)

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
    reference: Callable[..., Any]  # the same function in JAX (or torch, ``library``)
    make: Callable[[np.random.Generator], list[np.ndarray]]
    tag: str
    library: str = "jax"

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


# --- gauge-invariant functions, written once for both libraries -------------------------------


def _mT(np_: Any, x: Any) -> Any:  # noqa: N802
    return np_.swapaxes(x, -1, -2)


def eigh_fn(np_: Any, uplo: str = "L") -> Callable[..., Any]:
    def f(a: Any) -> Any:
        if np_ is jnp:
            w, v = jnp.linalg.eigh(a, UPLO=uplo)  # symmetrised: the symmetric gradient
        else:
            w, v = np_.eigh(a, UPLO=uplo)
        return np_.matmul(v**2 * w[..., None, :], _mT(np_, v)) + w[..., None, :]

    return f


def svd_thin_fn(np_: Any) -> Callable[..., Any]:
    def f(a: Any) -> Any:
        svd = jnp.linalg.svd if np_ is jnp else np_.svd
        u, s, vh = svd(a, full_matrices=False)
        return np_.matmul(u**2 * s[..., None, :], vh**2) + np_.matmul(u * s[..., None, :] ** 2, vh)

    return f


def svd_full_fn(np_: Any) -> Callable[..., Any]:
    """The projector onto U's extra columns (JAX has no rule for full_matrices with a
    non-square matrix: its reference is I - U1 U1^T, the same function)."""

    def f(a: Any) -> Any:
        m, n = a.shape[-2:]
        k = min(m, n)
        if np_ is jnp:
            u, s, _ = jnp.linalg.svd(a, full_matrices=False)
            rest = jnp.eye(m) - jnp.matmul(u, _mT(jnp, u))
        else:
            u, s, _ = np_.svd(a)
            rest = np_.matmul(u[..., :, k:], _mT(np_, u[..., :, k:]))
        return rest * np_.sum(s**2, axis=-1)[..., None, None]

    return f


def qr_fn(np_: Any, mode: str) -> Callable[..., Any]:
    def f(a: Any) -> Any:
        n = a.shape[-1]
        if mode == "complete" and np_ is jnp:  # JAX: reduced, and I - Q1 Q1^T
            q, r = jnp.linalg.qr(a)
            rest = jnp.eye(a.shape[-2]) - jnp.matmul(q, _mT(jnp, q))
            return rest + jnp.sum(r**2, axis=(-2, -1))[..., None, None]
        if mode == "complete":
            q, r = np_.qr(a, mode="complete")
            rest = np_.matmul(q[..., :, n:], _mT(np_, q[..., :, n:]))
            return rest + np_.sum(r**2, axis=(-2, -1))[..., None, None]
        if np_ is torch_module():
            q, r = np_.linalg.qr(a)
        else:
            q, r = (jnp.linalg.qr if np_ is jnp else np_.qr)(a)
        return np_.matmul(q, r**2)

    return f


def lstsq_fn(np_: Any) -> Callable[..., Any]:
    def f(a: Any, b: Any) -> Any:
        lstsq = jnp.linalg.lstsq if np_ is jnp else np_.lstsq
        x, _, _, s = lstsq(a, b)
        return x * np_.sum(s)

    return f


def norm_fn(np_: Any, **kw: Any) -> Callable[..., Any]:
    def f(a: Any) -> Any:
        norm = jnp.linalg.norm if np_ is jnp else np_.norm
        return norm(a, **kw)

    return f


def _cases() -> list[Case]:
    A = anp  # noqa: N806  (the engine's NumPy)
    J = jnp  # noqa: N806
    cases: list[Case] = []
    for shape, view in [((3, 3), ""), ((2, 4, 4), "T"), ((1, 1), ""), ((3, 2, 3, 3), "strided")]:
        tag = f"{'x'.join(map(str, shape))}{view}"
        cases.append(Case("eigh", eigh_fn(A), eigh_fn(J), _sym(shape, view), tag))
        cases.append(
            Case(
                "eigvalsh",
                lambda a: anp.eigvalsh(a, "U"),
                lambda a: jnp.linalg.eigvalsh(a, UPLO="U"),
                _sym(shape, view),
                tag,
            )
        )
    cases.append(Case("eigh", eigh_fn(A, "U"), eigh_fn(J, "U"), _sym((4, 4)), "upper"))
    for shape, view in [((4, 3), ""), ((3, 5), "T"), ((3, 3), ""), ((2, 5, 2), "strided")]:
        tag = f"{'x'.join(map(str, shape))}{view}"
        cases.append(Case("svd", svd_thin_fn(A), svd_thin_fn(J), _spread(shape, view), tag))
        cases.append(
            Case(
                "svd",
                lambda a: anp.svd(a, compute_uv=False),
                lambda a: jnp.linalg.svd(a, compute_uv=False),
                _spread(shape, view),
                f"s-{tag}",
            )
        )
    for shape in [(5, 3), (2, 4, 2), (1, 3, 1)]:
        tag = "x".join(map(str, shape))
        cases.append(Case("svd", svd_full_fn(A), svd_full_fn(J), _spread(shape), f"full-{tag}"))
    for shape, view in [((4, 3), ""), ((3, 3), "T"), ((2, 5, 2), "strided"), ((1, 1), "")]:
        tag = f"{'x'.join(map(str, shape))}{view}"
        cases.append(
            Case("qr", qr_fn(A, "reduced"), qr_fn(J, "reduced"), _spread(shape, view), tag)
        )
        cases.append(
            Case(
                "qr",
                lambda a: anp.qr(a, mode="r") ** 2,
                lambda a: jnp.linalg.qr(a, mode="r") ** 2,
                _spread(shape, view),
                f"r-{tag}",
            )
        )
    for shape in [(5, 3), (2, 4, 1)]:
        tag = "x".join(map(str, shape))
        cases.append(
            Case(
                "qr", qr_fn(A, "complete"), qr_fn(J, "complete"), _spread(shape), f"complete-{tag}"
            )
        )
    torch = torch_module()
    for shape in [(3, 5), (2, 2, 4)]:  # wide: JAX has no rule, torch.func has
        cases.append(
            Case(
                "qr",
                qr_fn(A, "reduced"),
                qr_fn(torch, "reduced"),
                _spread(shape),
                f"wide-{'x'.join(map(str, shape))}",
                library="torch",
            )
        )
    for shape, view in [((4, 3), ""), ((3, 5), "T"), ((3, 3), ""), ((2, 4, 2), "strided")]:
        tag = f"{'x'.join(map(str, shape))}{view}"
        cases.append(Case("pinv", anp.pinv, jnp.linalg.pinv, _spread(shape, view), tag))
    for a_shape, b_shape in [((5, 3), (5,)), ((5, 3), (5, 2)), ((3, 5), (3, 2)), ((4, 4), (4,))]:
        tag = f"{'x'.join(map(str, a_shape))}-{'x'.join(map(str, b_shape))}"
        cases.append(
            Case("lstsq", lstsq_fn(A), lstsq_fn(J), _both(_spread(a_shape), _uniform(b_shape)), tag)
        )
    for n in [0, 1, 2, 5, 12, -1, -4]:
        cases.append(
            Case(
                "matrix_power",
                lambda a, n=n: anp.matrix_power(a, n),
                lambda a, n=n: jnp.linalg.matrix_power(a, n),
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
                    lambda a, c=scale: jsl.expm(c * a),
                    _uniform(shape),
                    f"{'x'.join(map(str, shape))}-scale{scale}",
                )
            )
    for sa, sb in [((2, 3), (3, 2)), ((3,), (2, 2)), ((2, 1, 2), (2, 3)), ((1,), (1, 1))]:
        cases.append(
            Case("kron", anp.kron, jnp.kron, _uniform(sa, sb), f"{sa}-{sb}".replace(" ", ""))
        )
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
                lambda a, b, kw=kw: jnp.cross(a, b, **kw),
                _uniform(sa, sb),
                f"{sa}-{sb}-{kw}".replace(" ", ""),
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
        cases.append(
            Case(
                "norm",
                norm_fn(A, **kw),
                norm_fn(J, **kw),
                _spread(shape) if len(shape) > 1 else _uniform(shape),
                f"{kw}-{shape}".replace(" ", ""),
            )
        )
    return cases


CASES = _cases()


# --- the comparison ---------------------------------------------------------------------------


def _reference(case: Case, xs: list[np.ndarray], u: np.ndarray, vs: list[np.ndarray]) -> Any:
    """value, VJP, JVP and HVP of sum(f * u) from JAX or torch.func."""
    if case.library == "torch":
        torch = torch_module()
        from torch.func import grad, jvp, vjp

        tx = [torch.tensor(np.ascontiguousarray(x)) for x in xs]
        tu, tv = torch.tensor(u), [torch.tensor(v) for v in vs]
        value, pull = vjp(case.reference, *tx)
        cts = pull(tu)
        _, tangent = jvp(case.reference, tuple(tx), tuple(tv))
        nums = tuple(range(len(tx)))
        g = grad(lambda *a: torch.sum(case.reference(*a) * tu), argnums=nums)
        _, hv = jvp(g, tuple(tx), tuple(tv))
        return [t.detach().numpy() for t in (value, *cts, tangent, *hv)]
    jx = [jnp.asarray(x) for x in xs]
    value, pull = jax.vjp(case.reference, *jx)
    cts = pull(jnp.asarray(u))
    _, tangent = jax.jvp(case.reference, tuple(jx), tuple(jnp.asarray(v) for v in vs))
    nums = tuple(range(len(jx)))
    g = jax.grad(lambda *a: jnp.sum(case.reference(*a) * u), argnums=nums)
    _, hv = jax.jvp(g, tuple(jx), tuple(jnp.asarray(v) for v in vs))
    return [np.asarray(t) for t in (value, *cts, tangent, *hv)]


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
    for what, a, b in zip(("value", "vjp", "jvp", "hvp"), mine, ref, strict=False):
        assert np.shape(a) == np.shape(b), what
        err = float(np.max(np.abs(np.asarray(a) - b), initial=0.0)) / (
            1.0 + float(np.max(np.abs(b), initial=0.0))
        )
        worst = max(worst, err)
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
