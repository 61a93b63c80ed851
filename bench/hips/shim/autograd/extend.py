from __future__ import annotations

from typing import Any

from autograd._shim import unsupported
from autograd.tracer import primitive  # noqa: F401


def defvjp(*args: Any, **kwargs: Any) -> None:
    """No-op: the primitive it defines for is unsupported anyway."""


defjvp = defvjp
defvjp_argnum = defvjp
defjvp_argnum = defvjp
def_linear = defvjp
vspace = unsupported("autograd.extend.vspace")
