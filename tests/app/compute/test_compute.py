"""app.compute without the web layer, and the worker pool on its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.api.errors import status_of  # engine errors carry no status (issue 14)
from app.api.tasks import task_limits
from app.compute import checks
from app.compute.problem import compile_program
from app.scheduling import cost, lanes, spill
from app.scheduling.errors import ComputeTimeoutError, QueueFullError, WorkerDiedError
from app.scheduling.pool import WorkerPool
from app.scheduling.worker import ping
from app.settings import Settings
from engine.errors import AutodiffError, NonScalarOutputError, SizeLimitError, UnknownNameError
from tests.app.tasks import make_task, run_encoded_task, run_task

SETTINGS = Settings(max_input_elements=10_000, max_intermediate_elements=1_000_000)


def task(endpoint: str, expression: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "expression": expression,
        "graph": None,
        "inputs": inputs,
        "limits": task_limits(SETTINGS),
        **extra,
    }


def test_grad_closes_over_constants() -> None:
    c = {"data": [0.5, 2.0], "requires_grad": False}
    result = run_task(task("grad", "sum(x * c)", {"x": [1.0, 1.0], "c": c}))
    np.testing.assert_allclose(result["gradients"]["x"], [0.5, 2.0])
    assert "c" not in result["gradients"]
    assert result["value"] == pytest.approx(2.5)
    assert {"parse", "decode", "forward", "backward", "total"} <= set(result["timing_ms"])


def test_missing_input_is_named() -> None:
    with pytest.raises(UnknownNameError) as err:
        run_task(task("grad", "sum(x * y * z)", {"x": 1.0}))
    assert "'y'" in err.value.message and "'z'" in err.value.message


def test_unused_input_gets_zero_gradient_and_a_warning() -> None:
    result = run_task(task("grad", "sum(x)", {"x": [1.0], "w": [[1.0, 2.0]]}))
    np.testing.assert_array_equal(result["gradients"]["w"], [[0.0, 0.0]])
    assert any("'w'" in w for w in result["warnings"])


def test_only_constants_answers_the_value() -> None:
    result = run_task(
        task("grad", "sum(x) * 2", {"x": {"data": [1.0, 2.0], "requires_grad": False}})
    )
    assert result["value"] == pytest.approx(6.0)
    assert result["gradients"] == {}


def test_nonscalar_without_cotangent() -> None:
    with pytest.raises(NonScalarOutputError) as err:
        run_task(task("grad", "x * 2", {"x": [1.0, 2.0]}))
    assert "cotangent" in err.value.message


def test_size_one_output_counts_as_scalar() -> None:
    result = run_task(task("grad", "x * 3", {"x": [2.0]}))
    np.testing.assert_allclose(result["gradients"]["x"], [3.0])


def test_jvp_needs_a_tangent_per_input() -> None:
    with pytest.raises(AutodiffError) as err:
        run_task(task("jvp", "x * y", {"x": 1.0, "y": 2.0}, tangents={"x": 1.0}, wrt=["x", "y"]))
    assert err.value.loc == ["body", "tangents"]
    result = run_task(task("jvp", "x * y", {"x": 1.0, "y": 2.0}, tangents={"x": 1.0}))
    assert float(result["jvp"]) == pytest.approx(2.0)  # y is not a direction: held constant


def test_jacobian_size_is_checked_before_running() -> None:
    small = Settings(max_intermediate_elements=99)
    t = task("jacobian", "x * 2", {"x": [0.0] * 10})
    t["limits"] = task_limits(small)
    with pytest.raises(SizeLimitError) as err:
        run_task(t)
    assert "100" in err.value.message


def test_jacobian_mode_auto_and_zero_blocks() -> None:
    result = run_task(task("jacobian", "sum(x * x)", {"x": [1.0, 2.0], "u": [5.0]}))
    assert result["mode"] == "reverse"
    np.testing.assert_allclose(result["jacobian"]["x"], [2.0, 4.0])
    np.testing.assert_array_equal(result["jacobian"]["u"], [0.0])


def test_hessian_and_hvp_of_a_quadratic() -> None:
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    expr = "0.5 * sum(x * matmul(a, x))"
    inputs = {"x": [1.0, -1.0], "a": {"data": a.tolist(), "requires_grad": False}}
    h = run_task(task("hessian", expr, inputs))
    np.testing.assert_allclose(h["hessian"]["x"]["x"], a)
    np.testing.assert_allclose(h["gradients"]["x"], a @ [1.0, -1.0])
    hv = run_task(task("hvp", expr, inputs, vectors={"x": [1.0, 2.0]}))
    np.testing.assert_allclose(hv["hvp"]["x"], a @ [1.0, 2.0])


def test_check_uses_random_directions_for_large_inputs() -> None:
    x = np.linspace(-1, 1, 50).tolist()
    result = run_task(task("grad", "sum(tanh(x) ** 2)", {"x": x}, check=True))
    assert result["check"]["directions"] == checks.FD_RANDOM_DIRECTIONS
    assert result["check"]["max_rel_error"] < 1e-6


def test_check_detects_a_wrong_derivative() -> None:
    # detach hides a dependence from AD but not from finite differences
    result = run_task(task("grad", "sum(detach(x) * x)", {"x": [1.0, 2.0]}, check=True))
    assert result["check"]["max_rel_error"] > 0.1


def test_nonfinite_origin_is_located() -> None:
    result = run_task(task("grad", "y = x * 0\nreturn sum(sqrt(y) + log(y))", {"x": [1.0]}))
    assert any("log" in w and "line 2" in w for w in result["warnings"])


def test_graph_input_runs_like_text() -> None:
    graph = {
        "nodes": [
            {"id": "s", "op": "sin", "inputs": ["x"]},
            {"id": "t", "op": "sum", "inputs": ["s"]},
        ],
        "outputs": ["t"],
    }
    t = task("grad", "", {"x": [0.0, 1.0]})
    t.update(expression=None, graph=graph)
    result = run_task(t)
    np.testing.assert_allclose(result["gradients"]["x"], np.cos([0.0, 1.0]))


def test_run_encoded_gives_json_bytes() -> None:
    body, timing, started = run_encoded_task(task("grad", "sum(x)", {"x": [1.0]}, encoding="json"))
    assert orjson.loads(body)["gradients"] == {"x": [1.0]}
    assert "encode" in timing and started <= time.perf_counter()


def test_inline_eligibility() -> None:
    def small(fields: dict[str, Any], max_ops: int) -> Any:
        return lanes.small_program(make_task(fields), Settings(inline_max_ops=max_ops))

    assert small(task("grad", "sum(x)", {}), max_ops=10) is not None
    loop = task("grad", "y = x\nwhile y < 3:\n    y = y + 1\nreturn y", {})
    assert small(loop, 10) is None
    assert small(task("grad", "sum(sin(cos(x)))", {}), max_ops=2) is None


# --------------------------------------------------------------------------- the pool


def test_pool_timeout_crash_and_full_queue() -> None:
    settings = Settings(workers=1, time_limit_s=0.5, queue_size=0, worker_memory_mb=0)

    async def scenario() -> None:
        pool = WorkerPool(settings)
        pool.start()
        try:
            await pool.warm_up()
            assert pool.ready
            with pytest.raises(ComputeTimeoutError):
                await pool.run(time.sleep, 5)
            assert await pool.run(ping) > 0  # the worker was replaced
            with pytest.raises(WorkerDiedError):
                await pool.run(os._exit, 1)
            assert await pool.run(ping) > 0
            slow = asyncio.ensure_future(pool.run(time.sleep, 0.2))
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError) as err:
                await pool.run(ping)
            assert err.value.retry_after_s
            await slow
            assert pool.in_flight == 0
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_worker_memory_cap_answers_413() -> None:
    settings = Settings(workers=1, time_limit_s=5.0, worker_memory_mb=600)

    async def scenario() -> None:
        pool = WorkerPool(settings)
        pool.start()
        try:
            with pytest.raises(SizeLimitError):
                await pool.run(bytearray, 2_000_000_000)  # 2 GB against a 600 MiB cap
            assert await pool.run(bytearray, 1000) == bytearray(1000)
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_compute_imports_no_web_framework() -> None:
    code = (
        "import sys, app.compute.run, app.scheduling.spill\n"
        "bad = [m for m in ('fastapi', 'starlette', 'pydantic') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_large_bodies_and_answers_cross_as_files(tmp_path: Path) -> None:
    x = np.linspace(0.0, 1.0, 40_000)
    body = orjson.dumps({"expression": "sum(x * x)", "inputs": {"x": x.tolist()}})
    assert len(body) >= spill.SPILL_MIN_BYTES
    body_file = spill.spill(body, str(tmp_path))
    assert body_file is not None
    t = task("grad", "sum(x * x)", {})  # the arrays come from the file
    t["limits"] = task_limits(Settings())
    payload, _, _ = spill.run_spilled(make_task(t), body_file, str(tmp_path))
    assert isinstance(payload, str)  # the answer was spilled too
    answer = orjson.loads(spill.unspill(payload))
    np.testing.assert_allclose(answer["gradients"]["x"], 2 * x)
    assert list(tmp_path.iterdir()) == []  # both files were removed
    assert spill.spill(b"small", str(tmp_path)) is None  # small data stays in-band


def test_op_census_counts_every_site_indexing_included() -> None:
    program = compile_program(make_task(task("grad", "y = x[1:2]\nreturn sum(y[0] * x[0])", {})))
    names, sites = cost.op_census(program)
    assert names == {"getitem", "multiply", "sum"}
    assert sites == 5  # three getitems, a multiply and a sum
    graph = {"nodes": [{"id": "y", "op": "matmul", "inputs": ["a", "b"]}], "outputs": ["y"]}
    names, sites = cost.op_census(
        compile_program(make_task({**task("grad", "", {}), "expression": None, "graph": graph}))
    )
    assert (names, sites) == ({"matmul"}, 1)


def test_linear_ops_are_real_ops_and_leave_out_superlinear_work() -> None:
    from engine.registry import OPS

    assert set(OPS) >= cost.LINEAR_OPS
    for name in (
        "matmul",
        "dot",
        "inner",
        "tensordot",
        "einsum",
        "inv",
        "det",
        "slogdet",
        "solve",
        "cholesky",
        "norm",
    ):
        assert name not in cost.LINEAR_OPS
    assert cost.linear_cost(compile_program(make_task(task("grad", "sum(sin(x) * x[0])", {}))))
    assert not cost.linear_cost(compile_program(make_task(task("grad", "x @ x", {}))))


# --------------------------------------------------------------------------- issue 13, B8-B12

# the direction each endpoint needs, for the inputs it differentiates
DIRECTIONS = {
    "grad": lambda names, shapes: {},
    "vjp": lambda names, shapes: {"cotangent": 1.0},
    "jvp": lambda names, shapes: {"tangents": {n: np.ones(shapes[n]).tolist() for n in names}},
    "jacobian": lambda names, shapes: {},
    "jacobian-forward": lambda names, shapes: {"mode": "forward"},
    "jacobian-reverse": lambda names, shapes: {"mode": "reverse"},
    "hessian": lambda names, shapes: {},
    "hvp": lambda names, shapes: {"vectors": {n: np.ones(shapes[n]).tolist() for n in names}},
}
C = {"data": [0.5, -2.0, 3.0], "requires_grad": False}
GRAPH_FUNCTIONS = [
    ("sum(x ** 3)", {"x": [1.0, 2.0, 3.0]}),
    ("sum(sign(x) * x) + sum(c * x) + sum(c)", {"x": [1.0, -2.0, 3.0], "c": C}),
    ("sum(x // 2.0 + x) * 1.0", {"x": [1.0, -2.0, 3.0]}),
    ("sum(where(x > 0, x, detach(x)) * x)", {"x": [1.0, -2.0, 3.0]}),
    ("y = stack([x, x * 2])\nif sum(y) > 0:\n    y = y * y\nreturn sum(y)", {"x": [1.0, 2.0, 3.0]}),
    ("sum(full((3,), x[0]) * x) + mean([x[1], x[2] + 2])", {"x": [1.0, 2.0, 3.0]}),
]


def _endpoint_task(endpoint: str, expression: str, inputs: dict[str, Any]) -> dict[str, Any]:
    name = endpoint.split("-")[0]
    shapes = {n: np.shape(v["data"] if isinstance(v, dict) else v) for n, v in inputs.items()}
    diff = [n for n, v in inputs.items() if not isinstance(v, dict) or v.get("requires_grad", 1)]
    return task(name, expression, inputs, **DIRECTIONS[endpoint](diff, shapes))


@pytest.mark.parametrize(("expression", "inputs"), GRAPH_FUNCTIONS)
def test_graph_metadata_is_the_same_on_every_endpoint(
    expression: str, inputs: dict[str, Any]
) -> None:
    graphs = {e: run_task(_endpoint_task(e, expression, inputs))["graph"] for e in DIRECTIONS}
    reference = graphs["grad"]
    assert any(n["grad_fn"] for n in reference["nodes"])  # the traced graph, not constants
    out = reference["outputs"][0]
    assert next(n for n in reference["nodes"] if n["id"] == out)["requires_grad"]
    for endpoint, graph in graphs.items():
        assert graph == reference, endpoint


def test_hessian_graph_is_the_traced_function() -> None:
    for endpoint in ("jacobian", "hessian", "hvp"):
        graph = run_task(_endpoint_task(endpoint, "sum(x ** 3)", {"x": [1.0, 2.0]}))["graph"]
        assert graph["outputs"] == ["sum_1"], endpoint
        rows = {n["id"]: n for n in graph["nodes"]}
        assert set(rows) == {"x", "power_0", "sum_1"}, endpoint
        assert rows["power_0"]["grad_fn"] == "power_backward"
        assert rows["sum_1"]["requires_grad"] and rows["sum_1"]["grad_fn"] == "sum_backward"


def test_sign_requires_grad_in_forward_mode_too() -> None:
    graph = run_task(task("jvp", "sign(x) * x", {"x": [1.0]}, tangents={"x": [1.0]}))["graph"]
    sign = next(n for n in graph["nodes"] if n["op"] == "sign")
    assert sign["requires_grad"] and sign["grad_fn"] == "sign_backward"


X32 = {"data": [1.0, 2.0], "dtype": "float32"}
Y64 = {"data": [0.5, 0.25], "dtype": "float64"}
Z32 = {"data": [0.5, -1.0], "dtype": "float32"}


def _dtypes(result: dict[str, Any], key: str) -> Any:
    value = result[key]
    if isinstance(value, dict):
        return {k: _dtypes(value, k) for k in value}
    return str(np.asarray(value).dtype)


@pytest.mark.parametrize("endpoint", list(DIRECTIONS))
def test_derivative_dtypes_follow_one_rule(endpoint: str) -> None:
    """A derivative with respect to x is in x's dtype; a Hessian block for (x, y) in
    result_type(x, y); a JVP in the output's dtype; on every endpoint alike."""
    inputs = {"x": X32, "y": Y64, "z": Z32}
    # the output is float64 (y is); and one float32 input only meets float32 ones
    result = run_task(_endpoint_task(endpoint, "sum(x * x * y) + sum(z * x)", inputs))
    assert str(np.asarray(result["value"]).dtype) == "float64"
    expected = {"x": "float32", "y": "float64", "z": "float32"}
    name = endpoint.split("-")[0]
    if name in ("grad", "hessian"):
        assert _dtypes(result, "gradients") == expected
    if name in ("vjp", "hvp", "jacobian"):
        assert _dtypes(result, {"vjp": "vjp", "hvp": "hvp", "jacobian": "jacobian"}[name]) == (
            expected
        )
    if name == "jvp":
        assert str(np.asarray(result["jvp"]).dtype) == "float64"
    if name == "hessian":
        for a, row in _dtypes(result, "hessian").items():
            for b, dtype in row.items():
                assert dtype == str(np.result_type(np.dtype(expected[a]), np.dtype(expected[b])))


