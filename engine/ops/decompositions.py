"""Decompositions: svd, eigh, eigvalsh, qr, pinv, lstsq (NumPy's names and signatures).

Several results: the tracer boxes one array per op, so a decomposition is a composite op
(``kinds.ComposedOp``) that calls one internal op per result (``_svd_u``, ``_svdvals``,
``_svd_vt``; ``_eigh_w``, ``_eigh_v``; ``_qr_q``, ``_qr_r``), each with its own rules
written in these ops, so that derivatives of any order follow. A result that is not used
costs no rule: the eigenvalues' gradient never touches the eigenvectors' (singular) one.

Conventions (those of JAX and PyTorch, ``engine/README.md``):
- ``eigh``/``eigvalsh`` read one triangle (``UPLO``), as NumPy does; their gradient is the
  symmetric one (the input taken as symmetric, as for ``cholesky``), and a tangent is
  symmetrised. At a repeated eigenvalue the eigenvalues' derivative is finite (in the
  eigenvector basis LAPACK returns) and the eigenvectors' is inf/nan (F = 1/(w_j - w_i)).
- ``svd``: singular values' derivative U^T da V everywhere; singular vectors' inf/nan at a
  repeated singular value (and, for the thin correction, at a zero one). ``full_matrices``
  with a non-square matrix: the extra columns of U (rows of V^T) are a basis of the
  orthogonal complement, not unique; their derivative is the one that keeps them
  orthonormal and orthogonal to the others with no rotation among themselves
  (dQ2 = -Q1 dQ1^T Q2): exact for anything that depends on their span (the projector
  Q2 Q2^T), where JAX raises and PyTorch ignores them.
- ``qr``: the rule of JAX (m >= n) and PyTorch (m < n); needs R invertible (full rank).
  ``mode='complete'`` with m > n: the extra columns of Q as for ``svd``.
- ``pinv``: the derivative of constant rank (Golub and Pereyra), as JAX and PyTorch; a
  rank change (a singular value crossing the cutoff) is a discontinuity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core.trace import unbox_all
from engine.errors import NotDifferentiableError, ShapeError, ValueDomainError
from engine.ops._linalg import Shape, _square
from engine.ops.kinds import def_composite, def_custom
from engine.registry import OPS, normalise_statics, shape_of

# --- static arguments ---------------------------------------------------------------------


def _flag(op: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueDomainError(f"{op}: {name} must be True or False, got {value!r}", op=op)
    return bool(value)


def _choice(op: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueDomainError(f"{op}: {name} must be one of {allowed}, got {value!r}", op=op)
    return value


def _number(op: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueDomainError(f"{op}: {name} must be a number or None, got {value!r}", op=op)
    if not np.isfinite(value):
        raise ValueDomainError(f"{op}: {name} must be finite, got {value!r}", op=op)
    return float(value)


def _prepare_for(name: str, **checks: Callable[[str, str, Any], Any]) -> Callable[..., Any]:
    """The ``prepare`` hook of op ``name``: statics bound by name and defaulted (the
    registry's ``normalise_statics``), then each one that has a check checked."""

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        args, statics = normalise_statics(OPS[name], args, kwargs)
        return args, {k: checks[k](name, k, v) if k in checks else v for k, v in statics.items()}

    return prepare


def _matrices(op: str, a: Any) -> Shape:
    shape = shape_of(a)
    if len(shape) < 2:
        raise ShapeError(
            f"{op}: expects a matrix (or a stack of them) in the last two axes, got shape {shape}",
            op=op,
            shapes=[shape],
        )
    return shape


def _call(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with LAPACK's failure turned into a typed error naming ``op``."""

    def impl(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except np.linalg.LinAlgError as exc:
            shapes = [shape_of(a) for a in args]
            raise ValueDomainError(f"{op}: {exc} (shapes {shapes})", op=op, shapes=shapes) from None

    return impl


def _mT(x: Any) -> Any:  # noqa: N802 (NumPy's name)
    return anp.swapaxes(x, -1, -2)


def _eye_like(n: int, x: Any) -> np.ndarray:
    return np.eye(n, dtype=np.result_type(unbox_all(x)))


def _sym(t: Any) -> Any:
    return 0.5 * (t + _mT(t))


# --- the orthogonal complement of orthonormal columns (full_matrices, mode='complete') ----
#
# Q = [Q1 | Q2] with orthonormal columns; Q1 = thin(a) has its own rules, Q2 is any basis of
# the complement. The derivative kept: dQ2 = -Q1 dQ1^T Q2 (Q1^T Q2 and Q2^T Q2 stay 0 and I,
# and Q2^T dQ2 = 0: no rotation inside the complement). Rows (V^T's extra rows) transpose it.


def _complement_rules(thin: str, rows: bool) -> tuple[Any, Any]:
    def jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
        q1 = OPS[thin](a)
        dq1 = OPS[thin].jvp(tangents, q1, a)
        if rows:  # dR2 = -R2 dR1^T R1
            return anp.negative(anp.matmul(anp.matmul(ans, _mT(dq1)), q1))
        return anp.negative(anp.matmul(q1, anp.matmul(_mT(dq1), ans)))

    def vjp(g: Any, ans: Any, a: Any) -> Any:
        q1 = OPS[thin](a)
        if rows:
            g1 = anp.negative(anp.matmul(anp.matmul(q1, _mT(g)), ans))
        else:
            g1 = anp.negative(anp.matmul(anp.matmul(ans, _mT(g)), q1))
        return OPS[thin].vjps[0](g1, q1, a)

    return jvp, vjp


# --- singular values and vectors ----------------------------------------------------------
#
# Internal ops of a stack of matrices ``a`` (m x n, k = min(m, n)), from its thin SVD
# a = U diag(s) V^T: ``_svdvals`` (s, largest first), ``_svd_u`` (U) and ``_svd_vt`` (V^T).
# Each rule is written in these ops (U, s and V^T of the rule's ``a``, traced), so the
# derivatives of any order follow. First order: d s = diag(U^T da V), whose cotangent is
# U diag(g) V^T (u1 v1^T for the largest). The singular vectors' derivatives (Townsend,
# "Differentiating the Singular Value Decomposition"; JAX's svd_jvp_rule) divide by
# s_j^2 - s_i^2 and by s: at repeated or (for the correction of a non-square a) zero
# singular values they are inf or nan, as in JAX and PyTorch, since the vectors are not
# differentiable there; the first derivative of the singular values never uses them.


def _svd_call(i: int, full: bool = False) -> Callable[..., Any]:
    def impl(a: Any) -> Any:
        out = np.linalg.svd(a, full_matrices=full, compute_uv=True)[i]
        if not full:
            return out
        k = min(a.shape[-2:])
        return out[..., k:] if i == 0 else out[..., k:, :]

    return _call("svd", impl)


def _factors(a: Any) -> tuple[Any, Any, Any]:
    """U, s and V^T of ``a``, as traced ops (plain arrays when ``a`` is plain)."""
    return anp._svd_u(a), anp._svdvals(a), anp._svd_vt(a)


def _coupling(s: Any) -> Any:
    """F with F_ij = 1 / (s_j^2 - s_i^2) off the diagonal and 0 on it (inf where two
    singular values are equal)."""
    row, col = anp.expand_dims(s, -2), anp.expand_dims(s, -1)
    eye = _eye_like(shape_of(s)[-1], s)
    with np.errstate(divide="ignore"):
        return 1.0 / ((row + col) * (row - col) + eye) - eye


def _conj_factors(a: Any) -> tuple[Any, Any]:
    """conj(U) and conj(V^T) of ``a`` (U and V^T when ``a`` is real).

    A complex ``a``: d s = Re(diag(U^H da V)), with V = (V^T)^H, so the tangent pairs ``da``
    with conj(U) and conj(V^T); the cotangent (the engine's JAX convention: the transpose
    under Re(sum(a * b)), not under the inner product) is conj(U) diag(g) conj(V^T)."""
    u, _, vt = _factors(a)
    if np.iscomplexobj(a):
        return anp.conj(u), anp.conj(vt)
    return u, vt


def _svdvals_vjp(g: Any, ans: Any, a: Any) -> Any:
    u, vt = _conj_factors(a)
    return anp.matmul(u * anp.expand_dims(g, -2), vt)


def _svdvals_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    u, vt = _conj_factors(a)
    ds = anp.sum(anp.matmul(_mT(u), tangents[0]) * vt, axis=-1)
    return anp.real(ds) if np.iscomplexobj(ds) else ds


def _real_vectors_only(op: str, a: Any) -> None:
    """The singular vectors' and eigenvectors' rules below hold for real matrices only: of a
    complex one they would need the phase (gauge) terms too, so reverse mode refuses it
    rather than answer a wrong derivative (forward mode, which pushes every output's tangent
    used or not, answers nan vectors: ``_complex_vector_tangent``; as eig does). The values'
    rules (``_svdvals``, ``_eigh_w``) hold for both."""
    if np.iscomplexobj(a):
        raise NotDifferentiableError(
            f"{op}: the derivative of the vectors of a complex matrix is not implemented (that "
            "of the singular values / eigenvalues is): differentiate through those, or use a "
            "real matrix",
            op=op,
        )


def _complex_vector_tangent(ans: Any) -> Any:
    """nan: a complex matrix's vectors have no derivative here (``_real_vectors_only``)."""
    return anp.zeros_like(ans) * np.nan


def _svd_u_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    """dU = U (F o (dS S + S dS^T)) [+ (I - U U^T) da V S^-1 when m > n], dS = U^T da V."""
    if np.iscomplexobj(a):
        return _complex_vector_tangent(ans)
    u, s, vt = _factors(a)
    t = tangents[0]
    ds = anp.matmul(anp.matmul(_mT(u), t), _mT(vt))
    dss = ds * anp.expand_dims(s, -2)
    du = anp.matmul(u, _coupling(s) * (dss + _mT(dss)))
    m, n = _matrices("svd", a)[-2:]
    if m > n:
        dav = anp.matmul(t, _mT(vt))
        du = du + (dav - anp.matmul(u, anp.matmul(_mT(u), dav))) / anp.expand_dims(s, -2)
    return du


def _svd_vt_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    """dV = V (F o (S dS + dS^T S)) [+ (I - V V^T) da^T U S^-1 when n > m]; answers dV^T."""
    if np.iscomplexobj(a):
        return _complex_vector_tangent(ans)
    u, s, vt = _factors(a)
    t = tangents[0]
    ds = anp.matmul(anp.matmul(_mT(u), t), _mT(vt))
    sds = anp.expand_dims(s, -1) * ds
    dv = anp.matmul(_mT(vt), _coupling(s) * (sds + _mT(sds)))
    m, n = _matrices("svd", a)[-2:]
    if n > m:
        dau = anp.matmul(_mT(t), u)
        dv = dv + (dau - anp.matmul(_mT(vt), anp.matmul(vt, dau))) / anp.expand_dims(s, -2)
    return _mT(dv)


def _svd_u_vjp(g: Any, ans: Any, a: Any) -> Any:
    """The transpose of ``_svd_u_jvp``: U ((W + W^T) S) V^T [+ (I - U U^T) g S^-1 V^T],
    with W = F o (U^T g)."""
    _real_vectors_only("svd", a)
    u, s, vt = _factors(a)
    w = _coupling(s) * anp.matmul(_mT(u), g)
    out = anp.matmul(anp.matmul(u, (w + _mT(w)) * anp.expand_dims(s, -2)), vt)
    m, n = _matrices("svd", a)[-2:]
    if m > n:
        proj = g - anp.matmul(u, anp.matmul(_mT(u), g))
        out = out + anp.matmul(proj / anp.expand_dims(s, -2), vt)
    return out


def _svd_vt_vjp(g: Any, ans: Any, a: Any) -> Any:
    """The transpose of ``_svd_vt_jvp`` (g is the cotangent of V^T; V's is g^T):
    U (S (W + W^T)) V^T [+ U S^-1 g (I - V V^T)], with W = F o (V^T g^T)."""
    _real_vectors_only("svd", a)
    u, s, vt = _factors(a)
    w = _coupling(s) * anp.matmul(vt, _mT(g))
    out = anp.matmul(anp.matmul(u, anp.expand_dims(s, -1) * (w + _mT(w))), vt)
    m, n = _matrices("svd", a)[-2:]
    if n > m:
        proj = g - anp.matmul(anp.matmul(g, _mT(vt)), vt)
        out = out + anp.matmul(u, proj / anp.expand_dims(s, -1))
    return out


def _svd_shapes(a: Any, full: bool) -> tuple[Shape, Shape, Shape]:
    shape = _matrices("svd", a)
    batch, (m, n) = shape[:-2], shape[-2:]
    k = min(m, n)
    return batch + (m, m if full else k), batch + (k,), batch + (n if full else k, n)


def _rest(a: Any, axis: int) -> int:
    """How many vectors a full factor has past min(m, n) (rows: axis -2, columns: -1)."""
    return shape_of(a)[axis] - min(shape_of(a)[-2:])


def_custom(
    "_svdvals",
    _call("svd", lambda a: np.linalg.svd(a, compute_uv=False)),
    "a",
    "Internal: the singular values of a matrix (or a stack), largest first.",
    lambda a: _svd_shapes(a, False)[1],
    vjps=[_svdvals_vjp],
    jvp=_svdvals_jvp,
)
def_custom(
    "_svd_u",
    _svd_call(0),
    "a",
    "Internal: U of the thin SVD a = U diag(s) V^T.",
    lambda a: _svd_shapes(a, False)[0],
    vjps=[_svd_u_vjp],
    jvp=_svd_u_jvp,
)
def_custom(
    "_svd_vt",
    _svd_call(2),
    "a",
    "Internal: V^T of the thin SVD a = U diag(s) V^T.",
    lambda a: _svd_shapes(a, False)[2],
    vjps=[_svd_vt_vjp],
    jvp=_svd_vt_jvp,
)
_u_rest_jvp, _u_rest_vjp = _complement_rules("_svd_u", rows=False)
def_custom(
    "_svd_u_rest",
    _svd_call(0, full=True),
    "a",
    "Internal: the columns of the full U past min(m, n) (m > n).",
    lambda a: _svd_shapes(a, True)[0][:-1] + (_rest(a, -2),),
    vjps=[_u_rest_vjp],
    jvp=_u_rest_jvp,
)
_vt_rest_jvp, _vt_rest_vjp = _complement_rules("_svd_vt", rows=True)
def_custom(
    "_svd_vt_rest",
    _svd_call(2, full=True),
    "a",
    "Internal: the rows of the full V^T past min(m, n) (n > m).",
    lambda a: _svd_shapes(a, True)[2][:-2] + (_rest(a, -1), shape_of(a)[-1]),
    vjps=[_vt_rest_vjp],
    jvp=_vt_rest_jvp,
)


def _largest(*shapes: Shape) -> Shape:
    """The shape of the largest result: the one the size check must refuse."""
    return max(shapes, key=math.prod)


def _svd_shape(a: Any, full_matrices: bool, compute_uv: bool, hermitian: bool) -> Shape:
    shapes = _svd_shapes(a, full_matrices)
    return _largest(*shapes) if compute_uv else shapes[1]


def _svd(a: Any, full_matrices: bool, compute_uv: bool, hermitian: bool) -> Any:
    # hermitian=True only lets NumPy use eigh: the singular values are the same, and the
    # general SVD of the (symmetric) matrix is computed
    if not compute_uv:
        return anp._svdvals(a)
    u, s, vt = _factors(a)
    m, n = shape_of(a)[-2:]
    if full_matrices and m > n:
        u = anp.concatenate([u, anp._svd_u_rest(a)], axis=-1)
    if full_matrices and n > m:
        vt = anp.concatenate([vt, anp._svd_vt_rest(a)], axis=-2)
    return u, s, vt


def_composite(
    "svd",
    _svd,
    "a, full_matrices:s=True, compute_uv:s=True, hermitian:s=False",
    "Singular value decomposition a = U diag(S) Vh of a matrix or stack: (U, S, Vh), "
    "S largest first; only S with compute_uv=False. Singular vectors have no derivative at "
    "a repeated singular value (inf/nan, as in JAX and PyTorch).",
    _svd_shape,
    prepare=_prepare_for("svd", full_matrices=_flag, compute_uv=_flag, hermitian=_flag),
    impl=np.linalg.svd,
    several=True,
    cost="decomposition",
)


# --- eigh, eigvalsh -----------------------------------------------------------------------
#
# a = V diag(w) V^T (a symmetric; NumPy reads the UPLO triangle). dw = diag(V^T da V) and
# dV = V (F o (V^T da V)) with F_ij = 1 / (w_j - w_i) off the diagonal (da symmetrised);
# the reverse rules are their transposes, made symmetric.


def _uplo(op: str, name: str, value: Any) -> str:
    return _choice(op, name, value.upper() if isinstance(value, str) else value, ("L", "U"))


def _eigvals_vjp(g: Any, ans: Any, a: Any, UPLO: str) -> Any:  # noqa: N803 (NumPy's name)
    # a complex (Hermitian) a: dw = Re diag(V^H da V), whose cotangent in the engine's JAX
    # convention (transpose under Re(sum(a * b))) is conj(V) diag(g) V^T
    v = anp._eigh_v(a, UPLO=UPLO)
    left = anp.conj(v) if np.iscomplexobj(a) else v
    return anp.matmul(left * anp.expand_dims(g, -2), _mT(v))


def _eigvals_jvp(tangents: list[Any], ans: Any, a: Any, UPLO: str) -> Any:  # noqa: N803
    v = anp._eigh_v(a, UPLO=UPLO)  # diag(V^T t V) is that of the symmetrised t too
    if np.iscomplexobj(a):  # Re diag(V^H t V)
        return anp.real(anp.sum(anp.conj(v) * anp.matmul(tangents[0], v), axis=-2))
    return anp.sum(v * anp.matmul(tangents[0], v), axis=-2)


def _gaps(w: Any) -> Any:
    """F with F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it (inf at a repeated w)."""
    eye = _eye_like(shape_of(w)[-1], w)
    with np.errstate(divide="ignore"):
        return 1.0 / (anp.expand_dims(w, -2) - anp.expand_dims(w, -1) + eye) - eye


def _eigvecs_jvp(tangents: list[Any], ans: Any, a: Any, UPLO: str) -> Any:  # noqa: N803
    if np.iscomplexobj(a):
        return _complex_vector_tangent(ans)
    w = anp._eigh_w(a, UPLO=UPLO)
    inner = anp.matmul(anp.matmul(_mT(ans), _sym(tangents[0])), ans)
    return anp.matmul(ans, _gaps(w) * inner)


def _eigvecs_vjp(g: Any, ans: Any, a: Any, UPLO: str) -> Any:  # noqa: N803
    _real_vectors_only("eigh", a)
    w = anp._eigh_w(a, UPLO=UPLO)
    inner = _gaps(w) * anp.matmul(_mT(ans), g)
    return _sym(anp.matmul(anp.matmul(ans, inner), _mT(ans)))


_EIGH_PREPARE = {"UPLO": _uplo}
for _name, _fn, _doc in (
    ("eigvalsh", np.linalg.eigvalsh, "Eigenvalues of a symmetric matrix (or stack), ascending."),
    ("_eigh_w", lambda a, UPLO: np.linalg.eigh(a, UPLO)[0], "Internal: eigh's eigenvalues."),
):
    def_custom(
        _name,
        _call("eigh", lambda a, UPLO, fn=_fn: fn(a, UPLO)),
        "a, UPLO:s='L'",
        _doc + " Reads the UPLO triangle; the gradient is symmetric.",
        lambda a, UPLO: _square("eigvalsh", a)[:-1],
        vjps=[_eigvals_vjp],
        jvp=_eigvals_jvp,
        prepare=_prepare_for(_name, **_EIGH_PREPARE),
    )
def_custom(
    "_eigh_v",
    _call("eigh", lambda a, UPLO: np.linalg.eigh(a, UPLO)[1]),
    "a, UPLO:s='L'",
    "Internal: eigh's eigenvectors (columns).",
    lambda a, UPLO: _square("eigh", a),
    vjps=[_eigvecs_vjp],
    jvp=_eigvecs_jvp,
    prepare=_prepare_for("_eigh_v", **_EIGH_PREPARE),
)
def_composite(
    "eigh",
    lambda a, UPLO: (anp._eigh_w(a, UPLO=UPLO), anp._eigh_v(a, UPLO=UPLO)),
    "a, UPLO:s='L'",
    "Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix or stack: "
    "(w, v). Reads the UPLO triangle; the gradient is symmetric; eigenvectors have no "
    "derivative at a repeated eigenvalue (inf/nan, as in JAX and PyTorch).",
    lambda a, UPLO: _square("eigh", a),
    prepare=_prepare_for("eigh", **_EIGH_PREPARE),
    impl=np.linalg.eigh,
    several=True,
    cost="decomposition",
)


# --- qr -----------------------------------------------------------------------------------
#
# Thin a = Q R. For m >= n (JAX's rule): X = da R^-1, C = Q^T X, O = L - L^T with
# L = tril(C, -1); dQ = Q O + (I - Q Q^T) X and dR = (C - O) R. Its transpose, from the
# cotangents Qb and Rb: M = Q^T Qb - Rb R^T, N = Rb R^T + tril(M - M^T, -1),
# Xb = Q N + (I - Q Q^T) Qb and ab = Xb R^-T. For m < n (PyTorch's): a = [A1 | A2] with
# A1 square, Q R1 = A1 by the rule above and R2 = Q^T A2.


def _qr_parts(a: Any) -> tuple[Any, Any]:
    return anp._qr_q(a), anp._qr_r(a)


def _r_inverse(r: Any) -> Any:
    """R^-1 for the rules; a singular R (a rank-deficient matrix) is a typed error naming qr."""
    try:
        return anp.inv(r)
    except ValueDomainError:
        shape = shape_of(r)
        raise ValueDomainError(
            f"qr: the derivative needs R invertible (a matrix of full rank); R {shape} is singular",
            op="qr",
            shapes=[shape],
        ) from None


def _tall_jvp(q: Any, r: Any, t: Any) -> tuple[Any, Any]:
    x = anp.matmul(t, _r_inverse(r))
    c = anp.matmul(_mT(q), x)
    low = anp.tril(c, k=-1)
    omega = low - _mT(low)
    dq = anp.matmul(q, omega) + x - anp.matmul(q, c)
    dr = anp.matmul(c - omega, r)
    return dq, dr


def _plus(x: Any, y: Any) -> Any:
    """x + y, where None is a zero."""
    return y if x is None else x if y is None else x + y


def _tall_vjp(q: Any, r: Any, gq: Any, gr: Any) -> Any:
    """The rule's transpose for m >= n; a None cotangent is zero."""
    gr_rt = None if gr is None else anp.matmul(gr, _mT(r))
    qt_gq = None if gq is None else anp.matmul(_mT(q), gq)
    m_mat = _plus(qt_gq, None if gr_rt is None else anp.negative(gr_rt))
    n_mat = _plus(gr_rt, anp.tril(m_mat - _mT(m_mat), k=-1))
    xb = anp.matmul(q, n_mat)
    if gq is not None:
        xb = xb + gq - anp.matmul(q, qt_gq)
    return anp.matmul(xb, _mT(_r_inverse(r)))


def _qr_jvp(i: int) -> Callable[..., Any]:
    def jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
        q, r = _qr_parts(a)
        t = tangents[0]
        m, n = shape_of(a)[-2:]
        if m >= n:
            return _tall_jvp(q, r, t)[i]
        dq, dr1 = _tall_jvp(q, r[..., :, :m], t[..., :, :m])
        if i == 0:
            return dq
        a2, t2 = a[..., :, m:], t[..., :, m:]
        dr2 = anp.matmul(_mT(dq), a2) + anp.matmul(_mT(q), t2)
        return anp.concatenate([dr1, dr2], axis=-1)

    return jvp


def _qr_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, a: Any) -> Any:
        q, r = _qr_parts(a)
        m, n = shape_of(a)[-2:]
        gq, gr = (g, None) if i == 0 else (None, g)
        if m >= n:
            return _tall_vjp(q, r, gq, gr)
        a2 = a[..., :, m:]
        if gr is None:
            ga2 = np.zeros(shape_of(g)[:-1] + (n - m,), dtype=np.result_type(unbox_all(g)))
            return anp.concatenate([_tall_vjp(q, r[..., :, :m], gq, None), ga2], axis=-1)
        gr2 = gr[..., :, m:]
        gq = _plus(gq, anp.matmul(a2, _mT(gr2)))
        ga1 = _tall_vjp(q, r[..., :, :m], gq, gr[..., :, :m])
        return anp.concatenate([ga1, anp.matmul(q, gr2)], axis=-1)

    return vjp


def _qr_shapes(a: Any, complete: bool) -> tuple[Shape, Shape]:
    shape = _matrices("qr", a)
    batch, (m, n) = shape[:-2], shape[-2:]
    k = m if complete else min(m, n)
    return batch + (m, k), batch + (k, n)


for _i, _part in enumerate(("q", "r")):
    def_custom(
        f"_qr_{_part}",
        _call("qr", lambda a, i=_i: np.linalg.qr(a)[i]),
        "a",
        f"Internal: {_part.upper()} of the reduced QR decomposition.",
        lambda a, i=_i: _qr_shapes(a, False)[i],
        vjps=[_qr_vjp(_i)],
        jvp=_qr_jvp(_i),
    )
_q_rest_jvp, _q_rest_vjp = _complement_rules("_qr_q", rows=False)
def_custom(
    "_qr_q_rest",
    _call("qr", lambda a: np.linalg.qr(a, "complete")[0][..., min(a.shape[-2:]) :]),
    "a",
    "Internal: the columns of the complete Q past n (m > n).",
    lambda a: _qr_shapes(a, True)[0][:-1] + (_rest(a, -2),),
    vjps=[_q_rest_vjp],
    jvp=_q_rest_jvp,
)


def _qr_shape(a: Any, mode: str) -> Shape:
    q, r = _qr_shapes(a, mode == "complete")
    return r if mode == "r" else _largest(q, r)


def _qr(a: Any, mode: str) -> Any:
    q, r = _qr_parts(a) if mode != "r" else (None, anp._qr_r(a))
    m, n = shape_of(a)[-2:]
    if mode == "complete" and m > n:
        q = anp.concatenate([q, anp._qr_q_rest(a)], axis=-1)
        zeros = np.zeros(shape_of(a)[:-2] + (m - n, n), dtype=np.result_type(unbox_all(a)))
        r = anp.concatenate([r, zeros], axis=-2)
    return r if mode == "r" else (q, r)


def _qr_mode(op: str, name: str, value: Any) -> str:
    if value == "raw":
        raise ValueDomainError("qr: mode='raw' (Householder reflectors) is not supported", op=op)
    return _choice(op, name, value, ("reduced", "complete", "r"))


def_composite(
    "qr",
    _qr,
    "a, mode:s='reduced'",
    "QR decomposition of a matrix or stack: (Q, R) for mode 'reduced' or 'complete', R "
    "alone for 'r'. Differentiable where R is invertible.",
    _qr_shape,
    prepare=_prepare_for("qr", mode=_qr_mode),
    impl=np.linalg.qr,
    several=True,
    cost="decomposition",
)


# --- pinv ---------------------------------------------------------------------------------
#
# The derivative at constant rank (Golub and Pereyra; JAX's pinv_jvp):
# dP = -P da P + P P^T da^T (I - a P) + (I - P a) da^T P^T P, and its transpose
# ab = -P^T g P^T + (I - a P) g^T P P^T + P^T P g^T (I - P a).


def _pinv_jvp(tangents: list[Any], ans: Any, a: Any, **_: Any) -> Any:
    t, p = tangents[0], ans
    tt = _mT(t)
    first = anp.negative(anp.matmul(anp.matmul(p, t), p))
    left = anp.matmul(anp.matmul(p, _mT(p)), tt)
    second = left - anp.matmul(anp.matmul(left, a), p)
    right = anp.matmul(tt, anp.matmul(_mT(p), p))
    third = right - anp.matmul(p, anp.matmul(a, right))
    return first + second + third


def _pinv_vjp(g: Any, ans: Any, a: Any, **_: Any) -> Any:
    p, gt = ans, _mT(g)
    pt = _mT(p)
    first = anp.negative(anp.matmul(anp.matmul(pt, g), pt))
    left = anp.matmul(gt, anp.matmul(p, pt))
    second = left - anp.matmul(a, anp.matmul(p, left))
    right = anp.matmul(anp.matmul(pt, p), gt)
    third = right - anp.matmul(anp.matmul(right, p), a)
    return first + second + third


def _np_pinv(a: Any, rcond: float | None, hermitian: bool, rtol: float | None) -> Any:
    kw: dict[str, Any] = {"hermitian": hermitian}
    if rcond is not None:
        kw["rcond"] = rcond
    if rtol is not None:
        kw["rtol"] = rtol
    return np.linalg.pinv(a, **kw)


def_custom(
    "pinv",
    _call("pinv", _np_pinv),
    "a, rcond:s=None, hermitian:s=False, rtol:s=None",
    "Moore-Penrose pseudo-inverse of a matrix or stack (singular values up to rcond times "
    "the largest are taken as zero); differentiable where the rank does not change.",
    lambda a, **_: _matrices("pinv", a)[:-2] + shape_of(a)[-2:][::-1],
    vjps=[_pinv_vjp],
    jvp=_pinv_jvp,
    prepare=_prepare_for("pinv", rcond=_number, hermitian=_flag, rtol=_number),
)


# --- lstsq --------------------------------------------------------------------------------


def _lstsq_shapes(a: Any, b: Any) -> tuple[Shape, Shape]:
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) != 2 or len(sb) not in (1, 2):
        raise ShapeError(
            f"lstsq: a must be 2-D and b 1-D or 2-D (shapes {sa} and {sb})",
            op="lstsq",
            shapes=[sa, sb],
        )
    if sb[0] != sa[0]:
        raise ShapeError(
            f"lstsq: a and b must have as many rows ({sa[0]} != {sb[0]})",
            op="lstsq",
            shapes=[sa, sb],
        )
    return sa, sb


def _lstsq_shape(a: Any, b: Any, rcond: float | None) -> Shape:
    sa, sb = _lstsq_shapes(a, b)
    return _largest(sa[1:] + sb[1:], (min(sa),), sb[1:] or (1,))


def _lstsq(a: Any, b: Any, rcond: float | None) -> tuple[Any, Any, Any, Any]:
    """NumPy's (x, residuals, rank, s): x = pinv(a) b with lstsq's cutoff (rcond times the
    largest singular value; None: float64's epsilon times max(m, n); < 0: the epsilon)."""
    (m, n), sb = _lstsq_shapes(a, b)
    dtype = np.result_type(unbox_all(a), unbox_all(b))
    # NumPy computes in float64 whatever the input, and LAPACK reads rcond < 0 as its eps
    eps = np.finfo(np.float64).eps
    cut = eps * max(m, n) if rcond is None else eps if rcond < 0 else rcond
    s = anp._svdvals(a)
    values = np.asarray(unbox_all(s))
    rank = np.int32(np.sum(values > cut * values.max())) if values.size else np.int32(0)
    x = anp.matmul(anp.pinv(a, rcond=cut), b)
    if rank == n and m > n:
        r = b - anp.matmul(a, x)
        res = anp.sum(r * r, axis=0)
        residuals = anp.reshape(res, (1,)) if len(sb) == 1 else res
    else:
        residuals = np.zeros((0,), dtype=dtype)
    return x, residuals, rank, s


def_composite(
    "lstsq",
    _lstsq,
    "a, b, rcond:s=None",
    "Least-squares solution of a @ x = b (a 2-D, b 1-D or 2-D): (x, residuals, rank, s) as "
    "NumPy answers; x = pinv(a) @ b with lstsq's cutoff, differentiable at constant rank.",
    _lstsq_shape,
    prepare=_prepare_for("lstsq", rcond=_number),
    impl=np.linalg.lstsq,
    several=True,
    cost="decomposition",
)
