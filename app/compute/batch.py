"""Batches of points (``batch``): every endpoint at B points in one vectorised pass. No web imports.

With ``batch: ["x", ...]`` the named inputs carry a leading axis of B points and the others
are shared, as JAX's ``vmap(transform(f), in_axes=0 or None)``. The function runs once over
all points (``engine.lang.batched``: the batch axis goes through every op's batching rule);
a shared input that is differentiated is broadcast to B first, so its derivative is per
point too. The transforms then run on that batched function F, unchanged: the points are
independent, so a gradient of F with a cotangent per point is every point's gradient, and a
per-point Jacobian comes from one-hot cotangents (or tangents) broadcast over the points.

Every array of an answer has the leading axis B; with K directions (``cotangents``,
``tangents_batch``, ``vectors_batch``) the axes are (B, K, ...). A direction (cotangent,
tangent, vector) is given either with its per-point shape (shared by every point) or with a
leading axis B (one per point); K directions as (K, *shape) (shared) or (B, K, *shape).

Where the points disagree at a condition or at a traced value read as a static (a ``range``
bound, an index), the run stops (``Divergence``) and the points are grouped by the value
they take there; each group runs again (recursively, in one vectorised pass each) and the
answers are put back in the points' order. Past ``MAX_GROUPS`` groups the request is a 422
naming the condition.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import engine
from app.compute import progress, wire
from app.compute.derivatives import check_output
from app.compute.problem import (
    Problem,
    RequestError,
    cotangents_per_output,
    elapsed_ms,
    finish_recording,
    in_dtype,
    locate_nonfinite,
    output_list,
    output_value,
    recording,
)
from app.compute.wire import clip, short
from engine.errors import (
    AutodiffError,
    LanguageError,
    NonScalarOutputError,
    ShapeError,
    SizeLimitError,
)
from engine.lang.batched import Divergence
from engine.locations import loc_dict, loc_text
from engine.transforms import Trace, check_hessian_inputs, check_jacobian_inputs, peak_size

# At most this many groups of points per request, when control flow differs between the
# points (each group is one more pass of the whole computation).
MAX_GROUPS = 64

# --------------------------------------------------------------------------- preparation


def setup(problem: Problem) -> Problem:
    """Check ``batch`` against the inputs, find B, and broadcast the shared differentiated
    inputs to B (their derivatives are per point). Called by ``problem.prepare``."""
    names = _names(problem)
    sizes: dict[str, int] = {}
    for i, name in enumerate(names):
        x = problem.inputs[name]
        if x.ndim == 0:
            raise ShapeError(
                f"batch names {clip(name)}, a scalar: a batched input needs a leading axis of "
                "B points (give it shape (B, ...))",
                shapes=[x.shape],
                loc=["body", "batch", i],
            )
        sizes[name] = x.shape[0]
    if len(set(sizes.values())) > 1:
        text = ", ".join(f"{clip(n)} has {b}" for n, b in sizes.items())
        raise ShapeError(
            f"the batched inputs disagree on the number of points B: {text} (every input "
            "named in batch needs the same leading axis)",
            shapes=[problem.inputs[n].shape for n in names],
            loc=["body", "batch"],
        )
    size = next(iter(sizes.values()))
    if size == 0:
        raise ShapeError(
            "the batch has no points (B = 0): give at least one point", loc=["body", "batch"]
        )
    inputs = dict(problem.inputs)
    point_shapes = {n: (x.shape[1:] if n in sizes else x.shape) for n, x in inputs.items()}
    for name in problem.diff + problem.zero:
        if name not in sizes:  # a shared input, differentiated: one copy per point (a view)
            inputs[name] = np.broadcast_to(inputs[name], (size, *inputs[name].shape))
    batched = frozenset(sizes) | frozenset(problem.diff)
    _check_sizes(problem, inputs, size)
    consts = {n: v for n, v in inputs.items() if n not in problem.diff}
    return dataclasses.replace(
        problem,
        inputs=inputs,
        consts=consts,
        batch=size,
        batched=batched,
        point_shapes=point_shapes,
        points=np.arange(size),
        request_size=size,
    )


def _points(problem: Problem) -> int:
    """B of this pass (the problem is batched)."""
    assert problem.batch is not None
    return problem.batch


def _names(problem: Problem) -> list[str]:
    names = problem.task.batch or []
    if not names:
        raise RequestError("batch is empty: name at least one input", loc=["body", "batch"])
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name not in problem.inputs:
            raise RequestError(
                f"batch names {clip(name)}, which is not an input", loc=["body", "batch", i]
            )
        if name in seen:
            raise RequestError(f"batch names {clip(name)} twice", loc=["body", "batch", i])
        seen.add(name)
    return list(names)


def _check_sizes(problem: Problem, inputs: dict[str, Any], size: int) -> None:
    """B x every differentiated input's per-point size (its gradient, its broadcast copy
    in the pass) within the intermediate limit, before any work."""
    limit = problem.limits.max_intermediate_elements
    total = sum(int(inputs[n].size) for n in problem.diff + problem.zero)
    if total > limit:
        raise SizeLimitError(
            f"{size} points make {total:,} differentiated input elements (shared inputs are "
            f"differentiated per point), over the limit of {limit:,} "
            "(max_intermediate_elements): send fewer points per request",
            op="batch",
            loc=["body", "batch"],
        )
    check_output(total, problem.limits, "the answer")  # B x every derivative, at least


# --------------------------------------------------------------------------- directions


def _point_shape(problem: Problem, name: str) -> tuple[int, ...]:
    return tuple(problem.point_shapes[name])


def _one_per_point(
    problem: Problem, raw: Any, shape: tuple[int, ...], dtype: Any, loc: list[Any]
) -> Any:
    """A direction of per-point ``shape`` (shared) or (B, *shape): as (B_group, *shape)."""
    full = problem.request_size
    arr = wire.decode_value(raw, loc, max_elements=problem.limits.max_input_elements)
    if arr.shape == shape:
        out = np.broadcast_to(arr, (full, *shape))
    elif arr.shape == (full, *shape):
        out = arr
    else:
        raise ShapeError(
            f"{loc[-1]} has shape {list(arr.shape)} but must have the per-point shape "
            f"{list(shape)} (shared by every point) or {[full, *shape]} (one per point)",
            shapes=[arr.shape, shape],
            loc=loc,
        )
    return np.asarray(out[problem.points]).astype(dtype, copy=False)


def _k_per_point(
    problem: Problem, raw: Any, shape: tuple[int, ...], dtype: Any, loc: list[Any]
) -> Any:
    """K directions: (K, *shape) shared or (B, K, *shape) per point; as (K, B_group, *shape)."""
    full = problem.request_size
    limit = problem.limits.max_input_elements
    if isinstance(raw, list) and raw and any(isinstance(r, dict) for r in raw):
        parts = [wire.decode_value(r, [*loc, k], max_elements=limit) for k, r in enumerate(raw)]
        if len({p.shape for p in parts}) > 1:
            raise ShapeError(f"the entries of {loc[-1]} differ in shape", loc=loc)
        arr = np.stack(parts)
    else:
        arr = wire.decode_value(raw, loc, max_elements=limit)
    n = len(shape)
    if arr.ndim == n + 1 and arr.shape[1:] == shape:
        out = np.broadcast_to(arr[:, None], (arr.shape[0], full, *shape))
    elif arr.ndim == n + 2 and arr.shape[0] == full and arr.shape[2:] == shape:
        out = np.moveaxis(arr, 0, 1)
    else:
        raise ShapeError(
            f"{loc[-1]} has shape {list(arr.shape)} but must have shape (K, *{list(shape)}) "
            f"(K directions shared by every point) or ({full}, K, *{list(shape)}) "
            "(K directions per point)",
            shapes=[arr.shape, shape],
            loc=loc,
        )
    if out.shape[0] == 0:
        raise RequestError(f"{loc[-1]} holds no direction: give at least one", loc=loc)
    return np.asarray(out[:, problem.points]).astype(dtype, copy=False)


def _by_input(problem: Problem, key: str, many: bool) -> tuple[Any, ...]:
    """tangents/vectors (or their _batch forms) for the differentiated inputs."""
    raw = problem.task.field(key) or {}
    for name in raw:
        if name not in problem.inputs:
            raise RequestError(
                f"{key} names {clip(name)}, which is not an input", loc=["body", key, short(name)]
            )
    for name in problem.diff + problem.zero:
        if name not in raw:
            raise RequestError(f"{key} has no entry for input {clip(name)}", loc=["body", key])
    decode = _k_per_point if many else _one_per_point
    decoded = {
        n: decode(
            problem, raw[n], _point_shape(problem, n), problem.inputs[n].dtype, ["body", key, n]
        )
        for n in problem.diff + problem.zero
    }
    if many:
        counts = {n: a.shape[0] for n, a in decoded.items()}
        if len(set(counts.values())) > 1:
            raise ShapeError(
                f"{key} gives different numbers of directions: "
                + ", ".join(f"{clip(n)} has {k}" for n, k in counts.items()),
                loc=["body", key],
            )
        problem.directions = next(iter(counts.values()), 1)
    return tuple(decoded[n] for n in problem.diff)


def _cotangents(problem: Problem, outs: list[Any], multi: bool, required: bool) -> list[Any]:
    """The cotangent per output, each (B, *output), from ``cotangent``; ones for scalar
    outputs when it is not given."""
    raw = problem.task.cotangent
    if raw is None:
        if required or any(math.prod(o.shape[1:]) != 1 for o in outs):
            shapes = [list(o.shape[1:]) for o in outs]
            raise NonScalarOutputError(
                f"the output has shape {shapes if multi else shapes[0]} at each point; a "
                "gradient needs a scalar output per point: pass a 'cotangent' of that shape "
                "(or with a leading axis B, one per point), or reduce the output",
                shapes=[o.shape for o in outs],
                loc=["body"],
            )
        return [np.ones_like(o) for o in outs]
    if not multi:
        return [
            _one_per_point(problem, raw, outs[0].shape[1:], outs[0].dtype, ["body", "cotangent"])
        ]
    if not isinstance(raw, list) or len(raw) != len(outs):
        raise ShapeError(
            f"the function has {len(outs)} outputs: 'cotangent' must be a list of {len(outs)} "
            "cotangents",
            loc=["body", "cotangent"],
        )
    return [
        _one_per_point(problem, r, o.shape[1:], o.dtype, ["body", "cotangent", i])
        for i, (r, o) in enumerate(zip(raw, outs, strict=True))
    ]


def _many_cotangents(problem: Problem, outs: list[Any], multi: bool) -> list[Any]:
    """``cotangents``: per output (K, B, *output)."""
    raw = problem.task.cotangents
    loc: list[Any] = ["body", "cotangents"]
    if not multi:
        return [_k_per_point(problem, raw, outs[0].shape[1:], outs[0].dtype, loc)]
    per_output = [
        [_one_per_point(problem, r, o.shape[1:], o.dtype, [*loc, k, i]) for k, r in enumerate(rs)]
        for i, (rs, o) in enumerate(
            zip(cotangents_per_output(raw, len(outs), loc), outs, strict=True)
        )
    ]
    cts = [np.stack(p) for p in per_output]
    problem.directions = cts[0].shape[0]
    return cts


# --------------------------------------------------------------------------- the passes


def _forward(problem: Problem, differentiate: bool = True) -> tuple[list[Any], bool, Any]:
    """The batched forward pass (recording the graph when asked): outputs (B, *out), several?,
    and the VJP function when differentiating."""
    tick = time.perf_counter()
    with recording(problem) as rec:
        f = problem.fn(rec)
        if problem.diff and (differentiate or rec is not None):
            out, vjp_fn = engine.vjp(f, *problem.primals)
        else:
            out, vjp_fn = f(*problem.primals), None
    finish_recording(problem, rec)
    problem.timing["forward"] = problem.timing.get("forward", 0.0) + elapsed_ms(tick)
    outs, multi = output_list(out)
    locate_nonfinite(problem, outs)
    return outs, multi, vjp_fn


def _grads_fn(problem: Problem) -> Callable[..., tuple[Any, ...]]:
    """(value, *gradients) of the batched function, each point's scalar seeded with 1."""
    f = problem.fn()
    nums = tuple(range(len(problem.diff)))

    def value_and_grads(*xs: Any) -> tuple[Any, ...]:
        trace = Trace(f, xs, nums)
        seed = np.ones(np.shape(trace.values[0]), dtype=trace.values[0].dtype)
        return (trace.value, *trace.pullback([seed]))

    return value_and_grads


