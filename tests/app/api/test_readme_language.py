"""The README's language reference agrees with the service (issue 19 item 4).

The op list is generated from the registry (``python -m app.api.routes.ops``) and must be
what that prints; the forms the reference shows run, and what it says is refused is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.routes.ops import markdown_op_list, op_families
from app.main import create_app
from app.settings import Settings

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(create_app(Settings(_env_file=None))) as c:  # type: ignore[call-arg]
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker pool did not start"
            time.sleep(0.1)
        yield c  # type: ignore[misc]


def test_the_op_list_is_the_registrys() -> None:
    block = re.search(r"<!-- ops:begin[^>]*-->\n(.*?)<!-- ops:end -->", README, re.S)
    assert block is not None, "README has no generated op list"
    assert block.group(1) == markdown_op_list(), "run: python -m app.api.routes.ops"


def test_every_op_has_a_family() -> None:
    """An op whose module no family names would land in "Other" unnoticed."""
    assert "Other" not in op_families()


def test_every_op_of_ops_is_in_the_readme(client: TestClient) -> None:
    for op in client.get("/ops").json()["ops"]:
        assert f"`{op['name']}`" in README, op["name"]


X = {"x": [1.0, -2.0, 3.0]}
ACCEPTED = [
    "sum(x)",
    "a, b = x[0], x[1]\na += b\nreturn a * b",
    "y = x\nfor i in range(3):\n    y = y * 2\nreturn sum(y)",
    "sum(where(x > 0 and x < 2, x, 0))",
    "sum(x[::-1] * x[[0, 2, 1]]) + x[None, :][0, 0]",
    "s = 0\nwhile norm(x) * (s + 1) < 100:\n    s += 1\nreturn s * sum(x)",
    "sum(reshape(concatenate([x, x]), [3, 2]), axis=(0, 1))",
    "einsum('i,i->', x, x)",
    "sum(transpose(x))",
    "sum(x.T)",
    "x.sum() if x.sum() > 0 else -x.sum()",
    "sum(x[x > 0])",
    "np.sum(np.sin(x)) + len(x) + x.shape[0] + max(x[0], x[1])",
]
REFUSED = {
    "sum(x.__class__)": "attribute access (.__class__)",
    "y = x\ny[0] = 1\nreturn sum(y)": "where",
    "sum(zeros(x))": "detach",
    "import os": "",
    "[v for v in x]": "",
}


@pytest.mark.parametrize("expression", ACCEPTED)
def test_forms_the_reference_shows_run(client: TestClient, expression: str) -> None:
    r = client.post("/grad", json={"expression": expression, "inputs": X})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("expression", "hint"), REFUSED.items())
def test_what_the_reference_says_is_refused_is(
    client: TestClient, expression: str, hint: str
) -> None:
    r = client.post("/grad", json={"expression": expression, "inputs": X})
    assert r.status_code == 422, r.text
    assert hint in r.json()["detail"]
