"""getitem's shape function: NumPy's shape for every index form, computed without indexing
(issue 13, A2: advanced indexing of a stand-in array allocated the whole result before
its size was compared with the limit)."""

from __future__ import annotations

import random
import tracemalloc
from typing import Any

import numpy as np
import pytest

from engine import registry
from engine.errors import ShapeError, SizeLimitError
from engine.shapes import check_size

GETITEM = registry.OPS["getitem"]


def _random_item(rng: random.Random, size: int) -> Any:
    r = rng.random()
    if r < 0.2:
        return slice(
            rng.choice([None, 0, 1, -1]), rng.choice([None, 2, -1, 5]), rng.choice([None, 1, 2, -1])
        )
    if r < 0.35:
        return rng.randint(-size - 1, size)
    if r < 0.45:
        return None
    if r < 0.5:
        return Ellipsis
    gen = np.random.default_rng(rng.randint(0, 10**6))
    shape = tuple(rng.randint(0, 3) for _ in range(rng.randint(0, 2)))
    if r < 0.85:
        return gen.integers(-size - 1, size + 1, size=shape)
    return gen.random(shape) < 0.5


def _advanced_shape() -> Any:
    from engine.ops.shape import advanced_shape  # here: the module-level tests run without it

    return advanced_shape


def _numpy_shape(shape: tuple[int, ...], index: tuple[Any, ...]) -> Any:
    try:
        return np.zeros(shape)[index].shape
    except (IndexError, ValueError):
        return "error"


def _our_shape(shape: tuple[int, ...], index: tuple[Any, ...]) -> Any:
    try:
        return _advanced_shape()(shape, index)
    except IndexError:
        return "error"


@pytest.mark.parametrize("seed", range(4))
def test_shapes_and_errors_agree_with_numpy(seed: int) -> None:
    """Random indices (integers, slices, None, ..., integer arrays, masks, empty ones)."""
    rng = random.Random(seed)
    for _ in range(2500):
        shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 4)))
        index = tuple(_random_item(rng, shape[0] if shape else 1) for _ in range(rng.randint(1, 4)))
        assert _our_shape(shape, index) == _numpy_shape(shape, index), (shape, index)


@pytest.mark.parametrize(
    ("shape", "index", "expected"),
    [
        ((2, 3, 4), (np.array([1, 0]), slice(None), 0), (2, 3)),  # separated: broadcast first
        ((2, 3, 4), (0, np.array([1, 0]), slice(None)), (2, 4)),  # adjacent: in place
        ((3, 2), (2, None, np.array([0, 1])), (2, 1)),
        ((5, 6), (np.zeros((4, 1), int), np.zeros((1, 7), int)), (4, 7)),
        ((5, 6), (np.array([True, False, True, False, True]),), (3, 6)),
    ],
)
def test_named_forms(shape: tuple[int, ...], index: tuple[Any, ...], expected: Any) -> None:
    assert _advanced_shape()(shape, index) == expected == np.zeros(shape)[index].shape


def test_a_huge_gather_is_refused_without_taking_its_memory() -> None:
    """Two index arrays against a 1x1 array: 4 * 10^8 elements from 2 * 20,000 indices."""
    x = np.ones((1, 1))
    rows, cols = np.zeros((20_000, 1), dtype=np.int64), np.zeros((1, 20_000), dtype=np.int64)
    tracemalloc.start()
    try:
        with pytest.raises(SizeLimitError, match=r"\(20000, 20000\)"):
            check_size(GETITEM, (x, (rows, cols)), {}, 10**6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"the shape check took {peak / 2**20:.1f} MiB"


def test_out_of_bounds_is_a_shape_error() -> None:
    with pytest.raises(ShapeError, match="out of bounds"):
        GETITEM.shape(np.ones((2, 2)), (np.array([0, 5]),))
