"""From a task to its answer: the one function every lane runs. No web imports.

``run`` prepares the problem (compile, cached per process; decode the inputs;
differentiate with respect to the ``wrt`` inputs only, every other input closed over
as a constant), computes the endpoint's derivatives and, when asked, their check,
and answers NumPy arrays; ``run_encoded`` also renders the answer to JSON bytes, so
large arrays never cross the process boundary as Python lists.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from app.compute import batch, wire
from app.compute.derivatives import check_output, count_numbers
from app.compute.endpoints import ENDPOINTS
from app.compute.problem import elapsed_ms, prepare
from app.compute.task import Task
from engine import dot

# NumPy's RuntimeWarnings ("Mean of empty slice", "Degrees of freedom <= 0") describe
# values the answer's own warnings name (non-finite values and where they arose): they
# are not printed to the server's stderr, once per process, as well.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy(\.|$)")

# Called with the answer and its encoding before it is rendered; may refuse it (the
# pool worker's memory-cap check, ``app.scheduling.worker.check_answer_fits``).
BeforeRender = Callable[[dict[str, Any], str], None]
Encoded = tuple[bytes, dict[str, float], float]


def run(task: Task, program: Any = None) -> dict[str, Any]:
    """Compute the task's answer as a plain dict of NumPy arrays (and ``timing_ms``).

    ``program`` is the task's compiled function when the caller already has it.
    """
    start = time.perf_counter()
    endpoint = ENDPOINTS[task.endpoint]
    problem = prepare(task, program, endpoint.directions)
    # Non-finite results are answered with warnings, not printed to the server's stderr.
    with np.errstate(all="ignore"):
        if problem.batch is not None:  # B points (and the check, per point)
            result = batch.derive(problem)
            check_output(count_numbers(result), task.limits)
        else:
            result = endpoint.derive(problem)
            check_output(count_numbers(result), task.limits)
        if task.check and problem.batch is None:
            tick = time.perf_counter()
            result["check"] = endpoint.check(problem, result)
            problem.timing["check"] = elapsed_ms(tick)
    if problem.graph is not None:
        result["graph"] = problem.graph
        if task.include_graph == "dot":
            result["graph"] = dot.to_dot(problem.graph, nonfinite=problem.nonfinite_nodes)
    if problem.warnings:
        result["warnings"] = problem.warnings
    problem.timing["total"] = elapsed_ms(start)
    result["timing_ms"] = problem.timing
    return result


def run_encoded(
    task: Task, program: Any = None, before_render: BeforeRender | None = None
) -> Encoded:
    """``run`` then render to JSON bytes (without timing): (body, timing_ms, start time)."""
    start = time.perf_counter()
    result = run(task, program)
    timing = result.pop("timing_ms")
    tick = time.perf_counter()
    if before_render is not None:
        before_render(result, task.encoding)
    body = wire.render(result, task.encoding)
    timing["encode"] = elapsed_ms(tick)
    return body, timing, start
