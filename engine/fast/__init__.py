"""Measured shortcuts, each in a room of its own, all behind one switch.

Every module here plugs into the core (``engine.core``) or the rules, and gives the same
answers as the plain path it replaces (the op table runs both ways):

- ``operators``: the short path of ``apply`` for first-order reverse mode, the operators'
  ``apply2``, trace-time CSE of array operators and the ``x[i]`` memo;
- ``inplace``: the backward walk's buffer ownership, sums in place, in-place rules, the
  symmetric-argument doubling and ``getitem``'s scatter-add (tables by op name);
- ``basis``: the symbolic identity a forward-mode Jacobian pushes, and the ops that take
  unit vectors without multiplying (``BASIS_JVP``);
- ``rules``: micro-tuned rule helpers and impls (Python operators on NumPy scalars, views
  under a summed loss, products into a rule's own temporary).

``AUTODIFF_ENGINE_FAST=0`` (read at import) turns them all off; ``set_enabled`` and the
context manager ``fast_mode`` flip them in-process (tests). The figures that justified
each shortcut are in ``bench/PROFILE.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.fast import switch


def enabled() -> bool:
    """Whether the shortcuts are on."""
    return switch.ON


def set_enabled(on: bool) -> None:
    """Turn every shortcut on or off (process-wide)."""
    from engine.fast import basis, inplace, operators, rules

    switch.ON = on
    for module in (operators, inplace, basis, rules):
        module.install() if on else module.uninstall()


@contextmanager
def fast_mode(on: bool) -> Iterator[None]:
    """Run the block with the shortcuts on or off, then restore the previous setting."""
    before = switch.ON
    set_enabled(on)
    try:
        yield
    finally:
        set_enabled(before)
