"""Rule kinds: helpers that write an op's rules from what kind of function it is.

- ``def_linear``: an op linear in its one array argument. Its forward rule is the op
  itself applied to the tangent (which may carry leading batch axes, so the op must act
  on the trailing axes: ``linear_jvp``); its reverse rule is its transpose, given.
- ``def_bilinear``: an op linear in each of its two array arguments (matmul, dot, inner,
  outer, tensordot). Its forward rule is the product rule, ``op(da, b) + op(a, db)``, with
  the op given as the two products of a batch-prefixed tangent with the other operand; its
  reverse rules are its two transposes, given.
- ``def_reduction``: an op that reduces over static axes, with its reverse rule (the
  cotangent broadcast back, weighted) and forward rule (the weighted tangent summed);
  ``reductions.reduction`` writes both from the weights.
- ``def_nondiff``: an op without a gradient (listed in ``registry.NONDIFF``).
- ``def_custom``: an op whose rules are written by hand, one reverse rule per array
  argument and a forward rule (decompositions, indexing, joins...).
- ``def_composite``: an op written as a composition of other ops (``ComposedOp``: the
  linear algebra of ``svd``, ``qr``, ``matrix_power``...; ``sort``, ``quantile``,
  ``cumsum``...; ``vstack``, ``split``, ``pad``...); it has no rules of its own, its
  derivatives of any order in both modes are those of the ops it is made of.
(``elementwise.elementwise`` is the elementwise kind: partial derivatives, both modes.)
Every registered op is declared through one of them (``Op.kind``, checked by ``register``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.core import trace
from engine.core.trace import Box
from engine.ops._util import PerArgument, Rule, defop, linear_jvp, sum_tangents
from engine.registry import NUMPY_ERRORS, VARARGS, Op, params, register, stack_sequences


def def_linear(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    transpose: Callable[..., Any],
    prepare: Any = None,
    cost: str = "linear",
) -> Op:
    """Register an op linear in its array argument, from its transpose
    ``transpose(g, ans, x, **statics)`` (``g`` may carry leading batch axes). The op must
    act on trailing axes (axes normalised negative), so that it maps a batch-prefixed
    tangent through unchanged."""
    jvp = linear_jvp(name)
    return defop(
        name,
        impl,
        spec,
        doc,
        shape,
        vjps=[transpose],
        jvp=jvp,
        prepare=prepare,
        cost=cost,
        kind="linear",
    )


def def_bilinear(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    transposes: tuple[Callable[..., Any], Callable[..., Any]],
    products: tuple[Callable[..., Any], Callable[..., Any]],
    prepare: Any = None,
    cost: str = "contraction",
) -> Op:
    """Register an op bilinear in its two array arguments ``a`` and ``b``.

    ``transposes`` are its reverse rules, ``transpose(g, ans, a, b, **statics)``, one per
    argument (``g`` may carry leading batch axes). ``products`` are the op with a tangent
    in the first or the second slot: ``left(ta, ans, a, b, **statics)`` is ``op(ta, b)``
    and ``right(tb, ans, a, b, **statics)`` is ``op(a, tb)``, the tangent carrying leading
    batch axes that the result keeps. The forward rule is their sum (the product rule)."""
    left, right = products

    def jvp(tangents: list[Any], ans: Any, a: Any, b: Any, **statics: Any) -> Any:
        ta, tb = tangents
        return sum_tangents(
            [
                None if ta is None else left(ta, ans, a, b, **statics),
                None if tb is None else right(tb, ans, a, b, **statics),
            ]
        )

    return defop(
        name,
        impl,
        spec,
        doc,
        shape,
        vjps=list(transposes),
        jvp=jvp,
        prepare=prepare,
        cost=cost,
        kind="bilinear",
    )


def def_reduction(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    vjp: Rule,
    jvp: Rule,
    prepare: Any = None,
    cost: str = "linear",
) -> Op:
    """Register a reduction over static axes from its reverse rule ``vjp`` (one array
    argument) and its forward rule ``jvp``."""
    return defop(
        name, impl, spec, doc, shape, [vjp], jvp, prepare=prepare, cost=cost, kind="reduction"
    )


def def_nondiff(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    prepare: Any = None,
    aliases: tuple[str, ...] = (),
    cost: str = "decomposition",
) -> Op:
    """Register an op without a gradient; its name must be in ``registry.NONDIFF``."""
    return defop(
        name, impl, spec, doc, shape, prepare=prepare, aliases=aliases, cost=cost, kind="nondiff"
    )


def def_custom(
    name: str,
    impl: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    vjps: Sequence[Rule | None] | PerArgument,
    jvp: Rule | None,
    prepare: Any = None,
    aliases: tuple[str, ...] = (),
    cost: str = "decomposition",
) -> Op:
    """Register an op with hand-written rules: a reverse rule per array argument (None for
    one that takes no gradient) and a forward rule."""
    return defop(
        name,
        impl,
        spec,
        doc,
        shape,
        vjps,
        jvp,
        prepare=prepare,
        aliases=aliases,
        cost=cost,
        kind="custom",
    )


@dataclass(eq=False)
class ComposedOp(Op):
    """An op computed by ``compose(*args, **statics)``, a function of other registered ops
    (``Op.kind == "composite"``, or ``"nondiff"`` for one whose results are constants).

    It has no rules of its own: its derivatives of any order, in both modes, with batched
    tangents and cotangents, are those of the ops it calls. A call:

    1. stacks a list of traced values given as an array (``kron([x, y], b)``, a list is an
       array, as in ``Op.__call__``);
    2. binds array arguments given by name (and a ``*args`` parameter given by name,
       ``meshgrid(xi=[x, y])``), then runs ``prepare`` (statics checked and normalised);
    3. runs the op's own shape function before the body, so a bad call is this op's error
       (not one of a part's) and nothing is computed for it;
    4. runs the body with the graph recorder off and records one node per result under
       this op's name (the parts are its implementation, as a rule's ops are). A result
       that is one of the arguments (``ravel`` of a vector) records nothing.

    NumPy's errors (``NUMPY_ERRORS``) anywhere in it are this op's typed error.
    ``several``: it answers a tuple of results (``svd``, ``split``), and its shape
    function gives the shape of its largest result or of the results stacked, which is
    what the size check needs."""

    compose: Callable[..., Any] | None = None
    several: bool = False

    def __call__(self, *given: Any, **given_kw: Any) -> Any:
        stacked = stack_sequences(self, given)
        args, kwargs = (given if stacked is None else stacked), given_kw
        try:
            if kwargs:
                args, kwargs = self.bind(*self.varargs_by_name(args, kwargs))
            if self.prepare is not None:
                args, kwargs = self.prepare(args, kwargs)
            self.shape_fn(*args, **kwargs)
        except NUMPY_ERRORS as exc:
            raise self.error(exc, args) from None
        recorder = trace.current_recorder()
        if recorder is None:
            return self._run(args, kwargs)
        token = trace.set_recorder(None)
        try:
            ans = self._run(args, kwargs)
        finally:
            trace.reset_recorder(token)
        for result in ans if isinstance(ans, tuple | list) else (ans,):
            if isinstance(result, Box | np.ndarray | np.generic) and not any(
                result is a for a in args
            ):
                recorder.record(self, args, kwargs, result)
        return ans

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        assert self.compose is not None
        try:
            return self.compose(*args, **kwargs)
        except NUMPY_ERRORS as exc:
            raise self.error(exc, args) from None

    def varargs_by_name(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``meshgrid(xi=[x, y])`` as ``meshgrid(x, y)`` (einsum takes ``operands=`` too)."""
        for p in self.params:
            if p.kind == VARARGS and p.name in kwargs:
                kwargs = dict(kwargs)
                return (*args, *kwargs.pop(p.name)), kwargs
        return args, kwargs


