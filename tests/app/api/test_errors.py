"""Problem rendering (app/errors.py): whatever an error holds, the answer is valid JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest

from app.api.errors import autodiff_problem, json_safe, problem
from engine.errors import SizeLimitError


def strict(data: bytes) -> Any:
    """Parse with the standard library, refusing NaN/Infinity literals."""

    def refuse(word: str) -> Any:
        raise AssertionError(f"non-standard JSON literal {word}")

    return json.loads(data, parse_constant=refuse)


def test_shape_over_64_bits_is_rendered() -> None:
    # The shape of arange(0, 1, 1e-300): orjson refuses integers over 64 bits.
    huge = 10**300
    exc = SizeLimitError("too big", op="arange", shapes=[(huge,)], loc=(1, 5))
    r = autodiff_problem(exc)
    assert r.status_code == 413
    doc = strict(r.body)
    assert doc["errors"][0]["shapes"] == [[huge]]
    assert doc["errors"][0]["loc"] == {"line": 1, "column": 5}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (np.float32("nan"), "nan"),
        (np.int64(7), 7),
        (np.bool_(True), True),
        ((1, (2, 3)), [1, [2, 3]]),
        ({1: "a"}, {"1": "a"}),
        (2**80, 2**80),
        (2**5000, "an integer of 5001 bits"),
        (np.arange(3), [0, 1, 2]),
        (object, "<class 'object'>"),
    ],
)
def test_json_safe(value: Any, expected: Any) -> None:
    assert json_safe(value) == expected


@pytest.mark.parametrize(
    "errors",
    [
        [{"loc": ["body"], "msg": "x", "shapes": [[2**70, 3]]}],
        [{"loc": ["body"], "value": math.nan, "other": -math.inf}],
        [{"loc": ["body"], "thing": object(), "bytes": b"\xff"}],
        [{"loc": ["body"], "big": 10**5000}],
    ],
)
def test_problem_never_fails_to_render(errors: list[dict[str, Any]]) -> None:
    r = problem(422, "invalid-input", "Invalid input", "detail", errors)
    assert r.status_code == 422
    assert r.media_type == "application/problem+json"
    doc = strict(r.body)
    assert doc["status"] == 422 and doc["errors"][0]["loc"] == ["body"]


def test_deep_or_long_values_are_cut() -> None:
    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    r = problem(422, "k", "t", "d", [{"loc": ["body"], "deep": deep, "long": list(range(10**5))}])
    doc = orjson.loads(r.body)
    assert len(doc["errors"][0]["long"]) == 100
    assert len(r.body) < 4096
