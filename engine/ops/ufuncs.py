"""More of NumPy's elementwise functions (ufuncs), as rows of the elementwise kind.

Each row gives its partial derivatives in engine ops, so every order follows. Conventions:

- **Step functions** (``floor``, ``ceil``, ``trunc``/``fix``, ``rint``, ``round``/``around``)
  have gradient 0 everywhere, at the jumps too (JAX's and PyTorch's convention: the
  derivative where it exists, and 0 where it does not). ``heaviside(x1, x2)`` has
  gradient 0 in ``x1`` and passes the gradient to ``x2`` where ``x1 == 0`` (its value
  is ``x2`` there), as ``jnp.heaviside`` does.
- ``fmod`` (C's remainder, the sign of ``x1``) has gradient 1 in ``x1`` and
  ``-trunc(x1 / x2)`` in ``x2``; ``mod`` is ``remainder`` (``%``: 1 and ``-floor(x1 / x2)``).
- ``hypot`` has gradient 0 at ``(0, 0)`` (the convention of ``norm`` at 0).
- ``copysign(x1, x2)`` is ``|x1|`` with the sign of ``x2``: gradient ``±sign(x1)`` in
  ``x1`` (0 at ``x1 = 0``, as ``abs``) and 0 in ``x2``.
- ``nan_to_num`` passes the gradient where ``x`` is finite and none where a value was
  replaced (JAX). ``isnan``/``isinf``/``isfinite``/``signbit``/``logical_xor`` are
  booleans without a gradient.
- ``float_power`` is ``power`` computed in the inputs' float type: float32 stays float32
  (as ``jnp.float_power``; NumPy's always answers float64).
- ``sinc`` is NumPy's normalised ``sin(pi x) / (pi x)``; its derivatives of every order are
  exact at and near 0 (an internal op ``_sinc_d(x, k)``, the k-th derivative, summed from
  its Maclaurin series near 0 and from Leibniz's rule elsewhere).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ValueDomainError
from engine.ops._util import defop
from engine.ops.elementwise import (
    LN2,
    ONE,
    ZERO,
    Partial,
    _jvp,
    _power_dx,
    _power_dy,
    _shape,
    _vjp,
    comparison,
)
from engine.registry import OPS, normalise_statics

DEG = math.pi / 180.0
# the ops (and aliases) registered by this module and engine/ops/special.py, in order
REGISTERED: list[str] = []


def ufunc(name: str, impl: Callable[..., Any], doc: str, *partials: Partial, **kw: Any) -> None:
    """An elementwise op from its partial derivatives (one per array argument), with
    aliases (``aliases=``) and the shape function of ``shape=`` (the family it is listed
    in); the elementwise family by default."""
    spec = {1: "x", 2: "x1, x2", 3: "x1, x2, x3"}[len(partials)]
    vjps = [_vjp(i, d, len(partials)) for i, d in enumerate(partials)]
    shape = kw.get("shape") or _shape(name)
    REGISTERED.extend((name, *kw.get("aliases", ())))
    defop(
        name,
        impl,
        spec,
        doc,
        shape,
        vjps,
        _jvp(partials),
        aliases=kw.get("aliases", ()),
        cost="linear",
        kind="elementwise",
    )


def unary_with_statics(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    partial: Partial,
    shape: Callable[..., tuple[int, ...]] | None = None,
    aliases: tuple[str, ...] = (),
    check: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """An elementwise op of one array argument and static parameters (``round``'s
    ``decimals``): ``partial(g, ans, x, **statics)`` or ``ZERO``. The statics are bound by
    name and checked (``check``) before any rule sees them."""

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        args, kwargs = normalise_statics(OPS[name], args, kwargs)
        if check is not None:
            check(kwargs)
        return args, kwargs

    def vjp(g: Any, ans: Any, x: Any, **statics: Any) -> Any:
        return partial(g, ans, x, **statics)  # type: ignore[operator]

    def jvp(tangents: list[Any], ans: Any, x: Any, **statics: Any) -> Any:
        t = tangents[0]
        return None if t is None or partial == ZERO else vjp(t, ans, x, **statics)

    REGISTERED.extend((name, *aliases))
    defop(
        name,
        impl,
        spec,
        doc,
        _ignoring_statics(shape or _shape(name)),
        [None if partial == ZERO else vjp],
        jvp,
        prepare=prepare,
        aliases=aliases,
        cost="linear",
        kind="elementwise",
    )


def _ignoring_statics(shape: Callable[..., tuple[int, ...]]) -> Callable[..., tuple[int, ...]]:
    """The broadcast shape rule, given the statics too (``Op.shape`` passes them); it keeps
    the rule's module, which names the op's family in ``GET /ops``."""

    @functools.wraps(shape)
    def with_statics(*args: Any, **_: Any) -> tuple[int, ...]:
        return shape(*args)

    return with_statics


def same_float(impl: Callable[..., Any]) -> Callable[..., Any]:
    """``impl`` answering in its arguments' float type (float32 in, float32 out), as a
    NumPy ufunc does; SciPy's compositions sometimes promote to float64."""

    def run(*args: Any, **kwargs: Any) -> Any:
        out = impl(*args, **kwargs)
        dtype = np.result_type(*args, np.float32)
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
        return out.astype(dtype, copy=False) if isinstance(out, np.ndarray) else dtype.type(out)

    return run