def _scalar(outs: list[Any], multi: bool, what: str) -> None:
    if multi or math.prod(outs[0].shape[1:]) != 1:
        shapes = [list(o.shape[1:]) for o in outs]
        raise NonScalarOutputError(
            f"{what} needs one scalar output per point, got shape "
            f"{shapes if multi else shapes[0]}: reduce the output, e.g. with sum(...)",
            shapes=[o.shape for o in outs],
            loc=["body"],
        )


def _derivs(problem: Problem, values: list[Any], extra: tuple[int, ...] = ()) -> dict[str, Any]:
    """Derivatives by input name, (B, *extra, *input) in the input's dtype; zeros for the
    differentiated inputs the function never reads."""
    out: dict[str, Any] = {}
    for name, value in zip(problem.diff, values, strict=True):
        out[name] = in_dtype(value, problem.inputs[name].dtype)
    for name in problem.zero:
        x = problem.inputs[name]
        out[name] = np.zeros((_points(problem), *extra, *_point_shape(problem, name)), x.dtype)
    return out


def _sizes(problem: Problem, outs: list[Any]) -> tuple[int, int]:
    """Per-point sizes: all outputs, all differentiated inputs."""
    out_size = sum(math.prod(o.shape[1:]) for o in outs)
    in_size = sum(math.prod(_point_shape(problem, n)) for n in problem.diff + problem.zero)
    return out_size, in_size


