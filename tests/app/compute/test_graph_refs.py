"""A graph reference that is no node id and no input is named where it is made
(issue 13, A7): it was reported as a missing input, without the node."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.api.errors import autodiff_problem
from app.api.tasks import task_limits
from app.settings import Settings
from engine.errors import UnknownNameError
from tests.app.tasks import run_task

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def run_graph(nodes: list[dict[str, Any]], outputs: list[str], **inputs: Any) -> Any:
    task = {
        "endpoint": "grad",
        "expression": None,
        "graph": {"nodes": nodes, "outputs": outputs},
        "inputs": inputs,
        "include_graph": False,
        "limits": task_limits(SETTINGS),
    }
    return run_task(task)


def problem_of(err: UnknownNameError) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(autodiff_problem(err).body)
    return body


@pytest.mark.parametrize("position", [0, 1])
def test_a_reference_to_a_missing_node_names_the_node(position: int) -> None:
    refs = ["x", "x"]
    refs[position] = "y_typo"
    nodes = [
        {"id": "y", "op": "multiply", "inputs": ["x", "x"]},
        {"id": "z", "op": "add", "inputs": refs},
        {"id": "s", "op": "sum", "inputs": ["z"]},
    ]
    with pytest.raises(UnknownNameError) as err:
        run_graph(nodes, ["s"], x=[1.0, 2.0])
    assert "node 'z'" in err.value.message and "'y_typo'" in err.value.message
    assert problem_of(err.value)["errors"][0]["loc"] == {"node": "z"}


@pytest.mark.parametrize("outputs", [["t"], ["s", "t"], ["t", "s"]])
def test_an_output_that_names_no_node_is_named(outputs: list[str]) -> None:
    nodes = [{"id": "s", "op": "sum", "inputs": ["x"]}]
    with pytest.raises(UnknownNameError) as err:
        run_graph(nodes, outputs, x=[1.0, 2.0])
    index = outputs.index("t")
    assert f"outputs[{index}]" in err.value.message and "'t'" in err.value.message
    assert problem_of(err.value)["errors"][0]["loc"] == ["body", "graph", "outputs", index]


def test_references_to_inputs_still_work() -> None:
    nodes = [{"id": "s", "op": "sum", "inputs": ["x"]}]
    assert run_graph(nodes, ["s"], x=[1.0, 2.0])["value"] == 3.0
