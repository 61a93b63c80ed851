"""Size-0 arrays, no degrees of freedom, and other edges every endpoint must answer
(issue 13, A6): what NumPy answers (nan or inf, with a warning), or a clear 4xx,
never an internal error; and an empty answer keeps its shape."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import orjson
import pytest

from app.api.errors import status_of  # engine errors carry no status (issue 14)
from app.api.tasks import task_limits
from app.settings import Settings
from autodiff_client import decode_array
from engine.errors import AutodiffError, SizeLimitError
from tests.app.tasks import run_encoded_task

SETTINGS = Settings(_env_file=None, max_input_elements=10_000)  # type: ignore[call-arg]
ENDPOINTS = [
    ("grad", {}),
    ("vjp", {}),
    ("jvp", {}),
    ("jacobian", {"mode": "forward"}),
    ("jacobian", {"mode": "reverse"}),
    ("hessian", {}),
    ("hvp", {}),
]


def empty(*shape: int) -> dict[str, Any]:
    return {"dtype": "float64", "shape": list(shape), "b64": ""}


def answer(endpoint: str, expression: str, inputs: dict[str, Any], **extra: Any) -> Any:
    """The endpoint's answer as the client decodes it (arrays as NumPy)."""
    task = {
        "endpoint": endpoint,
        "expression": expression,
        "graph": None,
        "inputs": inputs,
        "include_graph": False,
        "limits": task_limits(SETTINGS),
        **extra,
    }
    body, _, _ = run_encoded_task(task)
    assert isinstance(body, bytes)
    doc = orjson.loads(body)
    return {k: v if k in ("warnings", "mode") else decode_array(v) for k, v in doc.items()}


def directions(endpoint: str, out: np.ndarray, x: np.ndarray) -> dict[str, Any]:
    """The cotangent, tangents or vectors an endpoint needs, as JSON."""
    if endpoint == "vjp":
        return {"cotangent": np.ones_like(out).tolist()}
    if endpoint == "jvp":
        return {"tangents": {"x": np.ones_like(x).tolist()}}
    if endpoint == "hvp":
        return {"vectors": {"x": np.ones_like(x).tolist()}}
    return {}


