"""Elementwise ops: each row gives partial derivatives; both modes follow from them.

A partial is ``d(g, ans, *args) -> g * (d ans / d arg)``, linear in ``g`` and
written in engine ops (taking ``g`` lets a rule save a pass, e.g. ``g / x``
for log); ``ONE``/``NEG`` stand for the constants 1 and -1, and ``ZERO`` for
an argument through which no gradient flows.
Reverse: ``unbroadcast(d(g, ...))``. Forward: ``sum_i d(align(t_i), ...)``.
Conventions at kinks follow PyTorch: relu'(0) = 0, abs'(0) = 0, ties in
maximum/minimum share the gradient evenly, clip passes the gradient on its
closed interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.fast.rules import negated, times, times_new
from engine.ops._util import (
    align,
    broadcast_shapes,
    defop,
    fill_tangent,
    sum_tangents,
    unbroadcast,
)
from engine.ops.kinds import def_custom, def_nondiff
from engine.registry import shape_of

ONE, NEG, ZERO = "one", "neg", "zero"
Partial = Callable[..., Any] | str

LN2, LN10 = float(np.log(2.0)), float(np.log(10.0))


def _vjp(i: int, d: Partial, nargs: int) -> Callable[..., Any] | None:
    if d == ZERO:
        return None
    partial: Callable[..., Any] = {ONE: _identity, NEG: _negate}.get(d, d)  # type: ignore[arg-type]

    def fit(gi: Any, x: Any, ans: Any) -> Any:
        """``gi`` summed down to ``x``'s shape (it may be broadcast or carry batch axes)."""
        shape = getattr(x, "shape", ())
        if gi.shape == shape:  # the common case: nothing was broadcast, no batch axes
            return gi
        return unbroadcast(gi, shape, len(shape_of(ans)))

    # One closure per arity and argument: the rule runs once per edge of every backward
    # pass. Each first tests the common case inline (same type and shape as its argument:
    # nothing broadcast, no batch axes), which costs less than calling ``fit``.
    if d == ONE and nargs == 2 and i == 0:
        return lambda g, ans, x, y: (
            g if type(g) is type(x) and g.shape == x.shape else fit(g, x, ans)
        )
    if d == ONE and nargs == 2:
        return lambda g, ans, x, y: (
            g if type(g) is type(y) and g.shape == y.shape else fit(g, y, ans)
        )
    if nargs == 1:
        return lambda g, ans, x: fit(partial(g, ans, x), x, ans)
    if nargs == 2 and i == 0:

        def vjp_x(g: Any, ans: Any, x: Any, y: Any) -> Any:
            gi = partial(g, ans, x, y)
            return gi if type(gi) is type(x) and gi.shape == x.shape else fit(gi, x, ans)

        return vjp_x
    if nargs == 2:

        def vjp_y(g: Any, ans: Any, x: Any, y: Any) -> Any:
            gi = partial(g, ans, x, y)
            return gi if type(gi) is type(y) and gi.shape == y.shape else fit(gi, y, ans)

        return vjp_y
    return lambda g, ans, *args: fit(partial(g, ans, *args), args[i], ans)


def _identity(g: Any, *_: Any) -> Any:
    return g


def _negate(g: Any, *_: Any) -> Any:
    return anp.negative(g)


def _jvp(partials: tuple[Partial, ...]) -> Callable[..., Any]:
    def jvp(tangents: list[Any], ans: Any, *args: Any) -> Any:
        ans_shape = shape_of(ans)
        terms = []
        batch: tuple[int, ...] = ()
        for t, d, x in zip(tangents, partials, args, strict=False):
            if t is None or d == ZERO:
                continue
            x_ndim = len(shape_of(x))
            batch = shape_of(t)[: len(shape_of(t)) - x_ndim]
            t = align(t, x_ndim, ans_shape)
            if d == ONE:
                terms.append(t)
            elif d == NEG:
                terms.append(anp.negative(t))
            else:
                terms.append(d(t, ans, *args))  # type: ignore[operator]
        if not terms:
            return None
        return fill_tangent(sum_tangents(terms), batch, ans_shape)

    return jvp


def _shape(name: str) -> Callable[..., tuple[int, ...]]:
    def shape(*args: Any) -> tuple[int, ...]:
        return broadcast_shapes(name, *(shape_of(a) for a in args))

    return shape


def elementwise(
    name: str,
    impl: Callable[..., Any],
    doc: str,
    *partials: Partial,
) -> None:
    """Register an elementwise op from its partial derivatives (one per argument)."""
    spec = {1: "x", 2: "x1, x2", 3: "x, a_min, a_max"}[len(partials)]
    vjps = [_vjp(i, d, len(partials)) for i, d in enumerate(partials)]
    defop(
        name, impl, spec, doc, _shape(name), vjps, _jvp(partials), cost="linear", kind="elementwise"
    )


def comparison(name: str, impl: Callable[..., Any], doc: str, nargs: int = 2) -> None:
    """Register a non-differentiable elementwise op (its result is a constant)."""
    def_nondiff(name, impl, "x1, x2" if nargs == 2 else "x", doc, _shape(name), cost="linear")


