"""Static-argument kinds (engine/statics.py): checked and normalised once by the registry."""

from __future__ import annotations

import numpy as np
import pytest

import engine.numpy as anp
from engine.errors import ShapeError, ValueDomainError
from engine.registry import OPS
from engine.statics import STATIC_KINDS

X = np.arange(6.0).reshape(2, 1, 3)


def test_every_static_kind_in_a_spec_is_known() -> None:
    used = {p.static_kind for op in OPS.values() for p in op.params if p.static_kind}
    assert used <= STATIC_KINDS.keys()
    assert {"axis", "axes", "new_axes", "unit_axes", "shape", "new_shape", "perm"} <= used


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("flip", {"axis": (0, -1)}),
        ("swapaxes", {"axis1": 0, "axis2": -1}),
        ("expand_dims", {"axis": (0, 2)}),
        ("squeeze", {"axis": 1}),
        ("reshape", {"shape": (3, -1)}),
        ("transpose", {"axes": (2, 0, 1)}),
        ("broadcast_to", {"shape": (4, 2, 5, 3)}),
        ("tile", {"reps": (2,)}),
    ],
)
def test_kinds_give_numpys_answer_by_position_and_keyword(call: str, kwargs: dict) -> None:
    want = getattr(np, call)(X, *kwargs.values())
    np.testing.assert_array_equal(OPS[call](X, *kwargs.values()), want)
    np.testing.assert_array_equal(OPS[call](X, **kwargs), want)


def test_axes_reach_the_rules_negative() -> None:
    _, statics = OPS["flip"].prepare((X,), {"axis": (0, 2)})
    assert statics == {"axis": (-3, -1)}
    _, statics = OPS["squeeze"].prepare((X,), {})
    assert statics == {"axis": (-2,)}


@pytest.mark.parametrize(
    ("thunk", "error", "message"),
    [
        (lambda: anp.swapaxes(X, 0, 5), ValueDomainError, "swapaxes: axis 5 is out of bounds"),
        (lambda: anp.flip(X, (0, 0)), ValueDomainError, r"flip: repeated axis in \(0, 0\)"),
        (lambda: anp.squeeze(X, 0), ShapeError, "squeeze: cannot squeeze axis 0 of size 2"),
        (lambda: anp.reshape(X, (4, -1)), ShapeError, "reshape: cannot reshape an array"),
        (lambda: anp.transpose(X, (0, 0, 1)), ValueDomainError, "are not a permutation"),
        (lambda: anp.tile(X, (-1,)), ValueDomainError, r"tile: negative repetitions \(-1,\)"),
        (lambda: anp.broadcast_to(X, "a"), ValueDomainError, "a shape must be a list"),
        # a missing or extra static: NumPy raises; the old hooks gave a silent odd answer
        # (expand_dims(x) inserted ndim + 1 axes) or ignored the extra argument
        (lambda: anp.expand_dims(X), ValueDomainError, "expand_dims: missing argument 'axis'"),
        (lambda: anp.swapaxes(X, 0, 1, 2), ValueDomainError, "swapaxes: too many arguments"),
    ],
)
def test_bad_statics_are_refused_clearly(thunk, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        thunk()