def test_jvp_of_a_float32_output_is_float32() -> None:
    result = run_task(task("jvp", "x * z", {"x": X32, "z": Z32}, tangents={"x": [1.0, 1.0]}))
    assert result["jvp"].dtype == np.float32


@pytest.mark.parametrize("how", ["requires_grad false", "not in wrt"])
@pytest.mark.parametrize(("endpoint", "key"), [("jvp", "tangents"), ("hvp", "vectors")])
def test_a_constants_direction_is_ignored_with_a_warning(endpoint: str, key: str, how: str) -> None:
    c = [0.5, -2.0]
    if how == "requires_grad false":
        inputs: dict[str, Any] = {"x": [1.0, 3.0], "c": {"data": c, "requires_grad": False}}
        extra: dict[str, Any] = {}
    else:
        inputs, extra = {"x": [1.0, 3.0], "c": c}, {"wrt": ["x"]}
    directions = {"x": [1.0, 0.0], "c": [10.0, 10.0]}
    expression = "sum(x * x * c)"
    with_c = run_task(task(endpoint, expression, inputs, **{key: directions}, **extra))
    without = run_task(task(endpoint, expression, inputs, **{key: {"x": [1.0, 0.0]}}, **extra))
    answer = endpoint  # "jvp" or "hvp"
    if endpoint == "jvp":  # d/dt sum((x + t v)^2 c) = sum(2 x v c) = 2 * 1 * 1 * 0.5
        assert float(with_c[answer]) == pytest.approx(1.0)
    else:  # H v = 2 c v for x
        np.testing.assert_allclose(with_c[answer]["x"], [1.0, 0.0])
        assert "c" not in with_c[answer]
    np.testing.assert_equal(with_c[answer], without[answer])
    assert any("'c'" in w and "ignored" in w for w in with_c["warnings"])
    assert not any("ignored" in w for w in without.get("warnings", []))


