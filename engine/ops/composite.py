"""Composite ops: an op written as a composition of other registered ops.

``vstack``, ``split``, ``meshgrid``, ``moveaxis``... are NumPy functions built, in
NumPy itself, from a few primitives (``concatenate``, slicing, ``reshape``,
``transpose``, ``broadcast_to``). Here too: a composite op's body calls engine ops, so
its derivatives in both modes and to any order, with batched tangents and cotangents,
are those of the ops it calls (each records its own node in graph metadata); it has no
rules of its own (``Op.kind == "composite"``).

A composite op still has a signature (the language binds calls against it, ``GET /ops``
lists it) and a shape function, which the interpreter calls before the body runs: a
result over the size limit is refused from shapes alone, before any memory is taken.
An op that answers several arrays (``split``, ``meshgrid``, ``atleast_1d(a, b)``)
returns a tuple; its shape function gives the shape of its results stacked (or of all
their elements in a row), which is what the size check needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import AutodiffError
from engine.registry import NUMPY_ERRORS, VARARGS, Op, params, register


@dataclass(eq=False)
class Composite(Op):
    """An op whose body calls other ops (see the module's docstring)."""

    body: Callable[..., Any] | None = None

    def __call__(self, *given: Any, **given_kw: Any) -> Any:
        args, kwargs = given, given_kw
        if kwargs:
            args, kwargs = self.bind(*self.varargs_by_name(args, kwargs))
        if self.prepare is not None:
            args, kwargs = self.prepare(args, kwargs)
        try:
            self.shape_fn(*args, **kwargs)  # the op's own error, not one of a part's
        except AutodiffError:
            raise
        except NUMPY_ERRORS as exc:
            raise self.error(exc, args) from None
        assert self.body is not None
        return self.body(*args, **kwargs)

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
    body: Callable[..., Any],
    spec: str,
    doc: str,
    shape: Callable[..., tuple[int, ...]],
    prepare: Any = None,
    differentiable: bool = True,
    aliases: tuple[str, ...] = (),
    cost: str = "linear",
    defaults: dict[str, Any] | None = None,
) -> Op:
    """Register a composite op. ``body(*args, **statics)`` computes it with engine ops
    (on plain arrays it is the NumPy function too); ``shape`` gives the result's shape
    from the arguments' shapes; ``differentiable=False`` for one whose results are
    constants (index arrays; its name must be in ``registry.NONDIFF``). ``defaults``: the
    defaults a spec string cannot spell (a tuple such as rot90's ``axes=(0, 1)``)."""
    signature = tuple(
        replace(p, default=defaults[p.name]) if defaults and p.name in defaults else p
        for p in params(spec)
    )
    return register(
        Composite(
            name=name,
            impl=body,
            params=signature,
            doc=doc,
            shape_fn=shape,
            differentiable=differentiable,
            prepare=prepare,
            aliases=aliases,
            cost=cost,
            kind="composite" if differentiable else "nondiff",
            body=body,
        )
    )
