"""The building and reshaping ops over HTTP, through the real app: /grad, /jacobian (both
modes) and /hessian, against references made with NumPy's own functions; and their
refusals (sizes over the limit from shapes alone, bad options) as problem+json.

Each op is affine, so its Jacobian J is read off NumPy's function on the basis vectors;
the function sent is ``sum(sin(EXPR) * w)`` (w a constant input) for /grad and /hessian,
whose gradient is J^T (cos(y) w) and Hessian -J^T diag(sin(y) w) J.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.api.test_routes import SETTINGS, close, post, wait_ready


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


# (expression of x, NumPy reference of x, x's shape): several results are joined by the
# expression itself where /grad needs one array
CASES: list[tuple[str, Callable[[np.ndarray], Any], tuple[int, ...]]] = [
    (
        "array([x[1], 2 * x[0], x[2] - x[0]])",
        lambda x: np.array([x[1], 2 * x[0], x[2] - x[0]]),
        (3,),
    ),
    ("array([[x[0], 1], [x[1], x[0]]])", lambda x: np.array([[x[0], 1], [x[1], x[0]]]), (2,)),
    ("asarray(x, dtype='float64')", lambda x: np.asarray(x), (2, 2)),
    ("ravel(x)", np.ravel, (2, 3)),
    ("ravel(x, order='F')", lambda x: np.ravel(x, order="F"), (2, 3)),
    ("moveaxis(x, 0, -1)", lambda x: np.moveaxis(x, 0, -1), (2, 3, 2)),
    ("moveaxis(x, (0, 1), (1, 2))", lambda x: np.moveaxis(x, (0, 1), (1, 2)), (2, 3, 2)),
    ("rollaxis(x, 2, 1)", lambda x: np.rollaxis(x, 2, 1), (2, 3, 2)),
    ("roll(x, 2)", lambda x: np.roll(x, 2), (2, 3)),
    ("roll(x, (1, -1), axis=(0, 1))", lambda x: np.roll(x, (1, -1), axis=(0, 1)), (2, 3)),
    ("pad(x, 1)", lambda x: np.pad(x, 1), (2, 2)),
    (
        "pad(x, ((1, 0), (2, 1)), constant_values=3)",
        lambda x: np.pad(x, ((1, 0), (2, 1)), constant_values=3),
        (2, 2),
    ),
    ("pad(x, (1, 3), mode='edge')", lambda x: np.pad(x, (1, 3), mode="edge"), (3,)),
    ("pad(x, 4, mode='reflect')", lambda x: np.pad(x, 4, mode="reflect"), (3,)),
    (
        "pad(x, ((0, 2), (1, 1)), mode='symmetric')",
        lambda x: np.pad(x, ((0, 2), (1, 1)), mode="symmetric"),
        (2, 2),
    ),
    ("pad(x, 2, mode='wrap')", lambda x: np.pad(x, 2, mode="wrap"), (3,)),
    ("atleast_1d(x[0])", lambda x: np.atleast_1d(x[0]), (2,)),
    ("atleast_2d(x)", np.atleast_2d, (3,)),
    ("atleast_3d(x)", np.atleast_3d, (2, 2)),
    ("squeeze(x, (0, 2))", lambda x: np.squeeze(x, (0, 2)), (1, 3, 1)),
    ("expand_dims(x, (0, 2))", lambda x: np.expand_dims(x, (0, 2)), (3,)),
    ("vstack([x, 2 * x])", lambda x: np.vstack([x, 2 * x]), (3,)),
    ("row_stack((x, x))", lambda x: np.vstack((x, x)), (2,)),
    ("hstack([x, x[0:1]])", lambda x: np.hstack([x, x[0:1]]), (3,)),
    ("dstack([x, x])", lambda x: np.dstack([x, x]), (2, 2)),
    ("column_stack([x, x * 3])", lambda x: np.column_stack([x, x * 3]), (3,)),
    ("append(x, x[0])", lambda x: np.append(x, x[0]), (2, 2)),
    ("append(x, x, axis=1)", lambda x: np.append(x, x, axis=1), (2, 2)),
    ("concatenate(split(x, 2)[::-1])", lambda x: np.concatenate(np.split(x, 2)[::-1]), (4,)),
    (
        "concatenate(array_split(x, 3, axis=1), axis=1)",
        lambda x: np.concatenate(np.array_split(x, 3, axis=1), axis=1),
        (2, 4),
    ),
    ("hsplit(x, [1])[1]", lambda x: np.hsplit(x, [1])[1], (2, 3)),
    ("vsplit(x, 2)[0]", lambda x: np.vsplit(x, 2)[0], (2, 3)),
    ("dsplit(x, 2)[1]", lambda x: np.dsplit(x, 2)[1], (1, 2, 2)),
    ("stack(meshgrid(x, x[0:2]))", lambda x: np.stack(np.meshgrid(x, x[0:2])), (3,)),
    (
        "stack(meshgrid(x, x, indexing='ij'))",
        lambda x: np.stack(np.meshgrid(x, x, indexing="ij")),
        (2,),
    ),
    ("x[triu_indices(3)]", lambda x: x[np.triu_indices(3)], (3, 3)),
    ("x[tril_indices(2, 0, 3)]", lambda x: x[np.tril_indices(2, 0, 3)], (2, 3)),
    ("x[tril_indices_from(x, -1)]", lambda x: x[np.tril_indices_from(x, -1)], (3, 3)),
    ("x[diag_indices(2)]", lambda x: x[np.diag_indices(2)], (2, 2)),
    ("rot90(x, 3)", lambda x: np.rot90(x, 3), (2, 3)),
    ("fliplr(x) + flipud(x)", lambda x: np.fliplr(x) + np.flipud(x), (2, 2)),
    ("diagonal(x, 1, 1, 0)", lambda x: np.diagonal(x, 1, 1, 0), (3, 3)),
]


def _jacobian(ref: Callable[[np.ndarray], Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's value at x and its Jacobian (the op is affine: read off the basis)."""
    y = np.asarray(ref(x), float)
    base = np.asarray(ref(np.zeros_like(x)), float).ravel()
    cols = [np.asarray(ref(e.reshape(x.shape)), float).ravel() - base for e in np.eye(x.size)]
    return y, np.stack(cols, axis=-1).reshape(y.shape + x.shape)


