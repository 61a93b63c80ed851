"""Test rows for engine/ops/selection.py: the nonzero family (no gradient) and astype."""

from __future__ import annotations

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case

_SHAPES = [((4,),), ((2, 3),), ((2, 1, 3),)]

CASES: list[Case] = [
    *(
        Case(op, fn, shapes, diff=False, reference=ref, tag=f"{'x'.join(map(str, shapes[0]))}")
        for shapes in _SHAPES
        for op, fn, ref in (
            ("argwhere", lambda x: anp.argwhere(x > 0), lambda x: np.argwhere(x > 0)),
            ("flatnonzero", lambda x: anp.flatnonzero(x > 0), lambda x: np.flatnonzero(x > 0)),
            ("nonzero", lambda x: anp.nonzero(x > 0), lambda x: np.nonzero(x > 0)),
        )
    ),
    # a cast to the input's own dtype (float64 rows and float32 rows alike); the casts
    # between float32 and float64 are checked in tests/engine/lang/test_forms.py
    *(
        Case("astype", lambda x: anp.astype(x * x, dtype=np.result_type(x).name), shapes)
        for shapes in _SHAPES
    ),
]