def def_composite(
    name: str,
    compose: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    prepare: Any = None,
    *,
    impl: Callable[..., Any] | None = None,
    several: bool = False,
    differentiable: bool = True,
    aliases: tuple[str, ...] = (),
    cost: str = "linear",
    defaults: dict[str, Any] | None = None,
) -> Op:
    """Register an op written as ``compose(*args, **statics)``, a function of other ops (on
    plain arrays it computes the NumPy function too; ``impl``, the NumPy function it agrees
    with, defaults to it). ``shape`` gives the shape of its result (of its largest result,
    or its results stacked, for ``several``) from the arguments' shapes and statics alone:
    the size check refuses a result over the limit before anything runs.
    ``differentiable=False`` for one whose results are constants (index arrays; its name
    must be in ``registry.NONDIFF``). ``defaults``: the defaults a spec string cannot spell
    (a tuple such as rot90's ``axes=(0, 1)``)."""
    signature = tuple(
        replace(p, default=defaults[p.name]) if defaults and p.name in defaults else p
        for p in params(spec)
    )
    op = ComposedOp(
        name=name,
        impl=compose if impl is None else impl,
        params=signature,
        doc=doc,
        shape_fn=shape,
        differentiable=differentiable,
        prepare=prepare,
        aliases=aliases,
        cost=cost,
        kind="composite" if differentiable else "nondiff",
        compose=compose,
        several=several,
    )
    return register(op)
