"""HIPS autograd's API over our engine (``engine.transforms``), for running autograd's own
tests against the engine. What has no counterpart raises ``ShimUnsupported`` when used."""

from __future__ import annotations

import builtins as _b
from typing import Any

import numpy as _np

import engine as _ad
from autograd._shim import ShimUnsupported, unsupported
from autograd.wrap_util import unary_to_nary  # noqa: F401

__all__ = ["ShimUnsupported"]


def _sub(args: tuple, argnum: Any, x: Any) -> list:
    args = _b.list(args)
    if _b.isinstance(argnum, int):
        args[argnum] = x
    else:
        for i, xi in zip(argnum, x, strict=True):
            args[i] = xi
    return args


def _unary(fun: Any, args: tuple, kwargs: dict, argnum: Any):
    """``fun`` as a function of its ``argnum`` argument(s) only, and that argument."""
    if _b.isinstance(argnum, int):
        return (lambda x: fun(*_sub(args, argnum, x), **kwargs)), args[argnum]
    return (lambda *xs: fun(*_sub(args, argnum, xs), **kwargs)), _b.tuple(args[i] for i in argnum)


# a tuple of traced values is a plain tuple here (the engine takes and returns tuples)
tuple = _b.tuple


def _containers(args: Any, argnum: Any) -> None:
    """Refuse a tuple, list or dict argument: autograd differentiates it as a container."""
    nums = [argnum] if _b.isinstance(argnum, int) else argnum
    for i in nums:
        x = args[i]
        if _b.isinstance(x, (_b.dict, _b.list, _b.tuple)):  # autograd: a container
            raise ShimUnsupported(
                "differentiating a container of arrays (autograd.list/tuple/dict)"
            )


def grad(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        _containers(args, argnum)
        return _ad.grad(lambda *a: fun(*a, **kw), argnums=_nums(argnum))(*args)

    return at


def _nums(argnum: Any) -> Any:
    return argnum if _b.isinstance(argnum, int) else _b.tuple(argnum)


def value_and_grad(fun: Any, argnum: Any = 0) -> Any:
    return lambda *args, **kw: _ad.value_and_grad(lambda *a: fun(*a, **kw), argnums=_nums(argnum))(
        *args
    )


def holomorphic_grad(fun: Any, argnum: Any = 0) -> Any:
    return lambda *args, **kw: _ad.grad(
        lambda *a: fun(*a, **kw), argnums=_nums(argnum), holomorphic=True
    )(*args)


def make_vjp(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        g, x = _unary(fun, args, kw, argnum)
        if _b.isinstance(argnum, int):
            value, pull = _ad.vjp(g, x)
            return (lambda ct: pull(ct)[0]), value
        value, pull = _ad.vjp(g, *x)
        return pull, value

    return at


def make_jvp(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        g, x = _unary(fun, args, kw, argnum)
        if _b.isinstance(argnum, int):
            return lambda v: _ad.jvp(g, [x], [v])
        return lambda v: _ad.jvp(g, _b.list(x), _b.list(v))

    return at


def elementwise_grad(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        pull, value = make_vjp(fun, argnum)(*args, **kw)
        return pull(_np.ones_like(_ad.transforms.as_array(value)))

    return at


vector_jacobian_product = None  # set below


def _vjp_product(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        *rest, v = args
        pull, value = make_vjp(fun, argnum)(*rest, **kw)
        if _np.ndim(v) < _np.ndim(_ad.transforms.as_array(value)):
            raise ShimUnsupported("a tensor-Jacobian product contracting over leading axes only")
        return pull(v)

    return at


vector_jacobian_product = _vjp_product
tensor_jacobian_product = _vjp_product


def deriv(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        x = args[argnum]
        return make_jvp(fun, argnum)(*args, **kw)(_np.ones_like(_np.asarray(x)))[1]

    return at


def jacobian(fun: Any, argnum: Any = 0) -> Any:
    return lambda *args, **kw: _ad.jacobian(lambda *a: fun(*a, **kw), argnums=_nums(argnum))(*args)


def hessian(fun: Any, argnum: Any = 0) -> Any:
    return lambda *args, **kw: _ad.hessian(lambda *a: fun(*a, **kw), argnums=_nums(argnum))(*args)


def hessian_tensor_product(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        *rest, v = args
        g = grad(fun, argnum)
        return grad(lambda *a: _ad.numpy.sum(g(*a, **kw) * v), argnum)(*rest)

    return at


hessian_vector_product = hessian_tensor_product


def make_hvp(fun: Any, argnum: Any = 0) -> Any:
    def at(*args: Any, **kw: Any) -> Any:
        return (lambda v: hessian_tensor_product(fun, argnum)(*args, v, **kw)), fun(*args, **kw)

    return at


# autograd's containers of boxes, its own isinstance, and friends: no counterpart here
for _name in (
    "grad_named",
    "multigrad_dict",
    "checkpoint",
    "make_ggnvp",
    "grad_and_aux",
    "primitive",
    "dict",
    "list",
    "isinstance",
    "type",
):
    globals()[_name] = unsupported(f"autograd.{_name}")