# --- arithmetic -----------------------------------------------------------------------

elementwise(
    "add",
    np.add,
    "x1 + x2, elementwise with broadcasting.",
    ONE,
    ONE,
)


elementwise(
    "subtract",
    np.subtract,
    "x1 - x2, elementwise.",
    ONE,
    NEG,
)
elementwise(
    "multiply",
    np.multiply,
    "x1 * x2, elementwise.",
    lambda g, ans, x, y: times(g, y),
    lambda g, ans, x, y: times(g, x),
)
elementwise(
    "divide",
    np.divide,
    "x1 / x2, elementwise (true division).",
    lambda g, ans, x, y: g / y,
    lambda g, ans, x, y: anp.negative(g * ans) / y,
)


def _power_dx(g: Any, ans: Any, x: Any, y: Any) -> Any:
    if type(y) is float or type(y) is int or type(y) is np.float64:  # a constant (not bool)
        if y == 2:
            return times_new(g, 2.0 * x)
        if y == 1:
            return g
        if y == 0:  # x ** 0 is 1 everywhere, also at x = 0 (0 * 0 ** -1 would be nan)
            return g * 0.0
        return times_new(g, y * x ** (y - 1.0))
    # PyTorch: zero where the exponent is zero, whatever the base. The base is made safe
    # there too: the branch not taken must stay finite, or its own derivative (second
    # order) is 0 * inf = nan.
    zero = y == 0
    return g * anp.where(zero, 0.0, y * anp.where(zero, 1.0, x) ** (y - 1.0))


def _power_dy(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # PyTorch: zero where the base is zero and the exponent non-negative (no log(0) nan).
    # ``safe ** y`` rather than ``ans``: at x = 0 the branch not taken stays finite in its
    # derivatives too (ans' derivative in x, y x ** (y - 1), is inf there for y < 1).
    base_zero = x == 0
    safe = anp.where(base_zero, 1.0, x)
    # (a complex exponent: its real part decides, as 0 ** y is 0 for Re(y) > 0)
    y_real = anp.real(y) if np.iscomplexobj(y) else y
    return g * anp.where(base_zero & (y_real >= 0), 0.0, safe**y * anp.log(safe))


# ``x ** 2`` on an array is NumPy's square (half the time of np.power's general loop)
elementwise(
    "power",
    np.power,
    "x1 ** x2, elementwise.",
    _power_dx,
    _power_dy,
)
elementwise("negative", np.negative, "-x, elementwise.", NEG)
elementwise("floor_divide", np.floor_divide, "x1 // x2, elementwise; gradient 0.", ZERO, ZERO)
elementwise(
    "remainder",
    np.remainder,
    "x1 % x2 with the sign of x2; gradient 1 in x1 and -floor(x1/x2) in x2.",
    ONE,
    lambda g, ans, x, y: anp.negative(g * anp.floor_divide(x, y)),
)
# abs: engine/ops/complex_numbers.py (its rule for complex x is not g * sign(x))
elementwise("sign", np.sign, "The sign of x (-1, 0 or 1); gradient 0.", ZERO)

# --- powers, exponentials, logarithms ----------------------------------------------------

elementwise("sqrt", np.sqrt, "Square root.", lambda g, ans, x: times_new(g, 0.5 / ans))
elementwise(
    "square",
    np.square,
    "x ** 2.",
    lambda g, ans, x: times_new(g, 2.0 * x),
)
elementwise(
    "exp",
    np.exp,
    "e ** x.",
    lambda g, ans, x: times(g, ans),
)
elementwise("expm1", np.expm1, "exp(x) - 1, accurate near 0.", lambda g, ans, x: g * (ans + 1.0))
elementwise(
    "log",
    np.log,
    "Natural logarithm.",
    lambda g, ans, x: g / x,
)
elementwise("log1p", np.log1p, "log(1 + x), accurate near 0.", lambda g, ans, x: g / (x + 1.0))
elementwise("log2", np.log2, "Base-2 logarithm.", lambda g, ans, x: g / (x * LN2))
elementwise("log10", np.log10, "Base-10 logarithm.", lambda g, ans, x: g / (x * LN10))

# --- trigonometric and hyperbolic -----------------------------------------------------

elementwise("sin", np.sin, "Sine.", lambda g, ans, x: times_new(g, anp.cos(x)))
elementwise("cos", np.cos, "Cosine.", lambda g, ans, x: times_new(g, negated(anp.sin(x))))
elementwise("tan", np.tan, "Tangent.", lambda g, ans, x: times_new(g, 1.0 + ans * ans))
elementwise("arcsin", np.arcsin, "Inverse sine.", lambda g, ans, x: g / anp.sqrt(1.0 - x * x))
elementwise(
    "arccos",
    np.arccos,
    "Inverse cosine.",
    lambda g, ans, x: anp.negative(g) / anp.sqrt(1.0 - x * x),
)
elementwise("arctan", np.arctan, "Inverse tangent.", lambda g, ans, x: g / (1.0 + x * x))
elementwise("sinh", np.sinh, "Hyperbolic sine.", lambda g, ans, x: times_new(g, anp.cosh(x)))
elementwise("cosh", np.cosh, "Hyperbolic cosine.", lambda g, ans, x: times_new(g, anp.sinh(x)))
elementwise("tanh", np.tanh, "Hyperbolic tangent.", lambda g, ans, x: times_new(g, 1.0 - ans * ans))
elementwise(
    "arctan2",
    np.arctan2,
    "Angle of the point (x2, x1): arctan(x1 / x2) in the right quadrant.",
    lambda g, ans, y, x: g * (x / (x * x + y * y)),
    lambda g, ans, y, x: g * (anp.negative(y) / (x * x + y * y)),
)

# --- neural-net activations -------------------------------------------------------------


def _sigmoid(x: Any) -> Any:
    return 0.5 * np.tanh(0.5 * x) + 0.5  # stable for large |x|


elementwise(
    "sigmoid",
    _sigmoid,
    "Logistic function 1 / (1 + exp(-x)).",
    lambda g, ans, x: g * (ans * (1.0 - ans)),
)
elementwise(
    "relu",
    lambda x: np.maximum(x, 0.0),
    "max(x, 0); relu'(0) = 0.",
    lambda g, ans, x: anp.where(x > 0, g, 0.0),
)
elementwise(
    "softplus",
    lambda x: np.logaddexp(0.0, x),
    "log(1 + exp(x)), computed stably.",
    lambda g, ans, x: g * anp.sigmoid(x),
)


def _share(g: Any, wins: Any, tie: Any) -> Any:
    """All of g where this argument wins, half of it on a tie (PyTorch's convention)."""
    return anp.where(wins, g, anp.where(tie, 0.5 * g, 0.0))


elementwise(
    "maximum",
    np.maximum,
    "Elementwise maximum; ties share the gradient evenly.",
    lambda g, ans, x, y: _share(g, x > y, x == y),
    lambda g, ans, x, y: _share(g, y > x, x == y),
)
elementwise(
    "minimum",
    np.minimum,
    "Elementwise minimum; ties share the gradient evenly.",
    lambda g, ans, x, y: _share(g, x < y, x == y),
    lambda g, ans, x, y: _share(g, y < x, x == y),
)
elementwise(
    "clip",
    np.clip,
    "Limit x to [a_min, a_max]; the gradient passes where a_min <= x <= a_max.",
    lambda g, ans, x, lo, hi: anp.where((x >= lo) & (x <= hi), g, 0.0),
    lambda g, ans, x, lo, hi: anp.where(x < lo, g, 0.0),
    lambda g, ans, x, lo, hi: anp.where(x > hi, g, 0.0),
)

# --- where: the gradient goes to the branch that was taken ----------------------------------


def _where_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, cond: Any, x: Any, y: Any) -> Any:
        chosen = anp.where(cond, g, 0.0) if i == 1 else anp.where(cond, 0.0, g)
        return unbroadcast(chosen, shape_of((x, y)[i - 1]), len(shape_of(ans)))

    return vjp


