"""Only "nan", "inf" and "-inf" stand for numbers, in every place an array goes
(issue 13, A7): "1.5", "NaN", "infinity" inside a list were parsed as numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from app.api.tasks import task_limits
from app.compute.wire import InputError
from app.settings import Settings
from engine.errors import AutodiffError
from tests.app.tasks import run_encoded_task, run_task

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
NOT_NUMBERS = ["1.5", "NaN", "infinity", "Infinity", "Inf", "+inf", "-nan", " 1", "1e3", "0x10", ""]


def run(endpoint: str, expression: str, **fields: Any) -> dict[str, Any]:
    task = {"endpoint": endpoint, "expression": expression, "graph": None, **fields}
    body, _, _ = run_encoded_task({**task, "include_graph": False, "limits": task_limits(SETTINGS)})
    assert isinstance(body, bytes)
    answer: dict[str, Any] = orjson.loads(body)
    return answer


def places(word: Any) -> dict[str, tuple[str, str, dict[str, Any], list[Any]]]:
    """Each array place with ``word`` inside a list: (endpoint, expression, fields, loc)."""
    row = [1.0, word]
    ok = [1.0, 2.0]
    return {
        "input list": ("grad", "sum(x)", {"inputs": {"x": [row, ok]}}, ["inputs", "x", 0, 1]),
        "input data": (
            "grad",
            "sum(x)",
            {"inputs": {"x": {"data": [ok, row]}}},
            ["inputs", "x", "data", 1, 1],
        ),
        "cotangent": (
            "vjp",
            "x * 2",
            {"inputs": {"x": ok}, "cotangent": row},
            ["cotangent", 1],
        ),
        "cotangents": (
            "vjp",
            "(x * 2, sum(x))",
            {"inputs": {"x": ok}, "cotangent": [row, 1.0]},
            ["cotangent", 0, 1],
        ),
        "tangents": (
            "jvp",
            "x * 2",
            {"inputs": {"x": ok}, "tangents": {"x": row}},
            ["tangents", "x", 1],
        ),
        "vectors": (
            "hvp",
            "sum(x * x)",
            {"inputs": {"x": ok}, "vectors": {"x": {"data": row}}},
            ["vectors", "x", "data", 1],
        ),
    }


@pytest.mark.parametrize("place", list(places("")))
@pytest.mark.parametrize("word", NOT_NUMBERS)
def test_strings_that_are_not_the_three_words_are_refused(place: str, word: str) -> None:
    endpoint, expression, fields, loc = places(word)[place]
    with pytest.raises(InputError) as err:
        run(endpoint, expression, **fields)
    assert err.value.loc == ["body", *loc]
    assert '"nan", "inf" and "-inf"' in err.value.message


@pytest.mark.parametrize("place", list(places("")))
@pytest.mark.parametrize(("word", "number"), [("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)])
def test_the_three_words_are_numbers_everywhere(place: str, word: str, number: float) -> None:
    endpoint, expression, fields, _ = places(word)[place]
    result = run(endpoint, expression, **fields)
    assert result["warnings"]  # a non-finite value somewhere in the answer


@pytest.mark.parametrize("word", NOT_NUMBERS)
def test_a_bare_string_is_refused_too(word: str) -> None:
    with pytest.raises(InputError, match="not a number"):
        run("grad", "sum(x)", inputs={"x": word})


def test_graph_literals_take_no_number_strings() -> None:
    graph = {
        "nodes": [
            {"id": "y", "op": "multiply", "inputs": ["x", [1.0, "1.5"]]},
            {"id": "s", "op": "sum", "inputs": ["y"]},
        ],
        "outputs": ["s"],
    }
    with pytest.raises(AutodiffError):
        run_task(
            {
                "endpoint": "grad",
                "expression": None,
                "graph": graph,
                "inputs": {"x": [1.0, 2.0]},
                "include_graph": False,
                "limits": task_limits(SETTINGS),
            }
        )
