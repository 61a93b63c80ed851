"""compute.py without the web layer, and the worker pool on its own."""

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

from app import compute, encoding
from app.deps import limits
from app.errors import ComputeTimeoutError, QueueFullError, WorkerDiedError
from app.pool import WorkerPool
from app.settings import Settings
from app.worker import ping
from engine.errors import AutodiffError, NonScalarOutputError, SizeLimitError, UnknownNameError

SETTINGS = Settings(max_input_elements=10_000, max_intermediate_elements=1_000_000)


def task(endpoint: str, expression: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "expression": expression,
        "graph": None,
        "inputs": inputs,
        "limits": limits(SETTINGS),
        **extra,
    }


def test_grad_closes_over_constants() -> None:
    c = {"data": [0.5, 2.0], "requires_grad": False}
    result = compute.run(task("grad", "sum(x * c)", {"x": [1.0, 1.0], "c": c}))
    np.testing.assert_allclose(result["gradients"]["x"], [0.5, 2.0])
    assert "c" not in result["gradients"]
    assert result["value"] == pytest.approx(2.5)
    assert {"parse", "decode", "forward", "backward", "total"} <= set(result["timing_ms"])


def test_missing_input_is_named() -> None:
    with pytest.raises(UnknownNameError) as err:
        compute.run(task("grad", "sum(x * y * z)", {"x": 1.0}))
    assert "'y'" in err.value.message and "'z'" in err.value.message


def test_unused_input_gets_zero_gradient_and_a_warning() -> None:
    result = compute.run(task("grad", "sum(x)", {"x": [1.0], "w": [[1.0, 2.0]]}))
    np.testing.assert_array_equal(result["gradients"]["w"], [[0.0, 0.0]])
    assert any("'w'" in w for w in result["warnings"])


def test_only_constants_answers_the_value() -> None:
    result = compute.run(
        task("grad", "sum(x) * 2", {"x": {"data": [1.0, 2.0], "requires_grad": False}})
    )
    assert result["value"] == pytest.approx(6.0)
    assert result["gradients"] == {}


def test_nonscalar_without_cotangent() -> None:
    with pytest.raises(NonScalarOutputError) as err:
        compute.run(task("grad", "x * 2", {"x": [1.0, 2.0]}))
    assert "cotangent" in err.value.message


def test_size_one_output_counts_as_scalar() -> None:
    result = compute.run(task("grad", "x * 3", {"x": [2.0]}))
    np.testing.assert_allclose(result["gradients"]["x"], [3.0])


def test_jvp_needs_a_tangent_per_input() -> None:
    with pytest.raises(AutodiffError) as err:
        compute.run(task("jvp", "x * y", {"x": 1.0, "y": 2.0}, tangents={"x": 1.0}, wrt=["x", "y"]))
    assert err.value.loc == ["body", "tangents"]
    result = compute.run(task("jvp", "x * y", {"x": 1.0, "y": 2.0}, tangents={"x": 1.0}))
    assert float(result["jvp"]) == pytest.approx(2.0)  # y is not a direction: held constant


def test_jacobian_size_is_checked_before_running() -> None:
    small = Settings(max_intermediate_elements=99)
    t = task("jacobian", "x * 2", {"x": [0.0] * 10})
    t["limits"] = limits(small)
    with pytest.raises(SizeLimitError) as err:
        compute.run(t)
    assert "100" in err.value.message


def test_jacobian_mode_auto_and_zero_blocks() -> None:
    result = compute.run(task("jacobian", "sum(x * x)", {"x": [1.0, 2.0], "u": [5.0]}))
    assert result["mode"] == "reverse"
    np.testing.assert_allclose(result["jacobian"]["x"], [2.0, 4.0])
    np.testing.assert_array_equal(result["jacobian"]["u"], [0.0])


def test_hessian_and_hvp_of_a_quadratic() -> None:
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    expr = "0.5 * sum(x * matmul(a, x))"
    inputs = {"x": [1.0, -1.0], "a": {"data": a.tolist(), "requires_grad": False}}
    h = compute.run(task("hessian", expr, inputs))
    np.testing.assert_allclose(h["hessian"]["x"]["x"], a)
    np.testing.assert_allclose(h["gradients"]["x"], a @ [1.0, -1.0])
    hv = compute.run(task("hvp", expr, inputs, vectors={"x": [1.0, 2.0]}))
    np.testing.assert_allclose(hv["hvp"]["x"], a @ [1.0, 2.0])


