"""autograd.wrap_util's ``unary_to_nary`` (plain Python: a unary transform made n-ary)."""

from __future__ import annotations

from functools import wraps
from typing import Any


def _subvals(args: tuple, pairs: Any) -> tuple:
    out = list(args)
    for i, v in pairs:
        out[i] = v
    return tuple(out)


def unary_to_nary(unary_operator: Any) -> Any:
    @wraps(unary_operator)
    def nary_operator(fun: Any, argnum: Any = 0, *op_args: Any, **op_kwargs: Any) -> Any:
        def nary_f(*args: Any, **kwargs: Any) -> Any:
            def unary_f(x: Any) -> Any:
                pairs = [(argnum, x)] if isinstance(argnum, int) else zip(argnum, x, strict=True)
                return fun(*_subvals(args, pairs), **kwargs)

            unary_f.__name__ = getattr(fun, "__name__", "f")
            x = args[argnum] if isinstance(argnum, int) else tuple(args[i] for i in argnum)
            return unary_operator(unary_f, x, *op_args, **op_kwargs)

        return nary_f

    return nary_operator


def get_name(f: Any) -> str:
    return getattr(f, "__name__", "[unknown name]")
