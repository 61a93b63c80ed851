"""Special functions under scipy.special's names, signatures and semantics.

Values are SciPy's (outside a function's domain that is nan, or inf at a pole, never an
error; the service answers those as the strings "nan"/"inf"). Every derivative is written
in registered ops, so every order follows: digamma' = polygamma(1, x), i0' = i1,
i1' = (i0 + iv(2, x)) / 2, erfinv' = sqrt(pi)/2 exp(erfinv(x)^2), ...

Arguments without a derivative:
- the order of ``polygamma(n, x)``, ``jv``/``jn``, ``yv``/``yn`` is an integer (or a
  parameter): gradient 0 for ``polygamma``'s and Bessel ``jn``/``yn``'s integer orders;
- ``gammainc``/``gammaincc``'s ``a``, ``betainc``'s ``a`` and ``b``, and ``iv``/``ive``/
  ``jv``/``yv``'s order ``v`` have a derivative SciPy has no function for: the gradient is
  with respect to ``x`` only, and asking for the other one is a ``NotDifferentiableError``
  naming the argument (JAX computes some of these; PyTorch refuses as we do).

Conventions at special points (JAX's): ``xlogy(0, y) = 0`` and ``xlog1py(0, y) = 0``; their
gradient in x is ``log(y)`` (``log1p(y)``) everywhere, in y it is ``x / y`` (``x / (1 + y)``),
0 at ``x = y = 0`` (``x = 0, y = -1``) where JAX gives nan. ``i0e``/``i1e`` (scaled by
``exp(-|x|)``) have a kink at 0 and the derivative of ``|x|`` there is 0, as ``abs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.special as sc

import engine.numpy as anp
from engine.core import trace
from engine.core.trace import unbox_all
from engine.errors import NotDifferentiableError, ValueDomainError
from engine.ops._util import broadcast_shapes, prepare_axes, reduced_shape
from engine.ops.elementwise import ZERO
from engine.ops.reductions import _logsumexp as _np_logsumexp
from engine.ops.reductions import _reduction_rules
from engine.ops.ufuncs import same_float, ufunc, unary_with_statics
from engine.registry import NUMPY_ERRORS, Op, params, register, shape_of
from engine.statics import norm_axes

SQRT_PI = math.sqrt(math.pi)
SQRT_2PI = math.sqrt(2.0 * math.pi)


def _shape(name: str) -> Callable[..., tuple[int, ...]]:
    """The broadcast shape of the arguments (defined here: this family's shape rule)."""

    def shape(*args: Any, **_: Any) -> tuple[int, ...]:
        return broadcast_shapes(name, *(shape_of(a) for a in args))

    return shape


def special(name: str, impl: Callable[..., Any], doc: str, *partials: Any, **kw: Any) -> None:
    """A scipy.special function of broadcast arguments, from its partial derivatives."""
    ufunc(name, same_float(impl), doc, *partials, shape=_shape(name), **kw)


def no_gradient(op: str, argument: str) -> Callable[..., Any]:
    """The partial of an argument that has no derivative here: differentiating through it
    is an error naming it, never a silent 0."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise NotDifferentiableError(
            f"{op}: no gradient with respect to {argument} (only with respect to x)", op=op
        )

    return refuse


# --- error function and the normal distribution ---------------------------------------------

special("erf", sc.erf, "Error function.", lambda g, ans, x: g * (2.0 / SQRT_PI) * anp.exp(-x * x))
special(
    "erfc",
    sc.erfc,
    "Complementary error function 1 - erf(x), accurate for large x.",
    lambda g, ans, x: g * (-2.0 / SQRT_PI) * anp.exp(-x * x),
)
special(
    "erfinv",
    sc.erfinv,
    "Inverse of erf on (-1, 1) (±inf at ±1, nan outside).",
    lambda g, ans, x: g * (SQRT_PI / 2.0) * anp.exp(ans * ans),
)
special(
    "erfcinv",
    sc.erfcinv,
    "Inverse of erfc on (0, 2) (±inf at the ends, nan outside).",
    lambda g, ans, x: g * (-SQRT_PI / 2.0) * anp.exp(ans * ans),
)
special(
    "ndtr",
    sc.ndtr,
    "The standard normal CDF.",
    lambda g, ans, x: g * anp.exp(-0.5 * x * x) / SQRT_2PI,
)
special(
    "log_ndtr",
    sc.log_ndtr,
    "log of the standard normal CDF, accurate far in the left tail.",
    lambda g, ans, x: g * anp.exp(-0.5 * x * x - ans) / SQRT_2PI,
)
special(
    "ndtri",
    sc.ndtri,
    "Inverse of the standard normal CDF on (0, 1).",
    lambda g, ans, x: g * SQRT_2PI * anp.exp(0.5 * ans * ans),
)

# --- gamma and beta -------------------------------------------------------------------------

special("gamma", sc.gamma, "The gamma function.", lambda g, ans, x: g * ans * anp.digamma(x))
special(
    "gammaln",
    sc.gammaln,
    "log |gamma(x)|.",
    lambda g, ans, x: g * anp.digamma(x),
)
special(
    "rgamma",
    sc.rgamma,
    "1 / gamma(x) (0 at the poles of gamma).",
    lambda g, ans, x: anp.negative(g) * ans * anp.digamma(x),
)
special("gammasgn", sc.gammasgn, "The sign of gamma(x); gradient 0.", ZERO)
special(
    "digamma",
    sc.digamma,
    "The digamma function psi(x) = gamma'(x) / gamma(x).",
    lambda g, ans, x: g * anp.polygamma(1.0, x),
    aliases=("psi",),
)


def _polygamma(n: Any, x: Any) -> Any:
    """scipy.special.polygamma, elementwise over broadcast n and x (n a non-negative
    integer; nan elsewhere)."""
    n, x = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(x))
    whole = (n >= 0) & (n == np.floor(n))
    safe_n = np.where(whole, n, 0.0)
    with np.errstate(invalid="ignore"):
        out = np.where(safe_n == 0, sc.digamma(x), _polygamma_positive(safe_n, x))
    return np.where(whole, out, np.nan)[()]


def _polygamma_positive(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(-1)^(n+1) n! zeta(n + 1, x) (for n >= 1; whatever for n = 0, which is not used)."""
    sign = np.where(np.mod(n, 2) == 0, -1.0, 1.0)
    with np.errstate(over="ignore"):
        return sign * sc.gamma(n + 1.0) * sc.zeta(n + 1.0, x)


special(
    "polygamma",
    _polygamma,
    "polygamma(n, x): the n-th derivative of digamma (n a non-negative integer, or an "
    "array of them; nan for other n); no gradient in n.",
    ZERO,
    lambda g, ans, n, x: g * anp.polygamma(n + 1.0, x),
)


def _multigammaln(a: Any, d: int) -> Any:
    if np.any(np.asarray(a) <= 0.5 * (d - 1)):
        raise ValueDomainError(
            f"multigammaln: every a must be > (d - 1) / 2 = {0.5 * (d - 1)}", op="multigammaln"
        )
    return sc.multigammaln(a, d)


MAX_MULTIGAMMA_DIMENSION = 1024  # SciPy and the rule sum d terms: d bounds the work


def _check_dimension(statics: dict[str, Any]) -> None:
    d = statics["d"]
    if not 1 <= d <= MAX_MULTIGAMMA_DIMENSION:
        raise ValueDomainError(
            f"multigammaln: d must be between 1 and {MAX_MULTIGAMMA_DIMENSION}, got {d}",
            op="multigammaln",
        )


unary_with_statics(
    "multigammaln",
    same_float(_multigammaln),
    "a, d:int",
    "log of the multivariate gamma function of dimension d (every a > (d - 1) / 2).",
    lambda g, ans, a, d: g * sum(anp.digamma(a - 0.5 * j) for j in range(d)),
    shape=_shape("multigammaln"),
    check=_check_dimension,
)


def _beta_partial(first: bool) -> Callable[..., Any]:
    def partial(g: Any, ans: Any, a: Any, b: Any) -> Any:
        return g * ans * (anp.digamma(a if first else b) - anp.digamma(a + b))

    return partial


special("beta", sc.beta, "The beta function B(a, b).", _beta_partial(True), _beta_partial(False))
special(
    "betaln",
    sc.betaln,
    "log |B(a, b)|.",
    lambda g, ans, a, b: g * (anp.digamma(a) - anp.digamma(a + b)),
    lambda g, ans, a, b: g * (anp.digamma(b) - anp.digamma(a + b)),
)
special(
    "gammainc",
    sc.gammainc,
    "Regularised lower incomplete gamma P(a, x); gradient with respect to x only.",
    no_gradient("gammainc", "a"),
    lambda g, ans, a, x: g * anp.exp(anp.xlogy(a - 1.0, x) - x - anp.gammaln(a)),
)
special(
    "gammaincc",
    sc.gammaincc,
    "Regularised upper incomplete gamma Q(a, x) = 1 - P(a, x); gradient with respect to x only.",
    no_gradient("gammaincc", "a"),
    lambda g, ans, a, x: anp.negative(g) * anp.exp(anp.xlogy(a - 1.0, x) - x - anp.gammaln(a)),
)


def _betainc_dx(g: Any, ans: Any, a: Any, b: Any, x: Any) -> Any:
    log_density = anp.xlogy(a - 1.0, x) + anp.xlog1py(b - 1.0, anp.negative(x))
    return g * anp.exp(log_density - anp.betaln(a, b))


special(
    "betainc",
    sc.betainc,
    "Regularised incomplete beta I_x(a, b); gradient with respect to x only.",
    no_gradient("betainc", "a"),
    no_gradient("betainc", "b"),
    _betainc_dx,
)

# --- logistic, entropy-like products -----------------------------------------------------------

special(
    "expit",
    sc.expit,
    "The logistic function 1 / (1 + exp(-x)) (= sigmoid).",
    lambda g, ans, x: g * (ans * (1.0 - ans)),
)
special(
    "logit",
    sc.logit,
    "log(x / (1 - x)), the inverse of expit (±inf at 0 and 1, nan outside [0, 1]).",
    lambda g, ans, x: g / (x * (1.0 - x)),
)


def _xlogy_dy(shift: float) -> Callable[..., Any]:
    """g x / (y + shift), 0 where x = 0 and y + shift = 0 (JAX gives nan there)."""

    def partial(g: Any, ans: Any, x: Any, y: Any) -> Any:
        pole = anp.logical_and(x == 0, y == -shift)
        return g * (x / anp.where(pole, 1.0, y + shift))

    return partial


special(
    "xlogy",
    sc.xlogy,
    "x * log(y), 0 where x = 0 (also at y = 0).",
    lambda g, ans, x, y: g * anp.log(y),
    _xlogy_dy(0.0),
)
special(
    "xlog1py",
    sc.xlog1py,
    "x * log1p(y), 0 where x = 0 (also at y = -1).",
    lambda g, ans, x, y: g * anp.log1p(y),
    _xlogy_dy(1.0),
)

# --- Bessel functions --------------------------------------------------------------------------

special(
    "i0",
    sc.i0,
    "Modified Bessel function of the first kind, order 0.",
    lambda g, ans, x: g * anp.i1(x),
)
special(
    "i1",
    sc.i1,
    "Modified Bessel function of the first kind, order 1.",
    lambda g, ans, x: g * 0.5 * (anp.i0(x) + anp.iv(2.0, x)),
)
special(
    "iv",
    sc.iv,
    "Modified Bessel function of the first kind of real order v; gradient in x only.",
    no_gradient("iv", "v"),
    lambda g, ans, v, x: g * 0.5 * (anp.iv(v - 1.0, x) + anp.iv(v + 1.0, x)),
)


def _scaled(partial_unscaled: Callable[..., Any]) -> Callable[..., Any]:
    """The partial in x of exp(-|x|) f(x), given that of f scaled the same way:
    (exp(-|x|) f)' = exp(-|x|) f' - sign(x) exp(-|x|) f."""

    def partial(g: Any, ans: Any, *args: Any) -> Any:
        return g * (partial_unscaled(*args) - anp.sign(args[-1]) * ans)

    return partial


special(
    "i0e",
    sc.i0e,
    "exp(-|x|) i0(x).",
    _scaled(lambda x: anp.i1e(x)),
)
special(
    "i1e",
    sc.i1e,
    "exp(-|x|) i1(x).",
    _scaled(lambda x: 0.5 * (anp.i0e(x) + anp.ive(2.0, x))),
)
special(
    "ive",
    sc.ive,
    "exp(-|x|) iv(v, x); gradient in x only.",
    no_gradient("ive", "v"),
    _scaled(lambda v, x: 0.5 * (anp.ive(v - 1.0, x) + anp.ive(v + 1.0, x))),
)
special(
    "j0", sc.j0, "Bessel function of the first kind, order 0.", lambda g, ans, x: -g * anp.j1(x)
)
special(
    "j1",
    sc.j1,
    "Bessel function of the first kind, order 1.",
    lambda g, ans, x: g * 0.5 * (anp.j0(x) - anp.jv(2.0, x)),
)
special(
    "jv",
    sc.jv,
    "Bessel function of the first kind of real order v (jn: integer n); gradient in x only.",
    no_gradient("jv", "v"),
    lambda g, ans, v, x: g * 0.5 * (anp.jv(v - 1.0, x) - anp.jv(v + 1.0, x)),
    aliases=("jn",),
)
special(
    "y0", sc.y0, "Bessel function of the second kind, order 0.", lambda g, ans, x: -g * anp.y1(x)
)
special(
    "y1",
    sc.y1,
    "Bessel function of the second kind, order 1.",
    lambda g, ans, x: g * 0.5 * (anp.y0(x) - anp.yv(2.0, x)),
)
special(
    "yv",
    sc.yv,
    "Bessel function of the second kind of real order v (yn: integer n); gradient in x only.",
    no_gradient("yv", "v"),
    lambda g, ans, v, x: g * 0.5 * (anp.yv(v - 1.0, x) - anp.yv(v + 1.0, x)),
    aliases=("yn",),
)


# --- logsumexp with b= and return_sign (scipy.special.logsumexp) --------------------------------
#
# ``logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False)``, SciPy's signature.
# Without ``b`` and ``return_sign`` it is one op with its own reduction rule (the weights are
# softmax(a)). With them it is a composition of ops, so every derivative follows:
# log(sum(b exp(a - m))) + m, m the largest a where b != 0, held constant (its derivative
# cancels exactly). A negative sum is nan without ``return_sign`` (as SciPy); with it the
# answer is ``(log |sum|, sign(sum))``, the sign without a gradient. ``axis`` refers to the
# broadcast shape of a and b.


def _lse_reduce_shape(a: Any, b: Any = None, **kw: Any) -> tuple[int, ...]:
    shape = shape_of(a) if b is None else broadcast_shapes("logsumexp", shape_of(a), shape_of(b))
    return reduced_shape(shape, kw.get("axis", ()), kw.get("keepdims", False))


def _bind_logsumexp(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = ("a", "axis", "b", "keepdims", "return_sign")
    if len(args) > len(names):
        raise ValueDomainError("logsumexp: too many arguments", op="logsumexp")
    given = dict(zip(names, args, strict=False))
    for name, value in kwargs.items():
        name = "a" if name == "x" else name  # the op's argument was x before SciPy's a
        if name not in names or name in given:
            raise ValueDomainError(f"logsumexp: unexpected argument {name!r}", op="logsumexp")
        given[name] = value
    if "a" not in given:
        raise ValueDomainError("logsumexp: missing argument 'a'", op="logsumexp")
    for flag in ("keepdims", "return_sign"):
        if not isinstance(given.get(flag, False), bool | np.bool_):
            raise ValueDomainError(f"logsumexp: {flag} must be True or False", op="logsumexp")
    return given


def _weighted_logsumexp(a: Any, b: Any, axis: tuple[int, ...], keepdims: bool, sign: bool) -> Any:
    shape = broadcast_shapes("logsumexp", shape_of(a), shape_of(b))
    raw_a = np.broadcast_to(unbox_all(a), shape)
    raw_b = np.broadcast_to(unbox_all(b), shape)
    if raw_a.size:
        with np.errstate(invalid="ignore"):
            m = np.max(np.where(raw_b != 0, raw_a, -np.inf), axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0).astype(np.result_type(raw_a, np.float32))
    else:
        m = np.zeros(reduced_shape(shape, axis, True), dtype=np.result_type(raw_a, np.float32))
    total = anp.sum(b * anp.exp(a - m), axis=axis, keepdims=True)
    log_total = anp.log(anp.abs(total) if sign else total) + m
    if not keepdims:
        log_total = anp.squeeze(log_total, axis=axis)
        total = anp.squeeze(total, axis=axis)
    return (log_total, anp.sign(total)) if sign else log_total


@dataclass(eq=False)
class LogSumExpOp(Op):
    """``logsumexp``: one op without ``b``/``return_sign``, a composition with them."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        given = _bind_logsumexp(args, kwargs)
        a, b = given["a"], given.get("b")
        keepdims, sign = bool(given.get("keepdims", False)), bool(given.get("return_sign", False))
        if b is None and not sign:
            return Op.__call__(self, a, axis=given.get("axis"), keepdims=keepdims)
        if b is None:
            b = np.ones((), dtype=np.result_type(unbox_all(a), np.float32))
        axis = self._axes(a, b, given.get("axis"))
        recorder = trace.current_recorder()
        if recorder is None or sign:  # several outputs: each op records its own node
            return _weighted_logsumexp(a, b, axis, keepdims, sign)
        token = trace.set_recorder(None)  # graph metadata: one "logsumexp" node
        try:
            ans = _weighted_logsumexp(a, b, axis, keepdims, sign)
        finally:
            trace.reset_recorder(token)
        recorder.record(self, (a, b), {"axis": axis, "keepdims": keepdims}, ans)
        return ans

    def shape(self, *args: Any, **kwargs: Any) -> tuple[int, ...]:
        """The shape of the answer (of each of the two with ``return_sign``), from shapes."""
        given = _bind_logsumexp(args, kwargs)
        a, b = given["a"], given.get("b")
        axis = self._axes(a, b, given.get("axis"))
        return _lse_reduce_shape(a, b, axis=axis, keepdims=bool(given.get("keepdims", False)))

    def _axes(self, a: Any, b: Any, axis: Any) -> tuple[int, ...]:
        """``axis`` as negative axes of the broadcast shape of a and b."""
        try:
            shape = (
                shape_of(a)
                if b is None
                else broadcast_shapes("logsumexp", shape_of(a), shape_of(b))
            )
            return norm_axes(axis, len(shape), "logsumexp")
        except NUMPY_ERRORS as exc:
            raise self.error(exc, (a,) if b is None else (a, b)) from None


_lse_vjp, _lse_jvp = _reduction_rules(lambda kept, x, **_: anp.exp(x - kept))
register(
    LogSumExpOp(
        name="logsumexp",
        impl=_np_logsumexp,
        params=params("a, axis:s=None, b=None, keepdims:s=False, return_sign:s=False"),
        doc="log(sum(b * exp(a))) over axes, computed stably (scipy.special.logsumexp: "
        "b weights, return_sign gives (log|sum|, sign)).",
        shape_fn=_lse_reduce_shape,
        vjps=(_lse_vjp,),
        jvp_rule=_lse_jvp,
        prepare=prepare_axes("logsumexp", ("axis", "keepdims")),
        kind="reduction",
        cost="linear",
    )
)
