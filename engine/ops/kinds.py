"""Rule kinds: helpers that write an op's rules from what kind of function it is.

- ``def_linear``: an op linear in its one array argument. Its forward rule is the op
  itself applied to the tangent (which may carry leading batch axes, so the op must act
  on the trailing axes: ``linear_jvp``); its reverse rule is its transpose, given.
(``elementwise.elementwise`` is the elementwise kind: partial derivatives, both modes.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.ops._util import defop, linear_jvp
from engine.registry import Op


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
        name, impl, spec, doc, shape, vjps=[transpose], jvp=jvp, prepare=prepare, cost=cost
    )
