"""An input's name must be one the function can say (issue 13, A7's look-alike names):
a fullwidth ``ｘ`` in ``inputs`` was answered 200 with a zero gradient and a warning, while
the same name in the source or in a graph was refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.api.errors import status_of  # engine errors carry no status (issue 14)
from app.api.tasks import task_limits
from app.settings import Settings
from engine.errors import AutodiffError
from tests.app.tasks import run_encoded_task

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def run(**fields: Any) -> dict[str, Any]:
    task = {"endpoint": "grad", "graph": None, "include_graph": False, **fields}
    body, _, _ = run_encoded_task({**task, "limits": task_limits(SETTINGS)})
    answer: dict[str, Any] = orjson.loads(body)
    return answer


@pytest.mark.parametrize("name", ["\uff58", "x\u0301", "a b", "1x", "_x", "if", "x-1", "", "é"])
def test_an_input_name_the_language_cannot_say_is_refused_at_its_key(name: str) -> None:
    with pytest.raises(AutodiffError) as info:
        run(expression="sum(x)", inputs={"x": [1.0], name: [2.0]})
    assert status_of(info.value) == 422
    assert info.value.loc == ["body", "inputs", name]
    assert "not a name the function can use" in info.value.message


@pytest.mark.parametrize("name", ["x", "X_1", "weights", "pi2"])
def test_identifiers_are_names(name: str) -> None:
    answer = run(expression=f"sum({name} * 2)", inputs={name: [1.0, 3.0]})
    assert answer["gradients"] == {name: [2.0, 2.0]}
