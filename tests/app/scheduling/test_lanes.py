"""choose_lane without HTTP: the lane rule is a pure function of task, program and settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pybase64

from app.compute.problem import compile_program
from app.compute.task import Task
from app.scheduling.lanes import POOL, THREAD_MAX_ELEMENT_OPS, Lane, choose_lane, small_program
from tests.app.tasks import make_task


@dataclass
class LaneLimits:
    """Only what the lane rule reads (any object with these attributes will do)."""

    inline_max_ops: int = 64
    inline_max_elements: int = 4096
    inline_max_body_bytes: int = 16 * 4096 + 4096
    thread_max_elements: int = 200_000
    thread_max_body_bytes: int = 8_000_000


LIMITS = LaneLimits()


def lane_of(expression: str, endpoint: str = "grad", **fields: Any) -> Lane:
    task = make_task({"endpoint": endpoint, "expression": expression, "inputs": {}, **fields})
    return choose_lane(task, small_program(task, LIMITS), LIMITS)


def test_small_loop_free_gradients_run_on_the_loop() -> None:
    assert lane_of("sum(sin(x) * x)") == Lane("loop", LIMITS.inline_max_elements)
    assert lane_of("x @ x") == Lane("loop", LIMITS.inline_max_elements)  # small: any op


def test_work_that_grows_with_the_input_goes_to_the_pool() -> None:
    assert lane_of("sum(x * x)", endpoint="jacobian") == POOL
    assert lane_of("sum(x * x)", endpoint="hessian") == POOL
    assert lane_of("sum(x * x)", check=True) == POOL
    assert lane_of("y = x\nwhile sum(y) < 3:\n    y = y + 1\nreturn sum(y)") == POOL
    assert lane_of("einsum('i,i->', x, x)", body_bytes=LIMITS.inline_max_body_bytes + 1) == POOL


def test_a_task_too_big_for_the_loop_goes_to_the_thread_only_if_linear() -> None:
    # the next lane after the loop (its cap was hit): the thread, for linear-cost ops only
    task = make_task({"endpoint": "grad", "expression": "sum(sin(x) * x)", "inputs": {}})
    program = small_program(task, LIMITS)
    sites = 3
    expected = min(LIMITS.thread_max_elements, THREAD_MAX_ELEMENT_OPS // sites)
    assert choose_lane(task, program, LIMITS, after="loop") == Lane("thread", expected)
    matmul = make_task({"endpoint": "grad", "expression": "sum(x @ x)", "inputs": {}})
    assert choose_lane(matmul, small_program(matmul, LIMITS), LIMITS, after="loop") == POOL
    assert choose_lane(task, program, LIMITS, after="thread") == POOL


def test_a_large_body_is_for_the_thread_when_it_is_b64(rng: np.random.Generator) -> None:
    x = rng.standard_normal(50_000)
    text = pybase64.b64encode_as_string(x.tobytes())
    fields = {"endpoint": "grad", "expression": "sum(sin(x))", "inputs": {"x": {"b64": text}}}
    b64_task = make_task({**fields, "body_bytes": len(text) + 200})
    assert choose_lane(b64_task, small_program(b64_task, LIMITS), LIMITS).name == "thread"
    # the same size as JSON numbers: decoding would hold the GIL, so the pool
    json_task = make_task({**fields, "body_bytes": len(text) + 200, "inputs": {"x": x.tolist()}})
    assert small_program(json_task, LIMITS) is None
    assert choose_lane(json_task, None, LIMITS) == POOL


def test_the_rule_needs_no_settings_class_and_no_web() -> None:
    task: Task = make_task({"endpoint": "hvp", "expression": "sum(x * x)", "inputs": {}})
    program = compile_program(task)
    assert choose_lane(task, program, LaneLimits(inline_max_elements=0)).name == "thread"
    assert (
        choose_lane(task, program, LaneLimits(inline_max_elements=0, thread_max_elements=0)) == POOL
    )


def test_a_batch_runs_in_process_only_when_every_op_has_a_batching_rule() -> None:
    """A batch's sizes are B x per point, which the lane caps bound; an op batched point by
    point (the fallback) makes B op calls per site, which they do not: the pool."""
    assert lane_of("sum(tanh(W @ x))", batch=["x"]) == Lane("loop", LIMITS.inline_max_elements)
    assert lane_of("sum(diag(x))", batch=["x"]) == POOL
    assert lane_of("sum(diag(x))") == Lane("loop", LIMITS.inline_max_elements)