def _check_pass(problem: Problem, k: int, what: str) -> None:
    """Refuse (413) a pass of ``k`` directions at every point over the intermediate limit."""
    if not problem.diff or k <= 1:
        return
    peak = peak_size(Trace(problem.fn(), problem.primals))
    limit = problem.limits.max_intermediate_elements
    if k * peak > limit:
        raise SizeLimitError(
            f"{what} for {_points(problem)} points would make intermediates of {k} x {peak:,} "
            f"= {k * peak:,} elements, over the limit of {limit:,} "
            "(max_intermediate_elements): send fewer points or directions per request",
            op=what,
            loc=["body"],
        )


def grad(problem: Problem) -> dict[str, Any]:
    outs, multi, vjp_fn = _forward(problem)
    cots = _cotangents(problem, outs, multi, required=False)
    if multi and problem.task.cotangent is None:
        problem.warnings.append(
            f"the function has {len(outs)} outputs and no cotangent was given: the gradients "
            "are of their sum at each point"
        )
    problem.used["cotangents"] = cots
    grads = _pull(problem, vjp_fn, cots, multi)
    return {"value": output_value(outs, multi), "gradients": _derivs(problem, grads)}


def _pull(problem: Problem, vjp_fn: Any, cots: list[Any], multi: bool) -> list[Any]:
    tick = time.perf_counter()
    grads = list(vjp_fn(tuple(cots) if multi else cots[0])) if vjp_fn is not None else []
    problem.timing["backward"] = problem.timing.get("backward", 0.0) + elapsed_ms(tick)
    return grads