# --- exponentials, logarithms, powers -----------------------------------------------------

ufunc("exp2", np.exp2, "2 ** x.", lambda g, ans, x: g * (ans * LN2))
ufunc(
    "logaddexp",
    np.logaddexp,
    "log(exp(x1) + exp(x2)), computed stably.",
    lambda g, ans, x, y: g * anp.exp(x - ans),
    lambda g, ans, x, y: g * anp.exp(y - ans),
)
ufunc(
    "logaddexp2",
    np.logaddexp2,
    "log2(2 ** x1 + 2 ** x2), computed stably.",
    lambda g, ans, x, y: g * anp.exp2(x - ans),
    lambda g, ans, x, y: g * anp.exp2(y - ans),
)
ufunc("reciprocal", np.reciprocal, "1 / x.", lambda g, ans, x: anp.negative(g) * (ans * ans))
ufunc(
    "cbrt",
    np.cbrt,
    "Cube root (real, also of negative x); its derivative is inf at 0.",
    lambda g, ans, x: g / (3.0 * ans * ans),
)
ufunc(
    "float_power",
    same_float(np.power),
    "x1 ** x2 in the inputs' float type (float32 stays float32, as jnp.float_power).",
    _power_dx,
    _power_dy,
)
ufunc("positive", np.positive, "+x (a copy).", ONE)
ufunc(
    "hypot",
    np.hypot,
    "sqrt(x1 ** 2 + x2 ** 2), without overflow; gradient 0 at (0, 0).",
    lambda g, ans, x, y: g * _safe_ratio(x, ans),
    lambda g, ans, x, y: g * _safe_ratio(y, ans),
)


def _safe_ratio(x: Any, r: Any) -> Any:
    """``x / r``, 0 where ``r`` is 0 (the branch not taken stays finite to every order)."""
    zero = r == 0
    return anp.where(zero, 0.0, x / anp.where(zero, 1.0, r))


ufunc(
    "true_divide",
    np.true_divide,
    "x1 / x2 (divide's other NumPy name).",
    lambda g, ans, x, y: g / y,
    lambda g, ans, x, y: anp.negative(g * ans) / y,
)
# `absolute` is abs's alias (ops/complex_numbers.py: abs works on complex values too)


def _nan_ignoring_share(first: bool, larger: bool) -> Callable[..., Any]:
    """fmax/fmin's partial: as maximum/minimum (ties share evenly), and all of the
    gradient to the one argument that is not nan where the other is."""

    def partial(g: Any, ans: Any, x: Any, y: Any) -> Any:
        mine, other = (x, y) if first else (y, x)
        wins = mine > other if larger else mine < other
        share = anp.where(wins, g, anp.where(mine == other, 0.5 * g, 0.0))
        return anp.where(anp.isnan(other), anp.where(anp.isnan(mine), 0.0, g), share)

    return partial


