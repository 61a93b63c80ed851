"""/jvp's tangents and /hvp's vectors follow one rule (issue 13, A7): an empty, partial
or over-full map gets the same answer from both (an empty ``vectors`` was a 200 with
nothing in it while an empty ``tangents`` was a 422)."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.errors import status_of  # engine errors carry no status (issue 14)
from app.api.tasks import task_limits
from app.settings import Settings
from engine.errors import AutodiffError
from tests.app.tasks import run_task

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
FIELDS = {"jvp": "tangents", "hvp": "vectors"}
INPUTS = {"x": [1.0, 2.0], "y": 3.0, "c": {"data": 2.0, "requires_grad": False}}
X, Y = [1.0, 1.0], 1.0

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (the map, other fields)
    "empty": ({}, {}),
    "empty, wrt given": ({}, {"wrt": ["x"]}),
    "empty, wrt empty": ({}, {"wrt": []}),
    "partial": ({"x": X}, {}),
    "partial, wrt names more": ({"x": X}, {"wrt": ["x", "y"]}),
    "complete": ({"x": X, "y": Y}, {}),
    "complete, wrt names fewer": ({"x": X, "y": Y}, {"wrt": ["x"]}),
    "unknown name": ({"x": X, "z": 1.0}, {}),
    "wrong shape": ({"x": [1.0]}, {}),
}


def outcome(endpoint: str, directions: dict[str, Any], extra: dict[str, Any]) -> Any:
    """The differentiated names the answer has, or the error's (status, kind, loc)."""
    task = {
        "endpoint": endpoint,
        "expression": "sum(x * x * y * c)",
        "graph": None,
        "inputs": INPUTS,
        FIELDS[endpoint]: directions,
        "include_graph": False,
        "limits": task_limits(SETTINGS),
        **extra,
    }
    try:
        result = run_task(task)
    except AutodiffError as err:
        loc = list(err.loc) if isinstance(err.loc, list) else err.loc
        if isinstance(loc, list) and len(loc) > 1 and loc[1] == FIELDS[endpoint]:
            loc[1] = "<map>"
        return status_of(err), err.kind, loc
    key = "jvp" if endpoint == "jvp" else "hvp"
    return 200, sorted(result[key]) if isinstance(result[key], dict) else "jvp"


@pytest.mark.parametrize("case", list(CASES))
def test_tangents_and_vectors_agree(case: str) -> None:
    directions, extra = CASES[case]
    jvp, hvp = outcome("jvp", directions, extra), outcome("hvp", directions, extra)
    assert jvp[0] == hvp[0], (jvp, hvp)
    if jvp[0] != 200:
        assert jvp == hvp
        assert jvp[0] == 422


def test_an_empty_map_is_refused_when_something_can_be_differentiated() -> None:
    for endpoint, field in FIELDS.items():
        status, kind, loc = outcome(endpoint, {}, {})
        assert (status, loc) == (422, ["body", "<map>"]), (endpoint, field)


def test_an_empty_map_is_fine_when_nothing_can_be_differentiated() -> None:
    for endpoint, field in FIELDS.items():
        task = {
            "endpoint": endpoint,
            "expression": "sum(c * c)",
            "graph": None,
            "inputs": {"c": INPUTS["c"]},
            field: {},
            "include_graph": False,
            "limits": task_limits(SETTINGS),
        }
        assert run_task(task)["value"] == 4.0