def _where_jvp(tangents: list[Any], ans: Any, cond: Any, x: Any, y: Any) -> Any:
    if tangents[1] is None and tangents[2] is None:  # only the condition is traced: no
        return None  # derivative flows through it (and a zero without batch axes is wrong)
    shape = shape_of(ans)
    batch: tuple[int, ...] = ()
    branches: list[Any] = [0.0, 0.0]
    # The condition gets no derivative, but its tangent (a float condition that is traced,
    # as in a Hessian of where(x, x, 0)) still says the batch: the answer's tangent has it.
    for t, v in zip(tangents, (cond, x, y), strict=True):
        if t is not None:
            batch = shape_of(t)[: len(shape_of(t)) - len(shape_of(v))]
    for i, (t, v) in enumerate(zip(tangents[1:], (x, y), strict=True)):
        if t is not None:
            branches[i] = align(t, len(shape_of(v)), shape)
    return fill_tangent(anp.where(cond, branches[0], branches[1]), batch, shape)


def_custom(
    "where",
    np.where,
    "condition, x, y",
    "Elements of x where condition is true, else of y.",
    _shape("where"),
    vjps=[None, _where_vjp(1), _where_vjp(2)],
    jvp=_where_jvp,
    cost="linear",
)

# --- comparisons and logic (no gradient) ------------------------------------------------

comparison("equal", np.equal, "x1 == x2, elementwise (no gradient).")
comparison("not_equal", np.not_equal, "x1 != x2, elementwise (no gradient).")
comparison("less", np.less, "x1 < x2, elementwise (no gradient).")
comparison("less_equal", np.less_equal, "x1 <= x2, elementwise (no gradient).")
comparison("greater", np.greater, "x1 > x2, elementwise (no gradient).")
comparison("greater_equal", np.greater_equal, "x1 >= x2, elementwise (no gradient).")
comparison("logical_and", np.logical_and, "x1 and x2, elementwise (no gradient).")
comparison("logical_or", np.logical_or, "x1 or x2, elementwise (no gradient).")
comparison("logical_not", np.logical_not, "not x, elementwise (no gradient).", nargs=1)