ufunc(
    "fmax",
    np.fmax,
    "Elementwise maximum ignoring nan; ties share the gradient evenly.",
    _nan_ignoring_share(True, True),
    _nan_ignoring_share(False, True),
)
ufunc(
    "fmin",
    np.fmin,
    "Elementwise minimum ignoring nan; ties share the gradient evenly.",
    _nan_ignoring_share(True, False),
    _nan_ignoring_share(False, False),
)


# --- trigonometric and hyperbolic ---------------------------------------------------------


def _arcsinh_derivative(g: Any, ans: Any, x: Any) -> Any:
    # hypot is real-only (overflow-safe there); a complex x takes sqrt(x^2 + 1), holomorphic
    if np.iscomplexobj(x):
        return g / anp.sqrt(x * x + 1.0)
    return g / anp.hypot(x, 1.0)


ufunc("arcsinh", np.arcsinh, "Inverse hyperbolic sine.", _arcsinh_derivative)
ufunc(
    "arccosh",
    np.arccosh,
    "Inverse hyperbolic cosine (x >= 1; nan below).",
    lambda g, ans, x: g / (anp.sqrt(x - 1.0) * anp.sqrt(x + 1.0)),
)
ufunc(
    "arctanh",
    np.arctanh,
    "Inverse hyperbolic tangent (-1 < x < 1).",
    lambda g, ans, x: g / (1.0 - x * x),
)
ufunc(
    "deg2rad",
    np.deg2rad,
    "Degrees to radians: x * pi / 180.",
    lambda g, ans, x: g * DEG,
    aliases=("radians",),
)
ufunc(
    "rad2deg",
    np.rad2deg,
    "Radians to degrees: x * 180 / pi.",
    lambda g, ans, x: g * (1.0 / DEG),
    aliases=("degrees",),
)


# --- sinc and its derivatives of every order -------------------------------------------------

_SERIES_TERMS = 40
_SERIES_BELOW = 4.0  # |pi x| below which the series is summed (no cancellation there)


