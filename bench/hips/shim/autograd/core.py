"""autograd.core's unary ``make_vjp(fun, x)`` over the engine; vspace has no counterpart."""

from __future__ import annotations

from typing import Any

import engine as _ad
from autograd._shim import unsupported


def make_vjp(fun: Any, x: Any) -> Any:
    value, pull = _ad.vjp(fun, x)
    return (lambda ct: pull(ct)[0]), value


def make_jvp(fun: Any, x: Any) -> Any:
    return lambda v: _ad.jvp(fun, [x], [v])


vspace = unsupported("autograd.core.vspace")
primitive_vjps = {}