def numpy_value(expression: str, x: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eval(expression, {"np": np}, {"x": x})  # noqa: S307 - the test's own text


REDUCTIONS = [
    # (our expression, NumPy's, the input's shape)
    ("mean(x)", "np.mean(x)", (0,)),
    ("var(x)", "np.var(x)", (0,)),
    ("std(x)", "np.std(x)", (0,)),
    ("sum(x)", "np.sum(x)", (0,)),
    ("prod(x)", "np.prod(x)", (0,)),
    ("mean(x)", "np.mean(x)", (0, 3)),
    ("sum(mean(x, axis=0))", "np.sum(np.mean(x, axis=0))", (0, 3)),
    ("sum(var(x, axis=0))", "np.sum(np.var(x, axis=0))", (0, 3)),
    ("sum(std(x, axis=0))", "np.sum(np.std(x, axis=0))", (0, 3)),
    ("sum(mean(x, axis=1))", "np.sum(np.mean(x, axis=1))", (3, 0)),
    ("sum(var(x, axis=1))", "np.sum(np.var(x, axis=1))", (3, 0)),
    ("sum(x * 2)", "np.sum(x * 2)", (2, 0, 3)),
]


@pytest.mark.parametrize(("endpoint", "extra"), ENDPOINTS)
@pytest.mark.parametrize(("expression", "reference", "shape"), REDUCTIONS)
def test_reductions_of_empty_arrays_answer_what_numpy_does(
    endpoint: str, extra: dict[str, Any], expression: str, reference: str, shape: tuple[int, ...]
) -> None:
    x = np.zeros(shape)
    expected = numpy_value(reference, x)
    result = answer(
        endpoint, expression, {"x": empty(*shape)}, **extra, **directions(endpoint, expected, x)
    )
    np.testing.assert_array_equal(result["value"], expected)  # nan == nan here
    for key in ("gradients", "vjp", "hvp"):
        if key in result:
            assert np.shape(result[key]["x"]) == shape
    if "jacobian" in result:
        assert np.shape(result["jacobian"]["x"]) == np.shape(expected) + shape
    if "hessian" in result:
        assert np.shape(result["hessian"]["x"]["x"]) == shape + shape
    if not np.all(np.isfinite(expected)):
        assert any("value" in w for w in result["warnings"]), result.get("warnings")


@pytest.mark.parametrize(("endpoint", "extra"), ENDPOINTS)
@pytest.mark.parametrize("expression", ["max(x)", "min(x)", "sum(softmax(x))"])
def test_reductions_numpy_refuses_on_empty_arrays_are_a_clear_422(
    endpoint: str, extra: dict[str, Any], expression: str
) -> None:
    x = np.zeros(0)
    with pytest.raises(AutodiffError) as err:
        answer(endpoint, expression, {"x": empty(0)}, **extra, **directions(endpoint, x, x))
    assert status_of(err.value) == 422 and "zero-size" in err.value.message


@pytest.mark.parametrize(("endpoint", "extra"), ENDPOINTS)
@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("extra_ddof", [0, 1, 3])
def test_no_degrees_of_freedom_left_answers_what_numpy_does(
    endpoint: str, extra: dict[str, Any], op: str, extra_ddof: int
) -> None:
    """ddof >= count: NumPy answers inf (or nan) with a warning; the derivative is not
    finite either, and ddof > count is the same as ddof == count (NumPy clips at 0)."""
    x = np.array([1.0, 2.0, 4.0])
    ddof = x.size + extra_ddof
    expected = numpy_value(f"np.{op}(x, ddof={ddof})", x)
    expression = f"{op}(x, ddof={ddof})"
    result = answer(
        endpoint, expression, {"x": x.tolist()}, **extra, **directions(endpoint, expected, x)
    )
    np.testing.assert_array_equal(result["value"], expected)
    assert result["warnings"]
    same = answer(
        endpoint,
        f"{op}(x, ddof={x.size})",
        {"x": x.tolist()},
        **extra,
        **directions(endpoint, expected, x),
    )
    for key in ("gradients", "vjp", "jvp", "jacobian", "hessian", "hvp"):
        if key in result:
            np.testing.assert_array_equal(
                np.asarray(_first(result[key]), dtype=float),
                np.asarray(_first(same[key]), dtype=float),
            )
            assert not np.all(np.isfinite(np.asarray(_first(result[key]), dtype=float)))


def _first(value: Any) -> Any:
    while isinstance(value, dict):
        value = next(iter(value.values()))
    return value


@pytest.mark.parametrize(
    "shape",
    [[0, 10**12, 10**12], [0, 2**62, 2**62], [10**13, 0], [0, 2**63 - 1], [0, 10**7]],
)
@pytest.mark.parametrize("field", ["inputs", "tangents"])
def test_empty_shapes_with_huge_other_dimensions_are_refused_by_their_span(
    shape: list[int], field: str
) -> None:
    inputs = {"x": empty(*shape) if field == "inputs" else empty(0)}
    extra = {"tangents": {"x": empty(*shape)}} if field == "tangents" else {}
    with pytest.raises(SizeLimitError) as err:
        answer("jvp", "x * 2", inputs, **extra)
    assert "no elements" in err.value.message and err.value.loc[-1] == "shape"


def test_empty_shapes_within_the_limit_are_answered() -> None:
    result = answer("grad", "sum(x)", {"x": empty(0, 100, 100)})
    assert result["value"] == 0.0
    assert result["gradients"]["x"].shape == (0, 100, 100)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize(
    ("expression", "out_shape"),
    [("x[2:, 0]", (0,)), ("x[2:, :]", (0, 3)), ("x[:, 3:]", (2, 0)), ("x[None, 2:]", (1, 0, 3))],
)
def test_jacobian_of_an_empty_output_keeps_its_shape(
    mode: str, expression: str, out_shape: tuple[int, ...]
) -> None:
    x = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    result = answer("jacobian", expression, {"x": x}, mode=mode)
    assert np.shape(result["value"]) == out_shape
    assert np.shape(result["jacobian"]["x"]) == out_shape + (2, 3)


def test_several_outputs_one_empty() -> None:
    for mode in ("forward", "reverse"):
        result = answer("jacobian", "(x[2:, 0], sum(x * x))", {"x": [[1.0, 2.0]] * 2}, mode=mode)
        assert np.shape(result["jacobian"]["x"][0]) == (0, 2, 2)
        np.testing.assert_array_equal(result["jacobian"]["x"][1], [[2.0, 4.0], [2.0, 4.0]])


def test_an_empty_cotangent_fits_any_empty_output() -> None:
    result = answer("vjp", "x[2:, :]", {"x": [[1.0, 2.0]] * 2}, cotangent=[])
    np.testing.assert_array_equal(result["vjp"]["x"], np.zeros((2, 2)))


@pytest.mark.parametrize("endpoint", ["hessian", "hvp"])
@pytest.mark.parametrize(
    ("expression", "diagonal"),
    [
        ("sum(where(x, x, 0))", lambda x: np.zeros_like(x)),
        ("sum(where(x, x * x, 0))", lambda x: np.where(x != 0, 2.0, 0.0)),
        ("sum(where(x, 0, x ** 3))", lambda x: np.where(x != 0, 0.0, 6 * x)),
        ("sum(where(x, 1.0, 0.0) * x * x)", lambda x: np.where(x != 0, 2.0, 0.0)),
    ],
)
def test_second_derivatives_through_a_float_condition(
    endpoint: str, expression: str, diagonal: Any
) -> None:
    """A traced float condition gets no derivative, but its tangent must not drop the
    Hessian's batch of rows (it was a 500)."""
    x = np.array([1.0, 0.0, -2.0])
    v = np.array([1.0, 2.0, 3.0])
    extra = {"vectors": {"x": v.tolist()}} if endpoint == "hvp" else {}
    result = answer(endpoint, expression, {"x": x.tolist()}, **extra)
    expected = np.diag(diagonal(x))
    if endpoint == "hessian":
        np.testing.assert_allclose(result["hessian"]["x"]["x"], expected)
    else:
        np.testing.assert_allclose(result["hvp"]["x"], expected @ v)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_of_where_with_only_a_traced_condition(mode: str) -> None:
    result = answer("jacobian", "where(x, 1.0, 0.0) * 2", {"x": [1.0, 0.0]}, mode=mode)
    np.testing.assert_array_equal(result["jacobian"]["x"], np.zeros((2, 2)))


@pytest.mark.parametrize(("endpoint", "extra"), ENDPOINTS)
@pytest.mark.parametrize("expression", ["greater(x, 0.5)", "sum(greater(x, 0.5))"])
def test_check_of_a_boolean_output(endpoint: str, extra: dict[str, Any], expression: str) -> None:
    """Finite differences of a comparison are zero, not a TypeError (found by fuzzing)."""
    x = np.array([1.0, 0.0])
    out = np.zeros(2) if expression.startswith("greater") else np.float64(0.0)
    more = directions(endpoint, out, x)
    try:
        result = answer(endpoint, expression, {"x": x.tolist()}, check=True, **extra, **more)
    except AutodiffError as err:  # a gradient or Hessian of a non-scalar: the user's error
        assert status_of(err) == 422 and out.ndim == 1
        return
    assert result["check"]["max_abs_error"] == 0.0
