"""Test rows for complex numbers (consumed by ``test_ops.py``).

The table's inputs are real: each row builds ``z = x + 1j y`` from two of them, goes
through complex values and comes back to a real output, so the table's finite
differences (in the real coordinates x and y), forward against reverse, both Jacobian
modes, second order and float32 (complex64 inside) check the complex rules under the
convention (README, "Complex numbers"). ``z`` stays away from 0, where ``abs`` and
``angle`` are not differentiable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case

PAIR = ((3,), (3,))
BROADCAST = ((2, 3), (3,))


def _z(x: Any, y: Any) -> Any:
    return x + 1j * y


def _away_from_zero(rng: np.random.Generator) -> list[np.ndarray]:
    """x in +-[0.5, 2] and y in [-2, 2]: z is never near 0 (nor on the negative real axis,
    where angle jumps)."""
    x = rng.uniform(0.5, 2.0, size=(3,))
    return [x, rng.uniform(-2.0, 2.0, size=(3,))]


def _rows() -> list[Case]:
    rows = [
        Case("real", lambda x, y: anp.real(anp.exp(_z(x, y)) * (x - 2j)), PAIR),
        Case("real", lambda x, y: anp.real(_z(x, y) * 3.0), BROADCAST, tag="broadcast"),
        Case("imag", lambda x, y: anp.imag(anp.sin(_z(x, y)) * y), PAIR),
        Case("imag", lambda x: anp.imag(x), ((3,),), tag="of-real"),
        Case("real", lambda x: anp.real(x) * x, ((3,),), tag="of-real"),
        Case("conj", lambda x, y: anp.real(anp.conj(_z(x, y)) * anp.exp(1j * x + y)), PAIR),
        Case("conj", lambda x, y: anp.imag(anp.conj(_z(x, y)) ** 2), PAIR, tag="imag"),
        Case("conjugate", lambda x, y: anp.real(anp.conjugate(_z(x, y)) * _z(y, x)), PAIR),
        Case("abs", lambda x, y: anp.abs(_z(x, y)), PAIR, make=_away_from_zero, tag="complex"),
        Case("absolute", lambda x, y: anp.absolute(_z(x, y)) ** 3, PAIR, make=_away_from_zero),
        Case("angle", lambda x, y: anp.angle(_z(x, y)), PAIR, make=_away_from_zero),
        Case(
            "angle",
            lambda x, y: anp.angle(_z(x, y) * _z(y, x), deg=True),
            PAIR,
            make=_away_from_zero,
            tag="deg",
        ),
        Case("angle", lambda x: anp.angle(x) + x, ((3,),), domain="pos", tag="of-real"),
        # holomorphic ops on complex values: the real rules, transposed (not conjugated)
        Case("exp", lambda x, y: anp.abs(anp.exp(_z(x, y)) * _z(y, x)), PAIR, tag="complex"),
        Case(
            "log",
            lambda x, y: anp.real(anp.log(_z(x, y)) * anp.conj(_z(y, x))),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "power",
            lambda x, y: anp.imag(_z(x, y) ** 2.5 + _z(x, y) ** _z(y, 0.5)),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "divide",
            lambda x, y: anp.real(_z(y, 1.0) / _z(x, y)),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
        Case(
            "matmul",
            lambda x, y: anp.abs(anp.matmul(_z(x, y), anp.transpose(_z(y, x)))),
            ((2, 3), (2, 3)),
            tag="complex",
        ),
        Case(
            "sum",
            lambda x, y: anp.real(anp.sum(_z(x, y) ** 2, axis=0) * 1j),
            ((2, 3), (2, 3)),
            tag="complex",
        ),
        Case(
            "prod",
            lambda x, y: anp.imag(anp.prod(_z(x, y), axis=-1)),
            ((2, 3), (2, 3)),
            tag="complex",
        ),
        Case(
            "tanh",
            lambda x, y: anp.real(anp.tanh(0.3 * _z(x, y)) + anp.cos(_z(y, x))),
            PAIR,
            tag="complex",
        ),
        Case(
            "sqrt",
            lambda x, y: anp.imag(anp.sqrt(_z(x, y))),
            PAIR,
            make=_away_from_zero,
            tag="complex",
        ),
    ]
    return rows


CASES: list[Case] = _rows()
