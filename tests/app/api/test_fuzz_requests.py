"""Random valid-looking requests on every compute endpoint: any 500 is a bug (issue 13, A6).

Schemathesis (tests/app/api/test_fuzz.py) explores the request *schema*; these requests get
past it: real programs over the engine's ops (reductions with axes and ddof, indexing,
where, contractions, constructors) on inputs of every awkward shape (scalars, size-0
arrays, zeros before the last axis), in every encoding, with wrt, directions and
cotangents that fit, through the ASGI app and its three lanes. Every answer must be a
2xx or a 4xx problem+json. Hypothesis, derandomised: a fixed, bounded run in CI;
``AUTODIFF_FUZZ_EXAMPLES`` makes it longer.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.settings import Settings

EXAMPLES = int(os.environ.get("AUTODIFF_FUZZ_EXAMPLES", "250"))
SETTINGS = Settings(  # type: ignore[call-arg]
    _env_file=None, workers=1, max_input_elements=10_000, max_intermediate_elements=2_000_000
)
SHAPES = [(), (0,), (1,), (3,), (2, 3), (0, 3), (3, 0), (2, 1, 3), (1, 0, 2)]
UNARY = [
    "abs",
    "arccos",
    "arcsin",
    "arctan",
    "cos",
    "cosh",
    "exp",
    "expm1",
    "log",
    "log10",
    "log1p",
    "log2",
    "negative",
    "relu",
    "sigmoid",
    "sign",
    "sin",
    "sinh",
    "softplus",
    "sqrt",
    "square",
    "tan",
    "tanh",
    "detach",
]
BINARY = [
    "add",
    "arctan2",
    "divide",
    "equal",
    "floor_divide",
    "greater",
    "maximum",
    "minimum",
    "multiply",
    "power",
    "remainder",
    "subtract",
    "logical_and",
]
REDUCTIONS = ["sum", "mean", "prod", "max", "min", "var", "std", "logsumexp", "norm"]
INDEXES = [
    "0", "-1", "1:", "2:", ":, 0", "None", "..., 0", "[0, 0]", "::-1", "x > 0", ":, None",
    # mixed advanced indexing: an integer and an index array apart (issue 13, B1)
    "0, None, [0]", "[1, 0], :, 0", "0, ..., [0, -1]", "None, [0], 0", "[[0], [1]], :, [0]",
]  # fmt: skip
SHAPING = [
    "reshape({a}, (-1,))", "transpose({a})", "flip({a})", "squeeze({a})",
    "expand_dims({a}, 0)", "concatenate([{a}, {a}])", "stack([{a}, {a}])", "tile({a}, (2,))",
    "repeat({a}, 2)", "softmax({a})", "log_softmax({a})", "clip({a}, -1.0, 1.0)",
    "broadcast_to({a}, (2, 3))", "swapaxes({a}, 0, -1)", "zeros_like({a}) + {a}",
    "matmul({a}, {a})", "dot({a}, {a})", "outer({a}, {a})", "trace({a})", "diag({a})",
    "einsum('ij->j', {a})", "det({a})", "inv({a})", "{a} + zeros((0, 3))",
    "{a} * arange(3)", "{a} + linspace(0, 1, 0)", "{a} * eye(3)",
]  # fmt: skip
ENDPOINTS = ["grad", "vjp", "jvp", "jacobian", "hessian", "hvp"]


@st.composite
def reductions(draw: st.DrawFn, a: str) -> str:
    op = draw(st.sampled_from(REDUCTIONS))
    args = [a]
    axis = draw(st.sampled_from([None, 0, -1, 1, (0, 1)]))
    if axis is not None:
        args.append(f"axis={axis}")
    if draw(st.booleans()):
        args.append("keepdims=True")
    if op in ("var", "std") and draw(st.booleans()):
        args.append(f"ddof={draw(st.integers(0, 4))}")
    return f"{op}({', '.join(args)})"


def expressions() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["x", "y", "2.0", "0.0"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(st.sampled_from(UNARY), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(BINARY), inner, inner).map(
                lambda t: f"{t[0]}({t[1]}, {t[2]})"
            ),
            inner.flatmap(reductions),
            st.tuples(inner, st.sampled_from(INDEXES)).map(lambda t: f"({t[0]})[{t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"where({t[0]}, {t[1]}, 0)"),
            st.tuples(st.sampled_from(SHAPING), inner).map(lambda t: t[0].format(a=t[1])),
        )

    return st.recursive(leaves, extend, max_leaves=5)


def array_json(arr: np.ndarray, form: str, dtype: str, constant: bool) -> Any:
    if form == "b64":
        raw = np.ascontiguousarray(arr, dtype="<f8" if dtype == "float64" else "<f4")
        out: dict[str, Any] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "b64": base64.b64encode(raw.tobytes()).decode(),
        }
    elif form == "data" or constant:
        out = {"data": arr.tolist(), "dtype": dtype}
    else:
        return arr.tolist()
    if constant:
        out["requires_grad"] = False
    return out


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    endpoint = draw(st.sampled_from(ENDPOINTS))
    xshape = draw(st.sampled_from(SHAPES))
    yshape = draw(st.sampled_from([xshape, (), xshape[-1:]]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(xshape), 3)
    y = np.round(rng.standard_normal(yshape), 3)
    if x.size and draw(st.booleans()):
        x.flat[0] = 0.0
    expression = draw(expressions())
    if draw(st.integers(0, 4)) == 0:
        expression = f"({expression}, {draw(expressions())})"
    elif endpoint in ("grad", "hessian", "hvp") and draw(st.booleans()):
        expression = f"sum({expression})"
    dtype = draw(st.sampled_from(["float64", "float32"]))
    forms = st.sampled_from(["list", "data", "b64"])
    body: dict[str, Any] = {
        "expression": expression,
        "inputs": {
            "x": array_json(x, draw(forms), dtype, constant=False),
            "y": array_json(y, draw(forms), dtype, constant=draw(st.integers(0, 3)) == 0),
        },
        "include_graph": draw(st.booleans()),
        "check": draw(st.integers(0, 4)) == 0,
        "encoding": draw(st.sampled_from(["json", "b64"])),
    }
    if draw(st.integers(0, 3)) == 0:
        body["wrt"] = draw(st.sampled_from([["x"], ["x", "y"], []]))
    if endpoint == "jacobian":
        body["mode"] = draw(st.sampled_from(["auto", "forward", "reverse"]))
    values = {"x": x, "y": y}
    if endpoint in ("jvp", "hvp"):
        field = "tangents" if endpoint == "jvp" else "vectors"
        names = body.get("wrt") or draw(st.sampled_from([["x"], ["x", "y"], []]))
        body[field] = {n: np.ones_like(values[n]).tolist() for n in names}
    if endpoint == "vjp":
        body["cotangent"] = draw(st.sampled_from([1.0, [], [1.0, 1.0, 1.0], [[1.0] * 3] * 2]))
    return endpoint, body


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as c:
        for _ in range(600):  # the worker pool warms up
            if c.get("/readyz").status_code == 200:
                break
            import time

            time.sleep(0.1)
        yield c


@pytest.mark.timeout(600)
@given(request=requests())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_valid_looking_requests_never_get_a_server_error(
    client: TestClient, request: tuple[str, dict[str, Any]]
) -> None:
    endpoint, body = request
    r = client.post(f"/{endpoint}", json=body)
    assert r.status_code < 500, (endpoint, body, r.text[:500])
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json", r.text[:200]
        assert r.json()["detail"], r.text[:200]
    else:
        assert r.headers["content-type"] == "application/json"