def _sinc_derivative(x: Any, k: int) -> Any:
    """The k-th derivative of sinc(x) = S(pi x), S(u) = sin(u) / u: pi^k S^(k)(pi x)."""
    x = np.asarray(x)
    u = np.pi * x.astype(np.float64)
    near = np.abs(u) < _SERIES_BELOW
    out = np.where(near, _sinc_series(np.where(near, u, 0.0), k), 0.0)
    if not np.all(near):
        out = np.where(near, out, _sinc_leibniz(np.where(near, 1.0, u), k))
    return (np.pi**k * out).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def _sinc_series(u: np.ndarray, k: int) -> np.ndarray:
    """S^(k)(u) = sum over 2n >= k of (-1)^n u^(2n - k) / ((2n + 1) (2n - k)!)."""
    out = np.zeros_like(u)
    for n in range((k + 1) // 2, _SERIES_TERMS):
        power = 2 * n - k
        out = out + (-1) ** n * u**power / ((2 * n + 1) * math.factorial(power))
    return out


def _sinc_leibniz(u: np.ndarray, k: int) -> np.ndarray:
    """S^(k)(u) by Leibniz's rule on sin(u) * (1/u): sin^(j)(u) = sin(u + j pi / 2) and
    (1/u)^(m) = (-1)^m m! / u^(m + 1)."""
    out = np.zeros_like(u)
    for j in range(k + 1):
        m = k - j
        out = out + math.comb(k, j) * np.sin(u + j * np.pi / 2) * (-1) ** m * (
            math.factorial(m) / u ** (m + 1)
        )
    return out


def _check_order(statics: dict[str, Any]) -> None:
    if statics["k"] < 0:
        raise ValueDomainError(f"_sinc_d: derivative order must be >= 0, got {statics['k']}")


ufunc(
    "sinc",
    np.sinc,
    "sin(pi x) / (pi x) (1 at 0), NumPy's normalised sinc; derivatives exact at 0.",
    lambda g, ans, x: g * anp._sinc_d(x, k=1),
)
unary_with_statics(
    "_sinc_d",
    _sinc_derivative,
    "x, k:int",
    "Internal: the k-th derivative of sinc.",
    lambda g, ans, x, k: g * anp._sinc_d(x, k=k + 1),
    check=_check_order,
)


# --- rounding and remainders (step functions: gradient 0) -------------------------------------

ufunc("floor", np.floor, "The largest integer <= x; gradient 0.", ZERO)
ufunc("ceil", np.ceil, "The smallest integer >= x; gradient 0.", ZERO)
ufunc(
    "trunc",
    np.trunc,
    "x rounded toward 0 (fix is the same); gradient 0.",
    ZERO,
    aliases=("fix",),
)
ufunc("rint", np.rint, "x rounded to the nearest integer (halves to even); gradient 0.", ZERO)


def _round(x: Any, decimals: int = 0) -> Any:
    return np.round(x, decimals)


def _check_decimals(statics: dict[str, Any]) -> None:
    """NumPy takes a C int (beyond it an OverflowError); past about 400 the answer is nan."""
    if not -(2**31) <= statics["decimals"] < 2**31:
        raise ValueDomainError(
            f"round: decimals must fit a 32-bit integer, got {statics['decimals']}", op="round"
        )


unary_with_statics(
    "round",
    _round,
    "x, decimals:int=0",
    "x rounded to `decimals` decimals (halves to even, as NumPy); gradient 0.",
    ZERO,
    aliases=("around",),
    check=_check_decimals,
)
ufunc(
    "fmod",
    np.fmod,
    "C's remainder of x1 / x2 (the sign of x1); gradient 1 in x1, -trunc(x1/x2) in x2.",
    ONE,
    lambda g, ans, x, y: anp.negative(g * anp.trunc(x / y)),
)
ufunc(
    "mod",
    np.remainder,
    "remainder (x1 % x2, the sign of x2); gradient 1 in x1, -floor(x1/x2) in x2.",
    ONE,
    lambda g, ans, x, y: anp.negative(g * anp.floor_divide(x, y)),
)
ufunc(
    "heaviside",
    np.heaviside,
    "Step: 0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0; gradient 0 in x1, "
    "1 in x2 where x1 == 0.",
    ZERO,
    lambda g, ans, x, y: anp.where(x == 0, g, 0.0),
)

# --- signs, magnitudes, non-finite values -----------------------------------------------------

ufunc("fabs", np.fabs, "|x| (fabs'(0) = 0, as abs).", lambda g, ans, x: g * anp.sign(x))
ufunc(
    "copysign",
    np.copysign,
    "|x1| with the sign of x2; gradient ±sign(x1) in x1 (0 at 0), 0 in x2.",
    lambda g, ans, x, y: g * (anp.sign(x) * anp.where(anp.signbit(y), -1.0, 1.0)),
    ZERO,
)


def _nan_to_num(
    x: Any, copy: bool = True, nan: Any = 0.0, posinf: Any = None, neginf: Any = None
) -> Any:
    return np.nan_to_num(x, copy=True, nan=nan, posinf=posinf, neginf=neginf)


def _check_fill_values(statics: dict[str, Any]) -> None:
    for name in ("nan", "posinf", "neginf"):
        value = statics[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float | np.number)
        ):
            raise ValueDomainError(
                f"nan_to_num: {name} must be a number or None, got {value!r}", op="nan_to_num"
            )


unary_with_statics(
    "nan_to_num",
    _nan_to_num,
    "x, copy:s=True, nan:s=0.0, posinf:s=None, neginf:s=None",
    "x with nan, inf and -inf replaced (by 0 and the largest finite values unless "
    "given); gradient 1 where x is finite, 0 where a value was replaced (as JAX).",
    lambda g, ans, x, **_: anp.where(anp.isfinite(x), g, 0.0),
    check=_check_fill_values,
)
comparison("isnan", np.isnan, "True where x is nan (no gradient).", nargs=1)
comparison("isinf", np.isinf, "True where x is inf or -inf (no gradient).", nargs=1)
comparison("isfinite", np.isfinite, "True where x is finite (no gradient).", nargs=1)
comparison("signbit", np.signbit, "True where the sign bit is set (-0.0 too; no gradient).", 1)
comparison("logical_xor", np.logical_xor, "x1 xor x2, elementwise (no gradient).")
REGISTERED.extend(("isnan", "isinf", "isfinite", "signbit", "logical_xor"))
