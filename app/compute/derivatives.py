"""The six derivatives, each from a prepared ``Problem`` to a plain dict of NumPy arrays.

No web imports. Each function is one endpoint's computation; ``app.compute.endpoints``
names them. Every derivative is in the dtype the endpoint's contract says
(``problem.in_dtype``): PyTorch's and jax.grad's rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

import engine
import engine.transforms
from app.compute import progress
from app.compute.problem import (
    Problem,
    batched_cotangents,
    by_name,
    cotangents_for,
    directions_for,
    elapsed_ms,
    finish_recording,
    in_dtype,
    locate_nonfinite,
    output_list,
    output_value,
    recording,
    shapes_text,
)
from app.compute.task import TaskLimits
from engine.errors import NonScalarOutputError, ShapeError, SizeLimitError


def _forward_vjp(problem: Problem) -> tuple[list[Any], bool, Callable[..., Any] | None]:
    """Forward pass recording a tape: outputs, several?, and the VJP function."""
    tick = time.perf_counter()
    with recording(problem) as rec:
        f = problem.fn(rec)
        if problem.diff:
            out, vjp_fn = engine.vjp(f, *problem.primals)
        else:
            out, vjp_fn = f(), None
    finish_recording(problem, rec)
    problem.timing["forward"] = elapsed_ms(tick)
    outs, multi = output_list(out)
    locate_nonfinite(problem, outs)
    return outs, multi, vjp_fn


def _pull_back(problem: Problem, vjp_fn: Any, cots: list[Any], multi: bool) -> dict[str, Any]:
    tick = time.perf_counter()
    grads: Any = ()
    if vjp_fn is not None:
        grads = vjp_fn(tuple(cots) if multi else cots[0])
    problem.timing["backward"] = elapsed_ms(tick)
    return by_name(problem, list(grads))


def grad(problem: Problem) -> dict[str, Any]:
    """Gradient of a scalar output, or the VJP with a given cotangent."""
    outs, multi, vjp_fn = _forward_vjp(problem)
    cots = cotangents_for(problem, outs, multi, required=False)
    if multi and problem.task.cotangent is None:
        problem.warnings.append(
            f"the function has {len(outs)} outputs and no cotangent was given: the gradients "
            "are of their sum, as torch.autograd.backward([y1, y2]) gives (pass a 'cotangent' "
            "per output to weigh them)"
        )
    return {
        "value": output_value(outs, multi),
        "gradients": _pull_back(problem, vjp_fn, cots, multi),
    }


def vjp(problem: Problem) -> dict[str, Any]:
    """Vector-Jacobian product with the given cotangent(s) (K of them with ``cotangents``)."""
    if problem.task.cotangents is not None:
        return _vjp_many(problem)
    outs, multi, vjp_fn = _forward_vjp(problem)
    cots = cotangents_for(problem, outs, multi, required=True)
    return {"value": output_value(outs, multi), "vjp": _pull_back(problem, vjp_fn, cots, multi)}


def jvp(problem: Problem) -> dict[str, Any]:
    """Jacobian-vector product in forward mode (one pass, no tape)."""
    tangents = directions_for(problem, "tangents")
    if problem.task.tangents_batch is not None:
        return _jvp_many(problem, tangents)
    tick = time.perf_counter()
    with recording(problem) as rec:
        f = problem.fn(rec)
        if problem.diff:
            out, t_out = engine.jvp(f, problem.primals, tangents)
        else:
            out, t_out = f(), None
    finish_recording(problem, rec)
    problem.timing["forward"] = elapsed_ms(tick)
    outs, multi = output_list(out)
    locate_nonfinite(problem, outs)
    touts = [np.zeros_like(o) for o in outs] if t_out is None else output_list(t_out)[0]
    touts = [in_dtype(t, o.dtype) for t, o in zip(touts, outs, strict=True)]
    return {"value": output_value(outs, multi), "jvp": output_value(touts, multi)}


def _plain_forward(problem: Problem) -> tuple[list[Any], bool]:
    """The forward pass before a Jacobian or Hessian (its shapes size the work). When the
    graph is asked for, it is traced as /grad traces it (a reverse-mode tape), so every
    endpoint describes the same graph: which nodes require grad, their grad_fn, outputs."""
    tick = time.perf_counter()
    with recording(problem) as rec:
        f = problem.fn(rec)
        if rec is not None and problem.diff:
            out, _ = engine.vjp(f, *problem.primals)
        else:
            out = f(*problem.primals)
    finish_recording(problem, rec)
    problem.timing["forward"] = elapsed_ms(tick)
    outs, multi = output_list(out)
    locate_nonfinite(problem, outs)
    return outs, multi


def check_output(count: int, limits: TaskLimits, what: str = "the answer") -> None:
    """Refuse (413) an answer of more than ``max_output_elements`` numbers in total.

    Called before rendering (a 133-byte /jvp answered 628 MB), and before computing
    where the shapes tell (a Jacobian holds output size x input size numbers).
    """
    limit = limits.max_output_elements
    if count > limit:
        raise SizeLimitError(
            f"{what} would hold {count:,} numbers, over the limit of {limit:,} "
            "(max_output_elements): ask for a smaller result",
            op=None if what == "the answer" else what.removeprefix("the "),
            loc=["body"],
        )


def count_numbers(value: Any) -> int:
    """Numbers in a result: every array's size, through dicts and lists (a few levels)."""
    if isinstance(value, np.ndarray | np.generic):
        return int(value.size)
    if isinstance(value, dict):
        return sum(count_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(count_numbers(v) for v in value)
    return 1 if isinstance(value, int | float) else 0


def _check_size(what: str, count: int, limits: TaskLimits) -> None:
    limit = limits.max_intermediate_elements
    if count > limit:
        raise SizeLimitError(
            f"the {what} would have {count} elements, over the limit of {limit}", op=what
        )


def jacobian(problem: Problem) -> dict[str, Any]:
    """Full Jacobian of every output by every differentiated input, rows in one pass."""
    outs, multi = _plain_forward(problem)  # the shapes, before the Jacobian's memory is taken
    out_size = sum(o.size for o in outs)
    in_size = sum(problem.inputs[n].size for n in problem.diff + problem.zero)
    _check_size("jacobian", out_size * in_size, problem.limits)
    check_output(out_size * in_size + out_size, problem.limits, "the jacobian")
    mode: str = problem.task.mode
    jac: list[list[Any]] = [[] for _ in outs]
    tick = time.perf_counter()
    if problem.diff:
        argnums = tuple(range(len(problem.diff)))
        # a job's rows (reverse) or columns (forward) in chunks, to report progress
        reverse = mode == "reverse" or (mode == "auto" and out_size < in_size)
        _, jac, _, mode = engine.jacobian_and_value(
            problem.fn(),
            problem.primals,
            argnums,
            mode,
            chunk_size=progress.chunk_rows(out_size if reverse else in_size),
            max_elements=problem.limits.max_intermediate_elements,
            progress=progress.chunk_callback(),
            holomorphic=problem.task.holomorphic,
        )
    elif mode == "auto":
        mode = "reverse" if out_size < in_size else "forward"
    problem.timing[mode] = elapsed_ms(tick)
    result: dict[str, Any] = {}
    for name in problem.diff + problem.zero:
        blocks = [_block(problem, row, o, name) for row, o in zip(jac, outs, strict=True)]
        result[name] = blocks if multi else blocks[0]
    return {"value": output_value(outs, multi), "jacobian": result, "mode": mode}


def _block(problem: Problem, row: list[Any], out: Any, name: str) -> Any:
    x = problem.inputs[name]
    if name in problem.zero:
        return np.zeros(out.shape + x.shape, dtype=x.dtype)
    return in_dtype(row[problem.diff.index(name)], x.dtype)


def _scalar_forward(problem: Problem, what: str) -> Any:
    outs, multi = _plain_forward(problem)
    if multi or outs[0].size != 1:
        raise NonScalarOutputError(
            f"{what} needs one scalar output, got shape {shapes_text(outs, multi)}: "
            "reduce the output, e.g. with sum(...)",
            shapes=[o.shape for o in outs],
            loc=["body"],
        )
    return outs[0]


def hessian(problem: Problem) -> dict[str, Any]:
    """Value, gradient and Hessian (by pairs of input names) of a scalar output."""
    in_size = sum(problem.inputs[n].size for n in problem.diff + problem.zero)
    _check_size("hessian", in_size * in_size, problem.limits)
    check_output(in_size * in_size + in_size + 1, problem.limits, "the hessian")
    value = _scalar_forward(problem, "a Hessian")
    tick = time.perf_counter()
    grads: Any = []
    blocks: Any = []
    if problem.diff:
        argnums = tuple(range(len(problem.diff)))
        value, grads, blocks = engine.hessian_and_grad(
            problem.fn(),
            problem.primals,
            argnums,
            max_elements=problem.limits.max_intermediate_elements,
            chunk_size=progress.chunk_rows(in_size),  # a job's: in chunks, for its progress
            progress=progress.chunk_callback(),
            holomorphic=problem.task.holomorphic,
        )
    problem.timing["hessian"] = elapsed_ms(tick)
    names = problem.diff + problem.zero
    table = {a: {b: _hessian_block(problem, blocks, a, b) for b in names} for a in names}
    return {"value": np.asarray(value), "gradients": by_name(problem, grads), "hessian": table}


def _hessian_block(problem: Problem, blocks: Any, a: str, b: str) -> Any:
    x, y = problem.inputs[a], problem.inputs[b]
    dtype = np.result_type(x, y)
    if a in problem.zero or b in problem.zero:
        return np.zeros(x.shape + y.shape, dtype=dtype)
    return in_dtype(blocks[problem.diff.index(a)][problem.diff.index(b)], dtype)


def hvp(problem: Problem) -> dict[str, Any]:
    """Hessian-vector product without forming the Hessian (K of them with vectors_batch)."""
    vectors = directions_for(problem, "vectors")
    value = _scalar_forward(problem, "a Hessian-vector product")
    many = problem.task.vectors_batch is not None
    k = problem.directions
    if many:
        _check_directions(problem, k, [value], 3)
    tick = time.perf_counter()
    values: Any = []
    if problem.diff:
        transform = engine.hvp_many if many else engine.hvp_and_grad
        value, _, values = transform(
            problem.fn(), problem.primals, vectors, holomorphic=problem.task.holomorphic
        )
    problem.timing["hvp"] = elapsed_ms(tick)
    products = _by_name_many(problem, list(values), k) if many else by_name(problem, list(values))
    return {"value": np.asarray(value), "hvp": products}


# --------------------------------------------------------------------------- K directions
# One vectorised pass for K directions (engine.vjp_many, jvp_many, hvp_many). The work and
# memory of the pass are K times one direction's: K x the largest intermediate is checked
# against max_intermediate_elements, and the answer's size against max_output_elements,
# before the pass runs.


def _peak(problem: Problem) -> int:
    """Elements of the largest value of one traced forward pass (plain NumPy, no tape)."""
    trace = engine.transforms.Trace(problem.fn(), problem.primals)
    return engine.transforms.peak_size(trace) if problem.diff else 1


def _check_directions(problem: Problem, k: int, outs: list[Any], passes: int) -> None:
    """Refuse (413) K directions whose pass or answer would be over the limits."""
    in_size = sum(problem.inputs[n].size for n in problem.diff + problem.zero)
    out_size = sum(o.size for o in outs)
    check_output(k * (in_size + out_size) + out_size, problem.limits, "the answer")
    if not problem.diff:
        return
    peak = _peak(problem) * passes
    limit = problem.limits.max_intermediate_elements
    if k * peak > limit:
        raise SizeLimitError(
            f"{k} directions would make intermediates of {k} x {peak:,} = {k * peak:,} "
            f"elements, over the limit of {limit:,} (max_intermediate_elements): send fewer "
            "directions per request",
            op="directions",
            loc=["body"],
        )


def _by_name_many(problem: Problem, values: list[Any], k: int) -> dict[str, Any]:
    """Products by input name, each (K, *input.shape) in its input's dtype."""
    out: dict[str, Any] = {}
    for name, value in zip(problem.diff, values, strict=True):
        out[name] = in_dtype(value, problem.inputs[name].dtype)
    for name in problem.zero:
        x = problem.inputs[name]
        out[name] = np.zeros((k, *x.shape), dtype=x.dtype)
    return out


def _vjp_many(problem: Problem) -> dict[str, Any]:
    outs, multi = _plain_forward(problem)
    cots = batched_cotangents(problem, outs, multi)
    ks = {c.shape[0] for c in cots}
    if len(ks) > 1:
        raise ShapeError(
            f"cotangents gives different numbers of directions per output: {sorted(ks)}",
            loc=["body", "cotangents"],
        )
    k = ks.pop()
    _check_directions(problem, k, outs, 2)
    tick = time.perf_counter()
    grads: Any = []
    if problem.diff:
        _, grads = engine.vjp_many(problem.fn(), problem.primals, cots)
    problem.timing["backward"] = elapsed_ms(tick)
    return {"value": output_value(outs, multi), "vjp": _by_name_many(problem, list(grads), k)}


def _jvp_many(problem: Problem, tangents: tuple[Any, ...]) -> dict[str, Any]:
    outs, multi = _plain_forward(problem)
    k = problem.directions
    _check_directions(problem, k, outs, 2)
    tick = time.perf_counter()
    if problem.diff:
        _, t_out = engine.jvp_many(problem.fn(), problem.primals, list(tangents))
        touts = output_list(t_out)[0]
    else:
        touts = [np.zeros((k, *o.shape), dtype=o.dtype) for o in outs]
    problem.timing["jvp"] = elapsed_ms(tick)
    touts = [in_dtype(t, o.dtype) for t, o in zip(touts, outs, strict=True)]
    return {"value": output_value(outs, multi), "jvp": output_value(touts, multi)}