@pytest.mark.parametrize(("expression", "ref", "shape"), CASES, ids=[c[0] for c in CASES])
def test_endpoints_agree_with_numpy(
    client: TestClient, expression: str, ref: Callable[[np.ndarray], Any], shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(len(expression))
    x = rng.uniform(-1, 1, size=shape)
    y, jac = _jacobian(ref, x)
    for mode in ("reverse", "forward"):
        body = post(
            client,
            "/jacobian",
            {"expression": expression, "inputs": {"x": x.tolist()}, "mode": mode},
        )
        assert body["mode"] == mode
        close(body["value"], y)
        assert np.shape(body["jacobian"]["x"]) == y.shape + x.shape
        close(body["jacobian"]["x"], jac)

    w = rng.uniform(-1, 1, size=y.shape)
    scalar = f"sum(sin({expression}) * w)"
    inputs = {"x": x.tolist(), "w": {"data": w.tolist(), "requires_grad": False}}
    m = jac.reshape(y.size, x.size)
    grad = post(client, "/grad", {"expression": scalar, "inputs": inputs})
    close(grad["value"], np.sum(np.sin(y) * w))
    close(grad["gradients"]["x"], (m.T @ (np.cos(y) * w).ravel()).reshape(x.shape))
    hess = post(client, "/hessian", {"expression": scalar, "inputs": inputs})
    expected = -(m.T * (np.sin(y) * w).ravel()) @ m
    close(hess["hessian"]["x"]["x"], expected.reshape(x.shape + x.shape))


def test_split_answers_several_outputs(client: TestClient) -> None:
    """A tuple of pieces is several outputs, on /jacobian as on /vjp."""
    x = [1.0, 2.0, 3.0, 4.0]
    body = post(client, "/jacobian", {"expression": "split(x, [1])", "inputs": {"x": x}})
    close(body["value"][0], [1.0])
    close(body["value"][1], [2.0, 3.0, 4.0])
    close(body["jacobian"]["x"][0], np.eye(4)[:1])
    close(body["jacobian"]["x"][1], np.eye(4)[1:])
    program = "a, b = split(x, 2)\nreturn sum(a * b)"
    grad = post(client, "/grad", {"expression": program, "inputs": {"x": x}})
    close(grad["gradients"]["x"], [3.0, 4.0, 1.0, 2.0])
    vjp = post(
        client,
        "/vjp",
        {
            "expression": "meshgrid(x, x[0:2])",
            "inputs": {"x": x[:3]},
            "cotangent": [[[1] * 3] * 2] * 2,
        },
    )
    close(vjp["vjp"]["x"], [5.0, 5.0, 2.0])  # x: once a grid row (2 rows); x[0:2]: 3 columns


def test_graph_form(client: TestClient) -> None:
    graph = {
        "nodes": [
            {
                "id": "p",
                "op": "pad",
                "inputs": ["x"],
                "attrs": {"pad_width": [1, 2], "mode": "reflect"},
            },
            {"id": "v", "op": "vstack", "inputs": ["p", "p"]},
            {"id": "s", "op": "sum", "inputs": ["v"]},
        ],
        "outputs": ["s"],
    }
    body = post(client, "/grad", {"graph": graph, "inputs": {"x": [1.0, 2.0, 3.0]}})
    # reflect by (1, 2) of [a, b, c] is [b, a, b, c, b, a]: each twice (vstack)
    close(body["gradients"]["x"], [4.0, 6.0, 2.0])


# --------------------------------------------------------------------------- refusals


def _refused(client: TestClient, expression: str, inputs: dict[str, Any], status: int) -> str:
    body = post(client, "/grad", {"expression": expression, "inputs": inputs}, status)
    assert {"type", "title", "status", "detail"} <= set(body)
    return str(body["detail"])


@pytest.mark.parametrize(
    ("expression", "op"),
    [
        ("sum(pad(x, 10**6))", "pad"),
        ("sum(pad(x, ((0, 10**12), (0, 0)), mode='edge'))", "pad"),
        ("a, b = meshgrid(x, x, x, x, x, x, x)\nreturn sum(a)", "meshgrid"),
        ("sum(x[tril_indices(10**6)])", "tril_indices"),
        ("sum(x[diag_indices(10**7, 2)])", "diag_indices"),
        ("sum(vstack([" + ", ".join(["x"] * 41) + "]))", "vstack"),
        ("sum(dstack([" + ", ".join(["x"] * 41) + "]))", "dstack"),
        ("sum(atleast_3d(tile(x, (2, 21))))", "tile"),
        ("sum(append(x, repeat(x, 10**6)))", "repeat"),
    ],
)
def test_sizes_over_the_limit_are_refused_before_memory(
    client: TestClient, expression: str, op: str
) -> None:
    x = np.ones((50, 50)).tolist()  # 2,500 elements; the app's limit is 100,000
    detail = _refused(client, expression, {"x": x}, 413)
    assert op in detail and "limit" in detail


def test_a_long_list_of_traced_values_is_refused_by_size(client: TestClient) -> None:
    items = ", ".join(["x"] * 50)
    detail = _refused(client, f"sum(array([{items}]))", {"x": np.ones((50, 50)).tolist()}, 413)
    assert "stack" in detail or "array" in detail


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("sum(pad(x, 1, mode='median'))", "mode must be one of"),
        ("sum(pad(x, -1))", "must not be negative"),
        ("sum(pad(x, 1.5))", "must be integers"),
        ("sum(split(x, 3)[0])", "equal sections"),
        ("sum(split(x, 10**9)[0])", "at most 100,000 pieces"),
        ("sum(vstack([x, x[0:1, 0:1]]))", "differ off the joining axis"),
        ("sum(meshgrid(x, indexing='xz')[0])", "indexing must be"),
        ("sum(moveaxis(x, 0, 3))", "out of bounds"),
        ("sum(roll(x, 1.5))", "shift must be an integer"),
        ("sum(array(x, dtype='int8'))", "dtype must be"),
        ("sum(x[triu_indices(9)])", "out of bounds"),
        ("sum(pad(x, 1, mode=x))", "static"),
        ("a, b, c = split(x, 2)\nreturn sum(a)", "unpack"),
        ("sum(squeeze(x, (0,)))", "cannot squeeze axis 0"),
    ],
)
def test_bad_arguments_are_clear_422s(client: TestClient, expression: str, fragment: str) -> None:
    detail = _refused(client, expression, {"x": [[1.0, 2.0], [3.0, 4.0]]}, 422)
    assert fragment in detail, detail
