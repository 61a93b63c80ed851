"""Shape functions agree with NumPy without computing (indexing by arithmetic)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.errors import ShapeError
from engine.registry import OPS

INDEXES: list[Any] = [
    0,
    -1,
    slice(1, 3),
    slice(None, None, -1),
    slice(5, 1),
    (None, Ellipsis, 1),
    Ellipsis,
    (slice(None), 2),
    (1, None, slice(0, 10, 3)),
    (Ellipsis, None),
    (-1, -1, -1),
    np.array([0, 1, 1]),
    (slice(None), np.array([2, 0])),
]


@pytest.mark.parametrize("shape", [(3, 4, 5), (7,), (2, 3)])
@pytest.mark.parametrize("index", INDEXES, ids=repr)
def test_getitem_shape_matches_numpy(shape: tuple[int, ...], index: Any) -> None:
    x = np.zeros(shape)
    try:
        expected = x[index].shape
    except IndexError:
        with pytest.raises(ShapeError):
            OPS["getitem"].shape(x, index)
        return
    assert OPS["getitem"].shape(x, index) == expected
