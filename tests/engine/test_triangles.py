"""tril and triu (added after the redesign as a row of the linear kind): values against
NumPy, refusals, size checks from shapes alone, the language. Gradients to second order
in both modes are the op table's rows (``cases_linalg.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import engine.numpy as anp
from engine.errors import ShapeError, SizeLimitError, ValueDomainError
from engine.lang import compile_source
from engine.registry import OPS
from engine.shapes import check_size

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2), (2, 3, 4), (0, 3), (1, 2, 0, 2)])
@pytest.mark.parametrize("k", [-7, -1, 0, 2, 9])
def test_values_match_numpy(name: str, shape: tuple[int, ...], k: int) -> None:
    x = RNG.normal(size=shape)
    np.testing.assert_array_equal(OPS[name](x, k), getattr(np, name)(x, k))
    np.testing.assert_array_equal(OPS[name](x, k=np.int64(k)), getattr(np, name)(x, k))
    assert OPS[name].shape(x, k=k) == shape


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_a_vector_or_scalar_is_refused_naming_the_op(name: str) -> None:
    for x in (np.ones(3), np.float64(1.0)):
        with pytest.raises(ShapeError, match=f"{name}: expects an array of at least 2"):
            OPS[name](x)
        with pytest.raises(ShapeError, match=name):
            OPS[name].shape(x)


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("k", [1.5, True, "1", None])
def test_k_must_be_an_integer(name: str, k: object) -> None:
    with pytest.raises(ValueDomainError, match=f"{name}: k must be an integer"):
        OPS[name](np.ones((2, 2)), k)


def test_unknown_or_extra_arguments_are_refused() -> None:
    with pytest.raises(ValueDomainError, match="unexpected argument 'offset'"):
        anp.tril(np.ones((2, 2)), offset=1)
    with pytest.raises(ValueDomainError, match="too many arguments"):
        anp.tril(np.ones((2, 2)), 1, 2)


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_size_is_checked_from_shapes_before_memory(name: str) -> None:
    huge = np.broadcast_to(0.0, (100_000, 100_000))  # a view: no memory behind it
    with pytest.raises(SizeLimitError, match=f"{name}: the result would have shape"):
        check_size(OPS[name], (huge,), {"k": 1}, max_elements=10**6)


def test_in_the_language_with_its_gradient() -> None:
    m = RNG.normal(size=(3, 3))
    program = compile_source("sum(tril(m, -1) * transpose(triu(m, k=1)))")
    expected = np.sum(np.tril(m, -1) * np.triu(m, 1).T)
    assert float(program.run({"m": m})) == pytest.approx(expected)