def vjp(problem: Problem) -> dict[str, Any]:
    if problem.task.cotangents is None:
        outs, multi, vjp_fn = _forward(problem)
        cots = _cotangents(problem, outs, multi, required=True)
        problem.used["cotangents"] = cots
        pulled = _pull(problem, vjp_fn, cots, multi)
        return {"value": output_value(outs, multi), "vjp": _derivs(problem, pulled)}
    outs, multi, _ = _forward(problem, differentiate=False)
    cts = _many_cotangents(problem, outs, multi)
    k = cts[0].shape[0]
    out_size, in_size = _sizes(problem, outs)
    check_output(_points(problem) * (k * in_size + out_size), problem.limits, "the answer")
    _check_pass(problem, 2 * k, "cotangents")
    problem.used["cotangents"] = cts
    tick = time.perf_counter()
    grads: list[Any] = []
    if problem.diff:
        _, got = engine.vjp_many(problem.fn(), problem.primals, cts)
        grads = [np.moveaxis(g, 0, 1) for g in got]
    problem.timing["backward"] = elapsed_ms(tick)
    return {"value": output_value(outs, multi), "vjp": _derivs(problem, grads, (k,))}


def jvp(problem: Problem) -> dict[str, Any]:
    many = problem.task.tangents_batch is not None
    tangents = _by_input(problem, "tangents_batch" if many else "tangents", many)
    problem.used["tangents"] = tangents
    outs, multi, _ = _forward(problem, differentiate=False)
    tick = time.perf_counter()
    if many:
        k = problem.directions
        out_size, in_size = _sizes(problem, outs)
        check_output(_points(problem) * (k * out_size + out_size), problem.limits, "the answer")
        _check_pass(problem, 2 * k, "tangents_batch")
        if problem.diff:
            _, t_out = engine.jvp_many(problem.fn(), problem.primals, list(tangents))
            touts = [np.moveaxis(t, 0, 1) for t in output_list(t_out)[0]]
        else:
            touts = [np.zeros((o.shape[0], k, *o.shape[1:]), o.dtype) for o in outs]
    elif problem.diff:
        _, t_out = engine.jvp(problem.fn(), problem.primals, tangents)
        touts = output_list(t_out)[0]
    else:
        touts = [np.zeros_like(o) for o in outs]
    problem.timing["jvp"] = elapsed_ms(tick)
    touts = [in_dtype(t, o.dtype) for t, o in zip(touts, outs, strict=True)]
    return {"value": output_value(outs, multi), "jvp": output_value(touts, multi)}


