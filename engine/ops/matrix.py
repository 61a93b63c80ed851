"""Matrix functions: trace, diag, inv, det, slogdet, solve, cholesky.

Bilinear ops (``matmul``, ``dot``, ``tensordot``, ``inner``, ``outer``,
``einsum``) give each argument's cotangent as the product of ``g`` with the
other argument, transposed; their forward rule is the product rule. Matrix
functions follow the usual identities (Giles, "An extended collection of
matrix derivative results"): ``d inv = -inv da inv``, ``d det = det tr(inv da)``,
``d solve = solve(a, db - da x)``, and for ``cholesky`` the symmetric rule of
PyTorch and JAX (the matrix is taken as symmetric: ``a = L L^T``).

Batch convention: ``g`` and tangents may carry leading batch axes, so rules
only ever address the last axes (negative axes, ``matmul`` broadcasting,
einsum's ``...``). The 2-D ``matmul``/``dot`` rules are one ``matmul`` each
(the hot path of every dense layer).

Several outputs: ``slogdet(a)`` returns ``(sign, logabsdet)`` as NumPy does.
The tracer boxes one array per op, so ``slogdet`` is a ``TupleOp`` that calls
two single-output ops, ``_slogdet_sign`` (no gradient: the sign is piecewise
constant) and ``_slogdet_logabs``; ``sign, logdet = slogdet(a)`` unpacks as in
NumPy and each output records its own node. ``slogdet``'s own rule fields
are those of ``logabsdet`` (the sign contributes nothing).

Singular matrices: ``inv`` and ``solve`` raise ``ValueDomainError`` naming the
op; ``cholesky`` does the same for a matrix that is not positive definite.
``det``/``slogdet`` of a singular matrix are fine (0 and ``(0, -inf)``), but
their derivatives use ``inv`` and raise a ``ValueDomainError`` naming the op at
an exactly singular matrix (PyTorch's SVD-based adjugate is not implemented).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ValueDomainError
from engine.ops._linalg import (
    Shape,
    _batch,
    _dtype,
    _fail,
    _guard,
    _mT,
    _pad_to,
    _square,
)
from engine.ops._util import (
    broadcast_shapes,
    unbroadcast,
)
from engine.ops.kinds import def_custom, def_linear, def_nondiff
from engine.ops.products import _as
from engine.registry import Op, register, shape_of

# --- trace and diag -------------------------------------------------------------------------


def _prepare_trace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    names = ("offset", "axis1", "axis2")
    kw = {"offset": 0, "axis1": 0, "axis2": 1, **dict(zip(names, args[1:], strict=False))}
    kw.update(kwargs)
    a = args[0]
    nd = len(shape_of(a))
    if nd < 2:
        raise _fail("trace", "expects an array of at least 2 dimensions", shape_of(a))
    for key in names:
        value = kw[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueDomainError(f"trace: {key} must be an integer, got {value!r}", op="trace")
    for key in ("axis1", "axis2"):
        if not -nd <= kw[key] < nd:
            raise ValueDomainError(f"trace: {key}={kw[key]} out of bounds for {nd}-D", op="trace")
        kw[key] = int(kw[key]) % nd - nd
    if kw["axis1"] == kw["axis2"]:
        raise ValueDomainError("trace: axis1 and axis2 must differ", op="trace")
    return (a,), {k: int(v) for k, v in kw.items()}


def _trace_shape(a: Any, offset: int, axis1: int, axis2: int) -> Shape:
    s = shape_of(a)
    nd = len(s)
    return tuple(d for i, d in enumerate(s) if i not in (axis1 + nd, axis2 + nd))


def _trace_vjp(g: Any, ans: Any, a: Any, offset: int, axis1: int, axis2: int) -> Any:
    s = shape_of(a)
    nd = len(s)
    ax1, ax2 = axis1 + nd, axis2 + nd
    eye = np.eye(s[ax1], s[ax2], k=offset, dtype=_dtype(g))
    if ax1 > ax2:
        eye = eye.T
    holes = tuple(1 if i in (ax1, ax2) else d for i, d in enumerate(s))
    eye_shape = tuple(d if i in (ax1, ax2) else 1 for i, d in enumerate(s))
    return anp.reshape(g, _batch(g, nd - 2) + holes) * eye.reshape(eye_shape)


def_custom(
    "trace",
    lambda a, offset, axis1, axis2: np.trace(a, offset, axis1, axis2),
    "a, offset:s=0, axis1:s=0, axis2:s=1",
    "Sum along a diagonal (offset) of the 2-D sub-arrays on axis1 and axis2.",
    _trace_shape,
    vjps=[_trace_vjp],
    jvp=lambda ts, ans, a, **kw: anp.trace(ts[0], **kw),
    prepare=_prepare_trace,
    cost="linear",
)


def _diag_extract(x: Any, k: int) -> Any:
    """The k-th diagonal of the last two axes of ``x`` (batch-aware)."""
    m, n = shape_of(x)[-2:]
    r0, c0 = max(-k, 0), max(k, 0)
    size = max(0, min(m - r0, n - c0))
    sub = anp.getitem(x, (Ellipsis, slice(r0, r0 + size), slice(c0, c0 + size)))
    return anp.einsum("...ii->...i", sub)


def _diag_embed(h: Any, k: int, m: int, n: int) -> Any:
    """An (m, n) matrix, batch-aware, with ``h`` on its k-th diagonal and zeros elsewhere."""
    size = shape_of(h)[-1]
    cols = anp.matmul(h, np.eye(size, n, k=max(k, 0), dtype=_dtype(h)))  # h[j - c0] at column j
    batch = _batch(h, 1)
    return anp.reshape(cols, batch + (1, n)) * np.eye(m, n, k=k, dtype=_dtype(h))


def _diag_shape(v: Any, k: int = 0) -> Shape:
    s = shape_of(v)
    if len(s) == 1:
        return (s[0] + abs(k),) * 2
    if len(s) == 2:
        m, n = s
        return (max(0, min(m - max(-k, 0), n - max(k, 0))),)
    raise _fail("diag", "expects a 1-D or 2-D array", s)


def _diag_vjp(g: Any, ans: Any, v: Any, k: int = 0) -> Any:
    s = shape_of(v)
    if len(s) == 1:
        return _diag_extract(g, k)
    return _diag_embed(g, k, *s)


def _diag_jvp(tangents: list[Any], ans: Any, v: Any, k: int = 0) -> Any:
    t = tangents[0]
    if len(shape_of(v)) == 1:
        return _diag_embed(t, k, *shape_of(ans))
    return _diag_extract(t, k)


def _prepare_diag(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    k = args[1] if len(args) > 1 else kwargs.get("k", 0)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueDomainError(f"diag: k must be an integer, got {k!r}", op="diag")
    _diag_shape(args[0], int(k))
    return (args[0],), {"k": int(k)}


def_custom(
    "diag",
    lambda v, k: np.diag(v, k),
    "v, k:s=0",
    "A 1-D v: the matrix with v on its k-th diagonal; a 2-D v: its k-th diagonal.",
    _diag_shape,
    vjps=[_diag_vjp],
    jvp=_diag_jvp,
    prepare=_prepare_diag,
    cost="linear",
)


# --- triangles (linear: the forward rule is the op on the tangent, the reverse its own) --


def _tri_shape(name: str) -> Callable[..., Shape]:
    def shape(x: Any, k: int = 0) -> Shape:
        if len(shape_of(x)) < 2:  # NumPy would make a vector a matrix; JAX, PyTorch refuse
            raise _fail(name, "expects an array of at least 2 dimensions", shape_of(x))
        return shape_of(x)

    return shape


def _tri(name: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    def tri(x: Any, k: int) -> Any:
        _tri_shape(name)(x)  # a vector is refused here too, not made a matrix
        return impl(x, k)

    return tri


for _name, _impl, _part in (("tril", np.tril, "on and below"), ("triu", np.triu, "on and above")):
    def_linear(
        _name,
        _tri(_name, _impl),
        "x, k:int=0",
        f"The elements {_part} the k-th diagonal of the last two axes, zeros elsewhere.",
        _tri_shape(_name),
        transpose=lambda g, ans, x, k, op=_name: anp.OPS[op](g, k=k),  # a projection
    )


# --- matrix functions -------------------------------------------------------------------------


def _inv_vjp(g: Any, ans: Any, a: Any) -> Any:
    inv_t = _mT(ans)
    return anp.negative(anp.matmul(anp.matmul(inv_t, g), inv_t))


def _inv_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    return anp.negative(anp.matmul(anp.matmul(ans, tangents[0]), ans))


def_custom(
    "inv",
    _guard("inv", np.linalg.inv, "the matrix is singular", lambda a: _square("inv", a)),
    "a",
    "Inverse of a square matrix (or of each matrix in a stack).",
    lambda a: _square("inv", a),
    vjps=[_inv_vjp],
    jvp=_inv_jvp,
    cost="decomposition",
)


def _expand2(g: Any) -> Any:
    """``g`` with two trailing size-1 axes, to scale whole matrices."""
    return anp.reshape(g, shape_of(g) + (1, 1))


def _inv_t(a: Any, op: str) -> Any:
    """inv(a)^T for the derivative of ``op``; an exactly singular ``a`` is a typed error."""
    try:
        return _mT(anp.inv(a))
    except ValueDomainError:
        raise ValueDomainError(
            f"{op}: the derivative at a singular matrix is not supported (shape {shape_of(a)})",
            op=op,
            shapes=[shape_of(a)],
        ) from None


def _trace_inv_product(a: Any, t: Any, op: str) -> Any:
    """tr(inv(a) @ t) over the last two axes, batch-aware."""
    return anp.sum(_inv_t(a, op) * t, axis=(-2, -1))


def_custom(
    "det",
    _guard("det", np.linalg.det, "cannot compute", lambda a: _square("det", a)),
    "a",
    "Determinant of a square matrix (or of each matrix in a stack).",
    lambda a: _square("det", a)[:-2],
    vjps=[lambda g, ans, a: _expand2(g * ans) * _inv_t(a, "det")],
    jvp=lambda ts, ans, a: ans * _trace_inv_product(a, ts[0], "det"),
    cost="decomposition",
)


def _slogdet_part(i: int) -> Callable[..., Any]:
    part = lambda a: np.linalg.slogdet(a)[i]  # noqa: E731
    return _guard("slogdet", part, "cannot compute", lambda a: _square("slogdet", a))


SIGN = def_nondiff(
    "_slogdet_sign",
    _slogdet_part(0),
    "a",
    "Internal: the sign of the determinant (no gradient).",
    lambda a: _square("slogdet", a)[:-2],
    cost="decomposition",
)
LOGABS = def_custom(
    "_slogdet_logabs",
    _slogdet_part(1),
    "a",
    "Internal: log |det(a)|.",
    lambda a: _square("slogdet", a)[:-2],
    vjps=[lambda g, ans, a: _expand2(g) * _inv_t(a, "slogdet")],
    jvp=lambda ts, ans, a: _trace_inv_product(a, ts[0], "slogdet"),
    cost="decomposition",
)


@dataclass(eq=False)
class TupleOp(Op):
    """An op with several outputs, each computed (and recorded) by its own op."""

    parts: tuple[Op, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return tuple(part(*args, **kwargs) for part in self.parts)


register(
    TupleOp(
        name="slogdet",
        impl=lambda a: tuple(np.linalg.slogdet(a)),
        params=LOGABS.params,
        doc="Sign and natural log of the absolute determinant: (sign, logabsdet).",
        shape_fn=LOGABS.shape_fn,
        vjps=LOGABS.vjps,
        jvp_rule=LOGABS.jvp_rule,
        cost="decomposition",
        kind="custom",
        parts=(SIGN, LOGABS),
    )
)


# solve: NumPy 2's rule, b is a vector only when b.ndim == 1; rules work on matrices.


def _solve_shape(a: Any, b: Any) -> Shape:
    sa, sb = _square("solve", a), shape_of(b)
    n = sa[-1]
    if len(sb) == 1:
        if sb[0] != n:
            raise _fail("solve", f"b has {sb[0]} rows, the matrix {n}", sa, sb)
        return sa[:-1]
    if len(sb) < 2 or sb[-2] != n:
        raise _fail("solve", f"b must have {n} rows (b is a stack of matrices when 2-D+)", sa, sb)
    return broadcast_shapes("solve", sa[:-2], sb[:-2]) + sb[-2:]


def _as_matrix(x: Any, is_vector: bool) -> Any:
    return anp.reshape(x, shape_of(x) + (1,)) if is_vector else x


def _solve_gb(g: Any, a: Any, vector: bool) -> Any:
    """The cotangent of b before undoing broadcasting, in matrix form."""
    return anp.solve(_mT(a), _as_matrix(g, vector))


def _solve_vjp_a(g: Any, ans: Any, a: Any, b: Any) -> Any:
    vector = len(shape_of(b)) == 1
    x = _as_matrix(ans, vector)
    ga = anp.negative(anp.matmul(_solve_gb(g, a, vector), _mT(x)))
    return unbroadcast(ga, shape_of(a), len(shape_of(x)))


def _solve_vjp_b(g: Any, ans: Any, a: Any, b: Any) -> Any:
    vector = len(shape_of(b)) == 1
    gb = _solve_gb(g, a, vector)
    if vector:
        gb = anp.reshape(gb, shape_of(g))
    return unbroadcast(gb, shape_of(b), len(shape_of(ans)))


def _solve_jvp(tangents: list[Any], ans: Any, a: Any, b: Any) -> Any:
    ta, tb = tangents
    vector = len(shape_of(b)) == 1
    x = _as_matrix(ans, vector)
    nd = len(shape_of(x))
    rhs = None
    batch: Shape = ()
    if tb is not None:
        batch = _batch(tb, len(shape_of(b)))
        rhs = _pad_to(_as_matrix(tb, vector), len(shape_of(b)) + int(vector), nd)
    if ta is not None:
        batch = _batch(ta, len(shape_of(a)))
        da_x = anp.matmul(_pad_to(ta, len(shape_of(a)), nd), x)
        rhs = anp.negative(da_x) if rhs is None else rhs - da_x
    if rhs is None:
        return None
    return _as(anp.solve(a, rhs), batch + shape_of(ans))


def_custom(
    "solve",
    _guard("solve", np.linalg.solve, "the matrix is singular", _solve_shape),
    "a, b",
    "Solve a @ x = b for x (b is a vector when 1-D, else a stack of matrices).",
    _solve_shape,
    vjps=[_solve_vjp_a, _solve_vjp_b],
    jvp=_solve_jvp,
    cost="decomposition",
)


_NOT_PD = "the matrix is not positive definite"


# cholesky: Phi takes the lower triangle and halves the diagonal.


def _phi_mask(n: int, dtype: Any) -> np.ndarray:
    return np.tril(np.ones((n, n), dtype=dtype), -1) + 0.5 * np.eye(n, dtype=dtype)


def _cholesky_vjp(g: Any, ans: Any, a: Any) -> Any:
    n = shape_of(a)[-1]
    inv_l = anp.inv(ans)
    phi = anp.matmul(_mT(ans), g) * _phi_mask(n, _dtype(g))
    s = anp.matmul(anp.matmul(_mT(inv_l), phi), inv_l)
    return 0.5 * (s + _mT(s))


def _cholesky_jvp(tangents: list[Any], ans: Any, a: Any) -> Any:
    t = tangents[0]
    n = shape_of(a)[-1]
    inv_l = anp.inv(ans)
    sym = 0.5 * (t + _mT(t))
    inner = anp.matmul(anp.matmul(inv_l, sym), _mT(inv_l))
    return anp.matmul(ans, inner * _phi_mask(n, _dtype(t)))


def_custom(
    "cholesky",
    _guard("cholesky", np.linalg.cholesky, _NOT_PD, lambda a: _square("cholesky", a)),
    "a",
    "Lower-triangular L with a = L @ L.T, for a symmetric positive-definite a.",
    lambda a: _square("cholesky", a),
    vjps=[_cholesky_vjp],
    jvp=_cholesky_jvp,
    cost="decomposition",
)