def test_wrt_naming_a_constant_is_still_refused() -> None:
    inputs = {"x": [1.0], "c": {"data": [2.0], "requires_grad": False}}
    with pytest.raises(AutodiffError) as err:
        run_task(task("jvp", "x * c", inputs, tangents={"x": [1.0], "c": [1.0]}, wrt=["c"]))
    assert err.value.loc == ["body", "wrt", 0]


def test_several_outputs_without_cotangent_sum_with_a_warning() -> None:
    result = run_task(task("grad", "sum(x * x), sum(3 * x)", {"x": [1.0, 2.0]}))
    np.testing.assert_allclose(result["gradients"]["x"], [5.0, 7.0])  # 2x + 3
    assert any("2 outputs" in w and "sum" in w for w in result["warnings"])
    weighed = run_task(
        task("grad", "sum(x * x), sum(3 * x)", {"x": [1.0, 2.0]}, cotangent=[1.0, 0.0])
    )
    np.testing.assert_allclose(weighed["gradients"]["x"], [2.0, 4.0])
    assert "warnings" not in weighed
    single = run_task(task("grad", "sum(x * x)", {"x": [1.0, 2.0]}))
    assert "warnings" not in single


@pytest.mark.parametrize("endpoint", ["grad", "jvp", "jacobian", "hessian", "hvp"])
def test_graph_outputs_name_the_op_when_nothing_is_differentiated(endpoint: str) -> None:
    inputs = {"x": {"data": [1.0, 2.0], "requires_grad": False}}
    extra: dict[str, Any] = {}
    if endpoint in ("jvp", "hvp"):  # a direction for the constant only: ignored
        extra = {"tangents" if endpoint == "jvp" else "vectors": {"x": [1.0, 1.0]}}
    graph = run_task(task(endpoint, "sum(x * x)", inputs, **extra))["graph"]
    assert graph["outputs"] == ["sum_1"]
    assert [n["id"] for n in graph["nodes"]] == ["x", "multiply_0", "sum_1"]
    assert not any(n["requires_grad"] for n in graph["nodes"])


@pytest.mark.parametrize(("endpoint", "key"), [("jvp", "tangents"), ("hvp", "vectors")])
def test_empty_directions_are_refused_alike(endpoint: str, key: str) -> None:
    with pytest.raises(AutodiffError) as err:
        run_task(task(endpoint, "sum(x * x)", {"x": [1.0]}, **{key: {}}))
    assert status_of(err.value) == 422 and err.value.loc == ["body", key]