def test_check_uses_random_directions_for_large_inputs() -> None:
    x = np.linspace(-1, 1, 50).tolist()
    result = compute.run(task("grad", "sum(tanh(x) ** 2)", {"x": x}, check=True))
    assert result["check"]["directions"] == compute.FD_RANDOM_DIRECTIONS
    assert result["check"]["max_rel_error"] < 1e-6


def test_check_detects_a_wrong_derivative() -> None:
    # detach hides a dependence from AD but not from finite differences
    result = compute.run(task("grad", "sum(detach(x) * x)", {"x": [1.0, 2.0]}, check=True))
    assert result["check"]["max_rel_error"] > 0.1


def test_nonfinite_origin_is_located() -> None:
    result = compute.run(task("grad", "y = x * 0\nreturn sum(sqrt(y) + log(y))", {"x": [1.0]}))
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
    result = compute.run(t)
    np.testing.assert_allclose(result["gradients"]["x"], np.cos([0.0, 1.0]))


def test_run_encoded_gives_json_bytes() -> None:
    body, timing, started = compute.run_encoded(
        task("grad", "sum(x)", {"x": [1.0]}, encoding="json")
    )
    assert orjson.loads(body)["gradients"] == {"x": [1.0]}
    assert "encode" in timing and started <= time.perf_counter()


def test_inline_eligibility() -> None:
    assert compute.inline_program(task("grad", "sum(x)", {}), max_ops=10) is not None
    loop = task("grad", "y = x\nwhile y < 3:\n    y = y + 1\nreturn y", {})
    assert compute.inline_program(loop, 10) is None
    assert compute.inline_program(task("grad", "sum(sin(cos(x)))", {}), max_ops=2) is None


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
            assert err.value.headers["Retry-After"]
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
        "import sys, app.compute\n"
        "bad = [m for m in ('fastapi', 'starlette', 'pydantic') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_large_bodies_and_answers_cross_as_files(tmp_path: Path) -> None:
    x = np.linspace(0.0, 1.0, 40_000)
    body = orjson.dumps({"expression": "sum(x * x)", "inputs": {"x": x.tolist()}})
    assert len(body) >= encoding.SPILL_MIN_BYTES
    body_file = encoding.spill(body, str(tmp_path))
    assert body_file is not None
    t = task("grad", "sum(x * x)", {})  # the arrays come from the file
    t.update(body_file=body_file, spill_dir=str(tmp_path))
    t["limits"] = limits(Settings())
    payload, _, _ = compute.run_encoded(t)
    assert isinstance(payload, str)  # the answer was spilled too
    answer = orjson.loads(encoding.unspill(payload))
    np.testing.assert_allclose(answer["gradients"]["x"], 2 * x)
    assert list(tmp_path.iterdir()) == []  # both files were removed
    assert encoding.spill(b"small", str(tmp_path)) is None  # small data stays in-band


def test_op_census_counts_every_site_indexing_included() -> None:
    program = compute.compile_program(task("grad", "y = x[1:2]\nreturn sum(y[0] * x[0])", {}))
    names, sites = compute.op_census(program)
    assert names == {"getitem", "multiply", "sum"}
    assert sites == 5  # three getitems, a multiply and a sum
    graph = {"nodes": [{"id": "y", "op": "matmul", "inputs": ["a", "b"]}], "outputs": ["y"]}
    names, sites = compute.op_census(
        compute.compile_program({**task("grad", "", {}), "expression": None, "graph": graph})
    )
    assert (names, sites) == ({"matmul"}, 1)


def test_linear_ops_are_real_ops_and_leave_out_superlinear_work() -> None:
    from engine.registry import OPS

    assert set(OPS) >= compute.LINEAR_OPS
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
        assert name not in compute.LINEAR_OPS
    assert compute.linear_cost(compute.compile_program(task("grad", "sum(sin(x) * x[0])", {})))
    assert not compute.linear_cost(compute.compile_program(task("grad", "x @ x", {})))
