"""Complex numbers: ``real``, ``imag``, ``conj``, ``angle``, ``abs`` (complex-aware), and the
refusal of ordering ops on complex values.

The gradient convention is JAX's (README, "Complex numbers"). A cotangent of a complex
value ``w = u + iv`` under a real loss ``L`` is ``dL/du - i dL/dv``; reverse rules are
transposes, never adjoints, so the rules of holomorphic ops (``exp``, ``*``, ``matmul``...)
are the real ones unchanged: ``g * f'(z)``. The ops here are not holomorphic: each gives its
own forward rule (real-linear in the tangent, ``df = a dz + b conj(dz)``) and reverse rule
(``g a + conj(g) conj(b)``, the transpose under ``<u, v> = Re(u v)``). A real value's
cotangent may carry an imaginary part on the way (a real input promoted by a complex
constant); it has no meaning, and is dropped where the real value is an input
(``engine.transforms._like``) or where a real output of a complex value is pulled back here
(``real``, ``imag``, ``abs``, ``angle`` read only ``Re(g)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core.trace import unbox_all
from engine.errors import ValueDomainError
from engine.ops._util import broadcast_shapes
from engine.ops.elementwise import _shape as _elementwise_shape
from engine.ops.kinds import def_custom
from engine.registry import OPS, shape_of


def is_complex(x: Any) -> bool:
    """Whether ``x`` (an array, a scalar or a box of one) holds complex numbers."""
    return bool(np.iscomplexobj(x))


def _dtype(x: Any) -> Any:
    return np.asarray(unbox_all(x)).dtype


def _shape(name: str) -> Any:
    return lambda x: broadcast_shapes(name, shape_of(x))


def _safe_unit(x: Any, modulus: Any) -> Any:
    """``x / |x|``, 0 where ``x`` is 0 (so ``abs``' gradient there is 0, as JAX's)."""
    zero = modulus == 0
    return anp.where(zero, 0.0, x / anp.where(zero, 1.0, modulus))


def _real_part(g: Any) -> Any:
    """The meaningful part of a real value's cotangent (see the module docstring)."""
    return anp.real(g) if is_complex(g) else g


def _as_complex(g: Any, like: Any) -> Any:
    """``g`` (real) as a complex array of ``like``'s precision."""
    dtype = np.complex64 if _dtype(like) == np.complex64 else np.complex128
    return g * dtype(1.0)


# --- abs: |z|, with d|z| = Re(conj(z) dz) / |z| ---------------------------------------------


def _abs_vjp(g: Any, ans: Any, x: Any) -> Any:
    if is_complex(x):
        return _real_part(g) * anp.conj(_safe_unit(x, ans))
    return g * anp.sign(x)


def _abs_jvp(tangents: list[Any], ans: Any, x: Any) -> Any:
    t = tangents[0]
    if is_complex(x):
        return anp.real(anp.conj(_safe_unit(x, ans)) * t)
    return t * anp.sign(x)


def_custom(
    "abs",
    np.abs,
    "x",
    "|x| (the modulus of a complex x); abs'(0) = 0.",
    _elementwise_shape("abs"),
    vjps=[_abs_vjp],
    jvp=_abs_jvp,
    aliases=("absolute",),
    cost="linear",
)


# --- real, imag, conj ---------------------------------------------------------------------


def _real_vjp(g: Any, ans: Any, x: Any) -> Any:
    g = _real_part(g)
    return _as_complex(g, x) if is_complex(x) else g


def _imag_vjp(g: Any, ans: Any, x: Any) -> Any:
    # d Im(z) = Im(dz): its transpose sends g to -i g (JAX's rule)
    if not is_complex(x):
        return _real_part(g) * 0.0
    return _real_part(g) * (np.complex64(-1j) if _dtype(x) == np.complex64 else -1j)


def _map_tangent(op: str) -> Any:
    def jvp(tangents: list[Any], ans: Any, x: Any) -> Any:
        t = tangents[0]
        return None if t is None else OPS[op](t)

    return jvp


