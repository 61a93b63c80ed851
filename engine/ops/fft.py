"""The FFT family (``numpy.fft`` names and signatures: ``n``/``s``, ``axis``/``axes``, ``norm``).

Every op is linear (``def_linear``): its forward rule is itself on the tangent, its reverse
rule its transpose under JAX's convention (README, "Complex numbers": a transpose, never an
adjoint). The DFT matrix is symmetric, so the transpose of ``fft``/``ifft``/``fftn``/``ifftn``
is the same transform of the cotangent, with the zero padding or truncation that ``n``/``s``
did undone (the transpose of padding is truncation, and back). ``rfft`` of a real ``x`` is the
first ``n // 2 + 1`` outputs of ``fft``: its transpose pads the cotangent with zeros, applies
``fft`` and keeps the real part. ``irfft`` reads each of ``X_1 .. X_{n/2-1}`` twice (the
Hermitian half it implies) and ``X_0`` (and ``X_{n/2}`` for even ``n``) once, real parts only:
its transpose is ``ifft`` of the cotangent, first half, weighted 2 and 1 accordingly.
Every op normalises its arguments once (``prepare``) to ``s`` (one length per axis), ``axes``
(negative, in the order given) and ``norm``; a length over the element limit is refused from
the shape function, before memory is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ValueDomainError
from engine.ops.kinds import def_linear
from engine.registry import OPS, shape_of
from engine.statics import norm_axis

NORMS = (None, "backward", "ortho", "forward")
Canonical = tuple[tuple[int, ...], tuple[int, ...], str]


def _length(op: str, name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueDomainError(f"{op}: {name} must be a positive integer, got {n!r}", op=op)
    return int(n)


def _norm(op: str, norm: Any) -> str:
    if norm not in NORMS:
        raise ValueDomainError(
            f"{op}: norm must be 'backward', 'ortho' or 'forward', got {norm!r}", op=op
        )
    return norm or "backward"


def _canonical(
    op: str, shape: tuple[int, ...], s: Any, axes: Any, norm: Any, half: bool
) -> Canonical:
    """(lengths, negative axes in order, norm) of an n-dimensional call."""
    nd = len(shape)
    if axes is None:
        axes = tuple(range(-len(s), 0)) if s is not None else tuple(range(-nd, 0))
    elif isinstance(axes, int | np.integer):
        axes = (axes,)
    axes = tuple(norm_axis(a, nd, op) for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueDomainError(f"{op}: repeated axis in {axes}", op=op)
    if s is None:
        lengths = [shape[a] for a in axes]
        if half and axes:  # irfftn: the last axis holds n // 2 + 1 values
            lengths[-1] = 2 * (shape[axes[-1]] - 1)
        s = tuple(lengths)
    else:
        if isinstance(s, int | np.integer):
            s = (s,)
        s = tuple(_length(op, "s", n) for n in s)
        if len(s) != len(axes):
            raise ValueDomainError(f"{op}: s and axes must have the same length", op=op)
    for n in s:
        _length(op, "a length", n)
    return s, axes, _norm(op, norm)


def _prepare_1d(op: str, half: bool = False) -> Callable[..., Any]:
    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, *rest = args
        kw = dict(zip(("n", "axis", "norm"), rest, strict=False)) | dict(kwargs)
        if "axes" in kw:  # already canonical (the forward rule calls the op again)
            return (x,), kw
        n = kw.get("n")
        shape = shape_of(x)
        given: tuple[int, ...] | None = None if n is None else (_length(op, "n", n),)
        if n is None and half:  # irfft's default length: 2 (m - 1)
            axis = norm_axis(kw.get("axis", -1), len(shape), op)
            given = (2 * (shape[axis] - 1),)
        s, axes, norm = _canonical(op, shape, given, (kw.get("axis", -1),), kw.get("norm"), half)
        return (x,), {"s": s, "axes": axes, "norm": norm}

    return prepare


def _prepare_nd(op: str, half: bool = False, two: bool = False) -> Callable[..., Any]:
    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, *rest = args
        kw = dict(zip(("s", "axes", "norm"), rest, strict=False)) | dict(kwargs)
        if "s" in kw and "axes" in kw and isinstance(kw["s"], tuple) and kw.get("_ok"):
            return (x,), kw
        axes = kw.get("axes", (-2, -1) if two else None)
        s, axes, norm = _canonical(op, shape_of(x), kw.get("s"), axes, kw.get("norm"), half)
        return (x,), {"s": s, "axes": axes, "norm": norm, "_ok": True}

    return prepare


def _out_shape(x_shape: tuple[int, ...], s: tuple[int, ...], axes: tuple[int, ...], half: str):
    """The result's shape: each axis its length (``rfft``'s last: n // 2 + 1)."""
    shape = list(x_shape)
    for i, (n, a) in enumerate(zip(s, axes, strict=True)):
        last = i == len(axes) - 1
        shape[a] = n // 2 + 1 if (half == "r" and last) else n
    return tuple(shape)