def _eye_blocks(
    sizes: list[int], size: int, shapes: list[tuple[int, ...]], dtype: Any, rows: slice
) -> list[Any]:
    """Rows ``rows`` of one-hot directions broadcast over the points: block k is
    (rows, B, *shapes[k]) (views of one identity, no copy per point)."""
    eye = np.eye(sum(sizes), dtype=dtype)[rows]
    offsets = np.cumsum([0, *sizes])
    blocks = []
    for k, s in enumerate(shapes):
        part = eye[:, offsets[k] : offsets[k + 1]].reshape(eye.shape[0], 1, *s)
        blocks.append(np.broadcast_to(part, (eye.shape[0], size, *s)))
    return blocks


def _in_chunks(
    problem: Problem, n: int, passes: int, run: Callable[[slice], list[Any]]
) -> list[Any]:
    """``run(rows)`` over the ``n`` one-hot rows in chunks whose pass keeps its
    intermediates (chunk x the batched pass's largest value x ``passes``) under
    max_intermediate_elements, as the single-point Jacobian does; each result
    concatenated along its leading (row) axis."""
    chunk = max(n, 1)
    if problem.diff and n > 1:
        peak = peak_size(Trace(problem.fn(), problem.primals)) * passes
        chunk = max(1, min(n, problem.limits.max_intermediate_elements // max(1, peak)))
    parts = [run(slice(i, min(i + chunk, n))) for i in range(0, max(n, 1), chunk)]
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _complex_rules(problem: Problem, check: Callable[[list[Any], bool], None]) -> None:
    """The single-point rules for complex inputs (``holomorphic``), per point the same."""
    try:
        check([problem.inputs[n] for n in problem.diff], problem.task.holomorphic)
    except AutodiffError as exc:
        exc.loc = ["body"]
        raise


def jacobian(problem: Problem) -> dict[str, Any]:
    _complex_rules(problem, check_jacobian_inputs)
    outs, multi, _ = _forward(problem, differentiate=False)
    out_size, in_size = _sizes(problem, outs)
    size = _points(problem)
    check_output(size * (out_size * in_size + out_size), problem.limits, "the jacobian")
    mode = problem.task.mode
    if mode == "auto":
        mode = "reverse" if out_size < in_size else "forward"
    out_shapes = [o.shape[1:] for o in outs]
    in_shapes = [_point_shape(problem, n) for n in problem.diff]
    tick = time.perf_counter()
    blocks: dict[tuple[int, int], Any] = {}
    if problem.diff and mode == "reverse":
        dtype = np.result_type(*outs)
        out_sizes = [math.prod(s) for s in out_shapes]

        def pull(part: slice) -> list[Any]:
            cts = _eye_blocks(out_sizes, size, out_shapes, dtype, part)
            return list(engine.vjp_many(problem.fn(), problem.primals, cts)[1])

        rows = _in_chunks(problem, out_size, 2, pull)  # (N, B, *in_i)
        offset = 0
        for k, s in enumerate(out_shapes):
            n = math.prod(s)
            for i, g in enumerate(rows):
                block = np.reshape(g[offset : offset + n], (*s, size, *in_shapes[i]))
                blocks[k, i] = np.moveaxis(block, len(s), 0)
            offset += n
    elif problem.diff:
        dtype = np.result_type(*problem.primals)
        sizes = [math.prod(s) for s in in_shapes]

        def push(part: slice) -> list[Any]:
            tangents = _eye_blocks(sizes, size, in_shapes, dtype, part)
            t_out = engine.jvp_many(problem.fn(), problem.primals, tangents)[1]
            return output_list(t_out)[0]

        offsets = np.cumsum([0, *sizes])
        for k, t in enumerate(_in_chunks(problem, in_size, 2, push)):  # (M, B, *out_k)
            for i, s in enumerate(in_shapes):
                block = np.reshape(t[offsets[i] : offsets[i + 1]], (*s, size, *out_shapes[k]))
                nd = len(s)
                perm = (nd, *range(nd + 1, nd + 1 + len(out_shapes[k])), *range(nd))
                blocks[k, i] = np.transpose(block, perm)
    problem.timing[mode] = elapsed_ms(tick)
    result: dict[str, Any] = {}
    for name in problem.diff + problem.zero:
        x = problem.inputs[name]
        per_output = []
        for k, s in enumerate(out_shapes):
            if name in problem.zero:
                per_output.append(np.zeros((size, *s, *_point_shape(problem, name)), x.dtype))
            else:
                per_output.append(in_dtype(blocks[k, problem.diff.index(name)], x.dtype))
        result[name] = per_output if multi else per_output[0]
    return {"value": output_value(outs, multi), "jacobian": result, "mode": mode}


def hessian(problem: Problem) -> dict[str, Any]:
    _complex_rules(problem, check_hessian_inputs)
    outs, multi, _ = _forward(problem, differentiate=False)
    _scalar(outs, multi, "a Hessian")
    _, in_size = _sizes(problem, outs)
    size = _points(problem)
    check_output(size * (in_size * in_size + in_size + 1), problem.limits, "the hessian")
    names = problem.diff + problem.zero
    in_shapes = [_point_shape(problem, n) for n in problem.diff]
    tick = time.perf_counter()
    value = outs[0]
    grads: list[Any] = []
    blocks: dict[tuple[int, int], Any] = {}
    if problem.diff:
        sizes = [math.prod(s) for s in in_shapes]
        dtype = np.result_type(*problem.primals)
        first: list[Any] = []

        def push(part: slice) -> list[Any]:
            tangents = _eye_blocks(sizes, size, in_shapes, dtype, part)
            out, t_out = engine.jvp_many(_grads_fn(problem), problem.primals, tangents)
            first[:] = first or list(out)  # the value and gradients: the same every chunk
            return list(t_out[1:])

        columns = _in_chunks(problem, in_size, 3, push)
        value, grads = first[0], first[1:]
        offsets = np.cumsum([0, *sizes])
        for i, s in enumerate(in_shapes):
            for j, t in enumerate(columns):
                block = np.reshape(t[offsets[i] : offsets[i + 1]], (*s, size, *in_shapes[j]))
                blocks[i, j] = np.moveaxis(block, len(s), 0)
    problem.timing["hessian"] = elapsed_ms(tick)
    table: dict[str, dict[str, Any]] = {}
    for a in names:
        table[a] = {}
        for b in names:
            dtype = np.result_type(problem.inputs[a], problem.inputs[b])
            if a in problem.zero or b in problem.zero:
                shape = (size, *_point_shape(problem, a), *_point_shape(problem, b))
                table[a][b] = np.zeros(shape, dtype)
            else:
                block = blocks[problem.diff.index(a), problem.diff.index(b)]
                table[a][b] = in_dtype(block, dtype)
    value = np.reshape(np.asarray(value), (size,))
    return {"value": value, "gradients": _derivs(problem, grads), "hessian": table}


def hvp(problem: Problem) -> dict[str, Any]:
    many = problem.task.vectors_batch is not None
    vectors = _by_input(problem, "vectors_batch" if many else "vectors", many)
    problem.used["vectors"] = vectors
    outs, multi, _ = _forward(problem, differentiate=False)
    _scalar(outs, multi, "a Hessian-vector product")
    k = problem.directions if many else 1
    if many:
        _, in_size = _sizes(problem, outs)
        check_output(_points(problem) * (k * in_size + 1), problem.limits, "the answer")
        _check_pass(problem, 3 * k, "vectors_batch")
    tick = time.perf_counter()
    products: list[Any] = []
    value = outs[0]
    if problem.diff:
        transform = engine.jvp_many if many else engine.jvp
        out, t_out = transform(_grads_fn(problem), problem.primals, list(vectors))
        value = out[0]
        products = [np.moveaxis(t, 0, 1) if many else t for t in t_out[1:]]
    problem.timing["hvp"] = elapsed_ms(tick)
    value = np.reshape(np.asarray(value), (_points(problem),))
    return {"value": value, "hvp": _derivs(problem, products, (k,) if many else ())}


DERIVE: dict[str, Callable[[Problem], dict[str, Any]]] = {
    "grad": grad,
    "vjp": vjp,
    "jvp": jvp,
    "jacobian": jacobian,
    "hessian": hessian,
    "hvp": hvp,
}


# --------------------------------------------------------------------------- groups


def derive(problem: Problem) -> dict[str, Any]:
    """The endpoint's answer at every point (and its check when asked), the points run
    apart in groups where their control flow differs."""
    from app.compute import batch_checks

    def one(p: Problem) -> dict[str, Any]:
        result = DERIVE[p.task.endpoint](p)
        if p.task.check:
            tick = time.perf_counter()
            result["check"] = batch_checks.check(p, result)
            p.timing["check"] = p.timing.get("check", 0.0) + elapsed_ms(tick)
        return result

    groups = [1]
    report = progress.chunk_callback("points")  # a job's progress: points done
    size = _points(problem)
    done = [0]

    def counted(p: Problem) -> dict[str, Any]:
        result = one(p)
        done[0] += _points(p)
        if report is not None:
            report(done[0], size)
        return result

    if report is not None:
        report(0, size)
    result = _grouped(problem, counted, groups)
    if groups[0] > 1:
        problem.warnings.append(
            f"control flow differs between the points: they ran in {groups[0]} groups"
        )
    return result


def _grouped(problem: Problem, one: Callable[[Problem], dict[str, Any]], groups: list[int]) -> Any:
    try:
        return one(problem)
    except Divergence as split:
        keys = split.keys
        order = list(dict.fromkeys(keys))
        groups[0] += len(order) - 1
        if groups[0] > MAX_GROUPS:
            raise LanguageError(
                f"{split.what} at {loc_text(split.loc)} takes different values at different "
                f"points of the batch, and they would run in more than {MAX_GROUPS} groups "
                "(the limit): send the points in separate requests, or make the control flow "
                "the same at every point (e.g. with where(...))",
                loc=loc_dict(split.loc),
            ) from None
        parts = []
        for key in order:
            index = np.array([b for b, k in enumerate(keys) if k == key])
            parts.append((index, _grouped(_subset(problem, index), one, groups)))
        return _scatter(parts, _points(problem))


def _subset(problem: Problem, index: np.ndarray[Any, Any]) -> Problem:
    """The problem at the points ``index`` (of this problem's points)."""
    inputs = {
        n: (x[index] if n in problem.batched or n in problem.zero else x)
        for n, x in problem.inputs.items()
    }
    consts = {n: v for n, v in inputs.items() if n not in problem.diff}
    return dataclasses.replace(
        problem,
        inputs=inputs,
        consts=consts,
        batch=len(index),
        points=problem.points[index],
        graph=None,
        traced=None,
        used={},
        nonfinite_nodes=problem.nonfinite_nodes,
        warnings=problem.warnings,
        timing=problem.timing,
    )


def _scatter(parts: list[tuple[np.ndarray[Any, Any], Any]], size: int) -> Any:
    """The groups' answers put back in the points' order (a leading axis B everywhere)."""
    first = parts[0][1]
    if isinstance(first, dict):
        return {
            key: (
                _scatter([(i, r[key]) for i, r in parts], size)
                if key not in ("mode", "check")
                else _merge_plain(key, [r[key] for _, r in parts])
            )
            for key in first
        }
    if isinstance(first, list):
        return [_scatter([(i, r[k]) for i, r in parts], size) for k in range(len(first))]
    arrays = [np.asarray(r) for _, r in parts]
    shapes = sorted({a.shape[1:] for a in arrays})
    if len(shapes) > 1:
        raise ShapeError(
            "the points of the batch give answers of different shapes ("
            + ", ".join(str(list(s)) for s in shapes)
            + "): every point must give the same shape (run such points in separate requests)",
            shapes=[a.shape for a in arrays],
            loc=["body", "batch"],
        )
    out = np.empty((size, *arrays[0].shape[1:]), dtype=np.result_type(*arrays))
    for (index, _), a in zip(parts, arrays, strict=True):
        out[index] = a
    return out


def _merge_plain(key: str, values: list[Any]) -> Any:
    if key != "check":
        return values[0]
    return {
        "max_abs_error": max(v["max_abs_error"] for v in values),
        "max_rel_error": max(v["max_rel_error"] for v in values),
        "directions": max(v.get("directions", 0) for v in values),
    }