def_custom(
    "real",
    np.real,
    "x",
    "The real part of x (x itself when x is real).",
    _shape("real"),
    vjps=[_real_vjp],
    jvp=_map_tangent("real"),
    cost="linear",
)
def_custom(
    "imag",
    np.imag,
    "x",
    "The imaginary part of x (0 when x is real).",
    _shape("imag"),
    vjps=[_imag_vjp],
    jvp=_map_tangent("imag"),
    cost="linear",
)
def_custom(
    "conj",
    np.conj,
    "x",
    "The complex conjugate of x (x itself when x is real).",
    _shape("conj"),
    vjps=[lambda g, ans, x: anp.conj(g) if is_complex(x) else g],
    jvp=_map_tangent("conj"),
    aliases=("conjugate",),
    cost="linear",
)


# --- angle: arg(z), d arg(z) = Im(conj(z) dz) / |z|^2 -----------------------------------------

_DEGREE = 180.0 / np.pi


def _angle(x: Any, deg: bool = False) -> Any:
    return np.angle(x, deg=deg)


def _inverse_conj(x: Any) -> Any:
    """``conj(x) / |x|^2`` = ``1 / x``, 0 where ``x`` is 0."""
    modulus2 = anp.real(x * anp.conj(x))
    zero = modulus2 == 0
    return anp.where(zero, 0.0, anp.conj(x) / anp.where(zero, 1.0, modulus2))


def _angle_vjp(g: Any, ans: Any, x: Any, deg: bool = False) -> Any:
    if not is_complex(x):  # 0 or pi: piecewise constant
        return _real_part(g) * 0.0
    scale = -_DEGREE * 1j if deg else -1j
    return (_real_part(g) * scale) * _inverse_conj(x)


def _angle_jvp(tangents: list[Any], ans: Any, x: Any, deg: bool = False) -> Any:
    t = tangents[0]
    if t is None:
        return None
    if not is_complex(x):
        return anp.real(t) * 0.0
    out = anp.imag(_inverse_conj(x) * t)
    return out * _DEGREE if deg else out


def_custom(
    "angle",
    _angle,
    "z, deg:s=False",
    "The argument of z, in radians (degrees with deg=True); gradient 0 at 0.",
    lambda z, deg=False: shape_of(z),
    vjps=[_angle_vjp],
    jvp=_angle_jvp,
    cost="linear",
)


# --- ordering ops refuse complex values ---------------------------------------------------

# Ops that order values, or whose rules hold only for real values (conjugate transposes
# would be needed): refused on complex arguments, as PyTorch refuses them, rather than
# answered with a value whose derivative means nothing. (jax.numpy orders complex values
# lexicographically in less, maximum, max and sort, and refuses clip.)
REFUSE_COMPLEX = (
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "maximum",
    "minimum",
    "fmax",
    "fmin",
    "clip",
    "relu",
    "softplus",
    "max",
    "min",
    "amax",
    "amin",
    "sort",
    "argsort",
    "argmax",
    "argmin",
    "searchsorted",
    "median",
    "percentile",
    "quantile",
    "floor",
    "ceil",
    "round",
    "trunc",
    "rint",
    "fmod",
    "remainder",
    "floor_divide",
    "arctan2",
    "norm",
    "std",
    "var",
    "cholesky",
    "slogdet",
    "svd",
    "eigh",
    "eigvalsh",
    "qr",
    "pinv",
    "lstsq",
)


def _refusing(name: str, impl: Any) -> Any:
    def impl_real_only(*args: Any, **kwargs: Any) -> Any:
        for a in args:
            if isinstance(a, np.ndarray | np.generic | complex) and np.iscomplexobj(a):
                raise ValueDomainError(
                    f"{name} is not defined for complex values (they have no order, or its "
                    "gradient rule holds for real values only): apply it to real(x), imag(x) "
                    "or abs(x)",
                    op=name,
                )
        return impl(*args, **kwargs)

    impl_real_only.__name__ = getattr(impl, "__name__", name)
    return impl_real_only


def refuse_complex() -> None:
    """Wrap the impl of every registered op of ``REFUSE_COMPLEX`` (called once, after every
    family registered its ops; impls see raw arrays, so the check runs at every level)."""
    for name in REFUSE_COMPLEX:
        op = OPS.get(name)
        if op is not None and not getattr(op.impl, "_refuses_complex", False):
            op.impl = _refusing(name, op.impl)
            op.impl._refuses_complex = True  # type: ignore[attr-defined]