def _fit(g: Any, axis: int, length: int) -> Any:
    """``g`` cut or zero-padded along ``axis`` (negative) to ``length``."""
    shape = shape_of(g)
    have = shape[axis]
    if have == length:
        return g
    if have > length:
        index = (Ellipsis, slice(0, length)) + (slice(None),) * (-axis - 1)
        return g[index]
    pad_shape = list(shape)
    pad_shape[axis] = length - have
    # real zeros of g's precision: concatenation promotes them to g's complex dtype
    dtype = np.float32 if np.asarray(_raw(g)).dtype in (np.float32, np.complex64) else np.float64
    return anp.concatenate([g, anp.zeros(tuple(pad_shape), dtype=dtype)], axis=axis)


def _raw(g: Any) -> Any:
    from engine.core.trace import unbox_all

    return unbox_all(g)


def _fit_all(g: Any, x_shape: tuple[int, ...], axes: tuple[int, ...]) -> Any:
    for a in axes:
        g = _fit(g, a, x_shape[a])
    return g


# --- complex to complex ---------------------------------------------------------------------


def _impl(fn: Callable[..., Any]) -> Callable[..., Any]:
    def impl(x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True) -> Any:
        return fn(x, s=s, axes=axes, norm=norm)

    return impl


def _full(name: str, numpy_fn: Callable[..., Any], doc: str, prepare: Any, spec: str) -> None:
    def transpose(g: Any, ans: Any, x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True):
        y = OPS[name](g, s=s, axes=axes, norm=norm, _ok=True)  # symmetric: F^T = F
        return _fit_all(y, shape_of(x), axes)

    def_linear(
        name,
        _impl(numpy_fn),
        spec,
        doc,
        lambda x, s, axes, norm, _ok=True: _out_shape(shape_of(x), s, axes, ""),
        transpose,
        prepare=prepare,
        cost="decomposition",
    )


_ND = "x, s:s=None, axes:s=None, norm:s=None"
_1D = "x, n:s=None, axis:s=-1, norm:s=None"

_full("fftn", np.fft.fftn, "N-dimensional discrete Fourier transform.", _prepare_nd("fftn"), _ND)
_full("ifftn", np.fft.ifftn, "N-dimensional inverse DFT.", _prepare_nd("ifftn"), _ND)


def _via(base: str, name: str, doc: str, prepare: Any, spec: str, numpy_fn: Any) -> None:
    """A 1-D or 2-D form: the same transform as ``base`` (its transpose is ``base``'s)."""

    def transpose(g: Any, ans: Any, x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True):
        y = OPS[base](g, s=s, axes=axes, norm=norm, _ok=True)
        return _fit_all(y, shape_of(x), axes)

    def_linear(
        name,
        _impl(getattr(np.fft, base)),
        spec,
        doc,
        lambda x, s, axes, norm, _ok=True: _out_shape(shape_of(x), s, axes, ""),
        transpose,
        prepare=prepare,
        cost="decomposition",
    )


_via("fftn", "fft", "1-D discrete Fourier transform.", _prepare_1d("fft"), _1D, np.fft.fft)
_via("ifftn", "ifft", "1-D inverse DFT.", _prepare_1d("ifft"), _1D, np.fft.ifft)
_via(
    "fftn",
    "fft2",
    "2-D discrete Fourier transform (axes=(-2, -1)).",
    _prepare_nd("fft2", two=True),
    _ND,
    np.fft.fft2,
)
_via(
    "ifftn",
    "ifft2",
    "2-D inverse DFT (axes=(-2, -1)).",
    _prepare_nd("ifft2", two=True),
    _ND,
    np.fft.ifft2,
)


# --- real to half spectrum, and back ----------------------------------------------------------


def _refuse_complex(op: str, x: Any) -> None:
    if np.iscomplexobj(x):
        raise ValueDomainError(f"{op} takes a real input: use fft for a complex one", op=op)


def _rfft_impl(x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True) -> Any:
    _refuse_complex("rfft", x)
    return np.fft.rfftn(x, s=s, axes=axes, norm=norm)


def _rfft_transpose(g: Any, ans: Any, x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True):
    # the cotangent of the half spectrum, zero-padded to the full length along the last
    # axis, through the (symmetric) full transform; x is real: its real part
    g = _fit(g, axes[-1], s[-1])
    y = OPS["fftn"](g, s=s, axes=axes, norm=norm, _ok=True)
    return anp.real(_fit_all(y, shape_of(x), axes))


def _irfft_impl(x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True) -> Any:
    return np.fft.irfftn(x, s=s, axes=axes, norm=norm)


def _half_weights(n: int, count: int, dtype: Any) -> Any:
    """2 for the frequencies irfft reads twice, 1 for 0 (and n / 2 when n is even)."""
    w = np.full(count, 2.0)
    w[0] = 1.0
    if n % 2 == 0 and n // 2 < count:
        w[n // 2] = 1.0
    return w.astype(dtype)


def _irfft_transpose(g: Any, ans: Any, x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True):
    if np.iscomplexobj(g):  # the output is real: only Re(g) is its cotangent (complex_numbers)
        g = anp.real(g)
    y = OPS["ifftn"](g, s=s, axes=axes, norm=norm, _ok=True)  # complex, full length
    last, n = axes[-1], s[-1]
    y = _fit(y, last, n // 2 + 1)
    dtype = np.result_type(np.asarray(_raw(g)).dtype, np.float32)
    w = _half_weights(n, n // 2 + 1, dtype).reshape((-1,) + (1,) * (-last - 1))
    y = y * w
    out = _fit_all(y, shape_of(x), axes)
    return out if np.iscomplexobj(x) else anp.real(out)


def _register_half(name: str, impl: Any, transpose: Any, doc: str, prepare: Any, spec: str):
    half = "r" if name.startswith("rfft") else ""

    def shape(x: Any, s: Any, axes: Any, norm: Any, _ok: bool = True) -> tuple[int, ...]:
        return _out_shape(shape_of(x), s, axes, half)

    def_linear(name, impl, spec, doc, shape, transpose, prepare=prepare, cost="decomposition")


_register_half(
    "rfftn",
    _rfft_impl,
    _rfft_transpose,
    "N-dimensional DFT of a real input (the last axis' n // 2 + 1 frequencies).",
    _prepare_nd("rfftn"),
    _ND,
)
_register_half(
    "rfft",
    _rfft_impl,
    _rfft_transpose,
    "1-D DFT of a real input (n // 2 + 1 frequencies).",
    _prepare_1d("rfft"),
    _1D,
)
_register_half(
    "rfft2",
    _rfft_impl,
    _rfft_transpose,
    "2-D DFT of a real input.",
    _prepare_nd("rfft2", two=True),
    _ND,
)
_register_half(
    "irfftn",
    _irfft_impl,
    _irfft_transpose,
    "Inverse of rfftn: a real result (the last axis 2 (m - 1) long by default).",
    _prepare_nd("irfftn", half=True),
    _ND,
)
_register_half(
    "irfft",
    _irfft_impl,
    _irfft_transpose,
    "Inverse of rfft: a real result of length n (default 2 (m - 1)).",
    _prepare_1d("irfft", half=True),
    _1D,
)
_register_half(
    "irfft2",
    _irfft_impl,
    _irfft_transpose,
    "Inverse of rfft2.",
    _prepare_nd("irfft2", half=True, two=True),
    _ND,
)


# --- shifts -----------------------------------------------------------------------------------


def _prepare_shift(op: str) -> Callable[..., Any]:
    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, *rest = args
        kw = dict(zip(("axes",), rest, strict=False)) | dict(kwargs)
        axes = kw.get("axes")
        nd = len(shape_of(x))
        if axes is None:
            axes = tuple(range(-nd, 0))
        elif isinstance(axes, int | np.integer):
            axes = (axes,)
        return (x,), {"axes": tuple(norm_axis(a, nd, op) for a in axes)}

    return prepare


def_linear(
    "fftshift",
    lambda x, axes: np.fft.fftshift(x, axes=axes),
    "x, axes:s=None",
    "Move the zero frequency to the centre (a roll by n // 2 along axes).",
    lambda x, axes: shape_of(x),
    lambda g, ans, x, axes: OPS["ifftshift"](g, axes=axes),
    prepare=_prepare_shift("fftshift"),
)
def_linear(
    "ifftshift",
    lambda x, axes: np.fft.ifftshift(x, axes=axes),
    "x, axes:s=None",
    "The inverse of fftshift.",
    lambda x, axes: shape_of(x),
    lambda g, ans, x, axes: OPS["fftshift"](g, axes=axes),
    prepare=_prepare_shift("ifftshift"),
)
