"""One request, compiled and decoded: the ``Problem`` every endpoint works from. No web imports.

``prepare`` compiles the function (cached per process), decodes the inputs, and splits
them into the differentiated ones (``wrt``) and constants closed over; the helpers
decode cotangents and directions against the outputs and inputs they belong to.
"""

from __future__ import annotations

import contextlib
import keyword
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import engine.transforms
from app.compute import stored, wire
from app.compute.task import Task, TaskLimits
from app.compute.wire import clip, short
from engine import lang
from engine.errors import (
    AutodiffError,
    NonScalarOutputError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
)
from engine.graph import Recorder
from engine.lang.batched import run_batched
from engine.lang.limits import Limits

Arrays = tuple[np.ndarray[Any, Any], ...]


def elapsed_ms(since: float) -> float:
    """Milliseconds since ``since`` (a ``time.perf_counter()`` reading), rounded."""
    return round((time.perf_counter() - since) * 1000.0, 4)


class RequestError(AutodiffError):
    """A request that does not fit its function (wrt, cotangent or tangent names and shapes)."""

    kind = "invalid-request"
    title = "Invalid request"


@dataclass
class Problem:
    """One request, compiled and decoded: what every endpoint works from."""

    task: Task
    program: Any
    inputs: dict[str, np.ndarray[Any, Any]]
    diff: list[str]  # differentiated inputs the function uses (argnums order)
    zero: list[str]  # differentiated inputs the function never reads: zero derivative
    consts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    graph: dict[str, Any] | None = None
    traced: Any = None
    nonfinite_nodes: list[str] = field(default_factory=list)  # marked in a DOT graph
    directions: int = 1  # K, with K directions at one point (tangents_batch, vectors_batch)
    # a batch of points (``batch``, app.compute.batch): B at this pass (a group of the
    # points where control flow differs), the names whose values carry the leading axis B
    # in the function, each input's per-point shape, and which of the request's points
    # this pass holds
    batch: int | None = None
    batched: frozenset[str] = frozenset()
    point_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    points: Any = None
    used: dict[str, Any] = field(default_factory=dict)  # directions decoded (for the check)

    request_size: int = 0  # B of the request (its batched inputs' leading axis)

    @property
    def primals(self) -> Arrays:
        """Values of the differentiated inputs, in argnums order."""
        return tuple(self.inputs[n] for n in self.diff)

    @property
    def limits(self) -> TaskLimits:
        """The task's limits."""
        return self.task.limits

    def fn(self, rec: Any = None) -> Callable[..., Any]:
        """The function of the differentiated inputs, constants closed over.

        With a recorder, the first call registers the inputs as graph leaves and
        keeps the traced outputs in ``self.traced`` for the graph metadata.
        """
        program, consts, names = self.program, self.consts, self.diff
        max_iterations = self.limits.max_iterations
        max_elements = self.limits.max_intermediate_elements
        differentiated = set(names)

        def f(*args: Any) -> Any:
            env = dict(consts)
            env.update(zip(names, args, strict=True))
            if rec is not None and not rec.started:
                for name, value in env.items():
                    rec.leaf(name, value, requires_grad=name in differentiated)
            if self.batch is not None:
                out = run_batched(
                    program,
                    env,
                    self.batched,
                    self.batch,
                    max_iterations=max_iterations,
                    max_elements=max_elements,
                )
            else:
                out = program.run(env, max_iterations=max_iterations, max_elements=max_elements)
            if rec is not None and self.traced is None:
                self.traced = out
            return out

        return f


def compile_program(task: Task) -> Any:
    """The task's function, compiled (cached per process; a stored one by its id)."""
    if task.function is not None:
        return stored.program(task)
    limits = task.limits
    return lang.compile_cached(
        expression=task.expression,
        graph=task.graph,
        limits=Limits(
            max_source_chars=limits.max_source_chars,
            max_iterations=limits.max_iterations,
            max_elements=limits.max_intermediate_elements,
        ),
    )


# --------------------------------------------------------------------------- preparation


def prepare(task: Task, program: Any = None, directions: str | None = None) -> Problem:
    """Compile, decode the inputs, and split them into differentiated and constant ones.

    ``directions`` names the task's field whose keys say which inputs are differentiated
    when ``wrt`` is not given (the endpoint table's: "tangents" for /jvp, "vectors" for /hvp).
    """
    tick = time.perf_counter()
    program = program if program is not None else compile_program(task)
    timing = {"parse": elapsed_ms(tick)}
    tick = time.perf_counter()
    inputs, requires = _decode_inputs(task)
    if task.function is not None:  # a stored function's constants, decoded once per process
        inputs, requires = stored.bind_constants(task, inputs, requires)
    timing["decode"] = elapsed_ms(tick)
    directions = direction_field(task, directions)
    free = set(program.free_names)
    missing = sorted(free - set(inputs))
    if missing and task.graph is not None:
        raise _missing_in_graph(program, missing, task.graph)
    if missing:
        raise UnknownNameError(
            f"the function uses {', '.join(map(clip, missing[:5]))} but 'inputs' has no value for "
            f"{'it' if len(missing) == 1 else 'them'}",
            loc=["body", "inputs", short(missing[0])],
        )
    wrt = _wrt(task, inputs, requires, directions)
    warnings = [
        f"input {clip(name)} is not used by the function; its derivative is zero"
        for name in inputs
        if name not in free
    ]
    warnings += _ignored_directions(task, wrt)
    diff = [n for n in wrt if n in free]
    consts = {n: v for n, v in inputs.items() if n not in diff}
    zero = [n for n in wrt if n not in free]
    problem = Problem(task, program, inputs, diff, zero, consts, warnings, timing)
    if task.batch is not None:  # B points: checked, shared differentiated inputs broadcast
        from app.compute import batch

        return batch.setup(problem)
    return problem


def _missing_in_graph(program: Any, missing: list[str], graph: dict[str, Any]) -> AutodiffError:
    """A graph reference that is neither a node id nor an input: named, at the node (or
    the output) that makes it. In a graph any other name is an input's, so it is either
    a typo of a node id or an input left out."""
    name = missing[0]
    where = dict(zip(program.free_names, program.free_locs, strict=True)).get(name)
    others = f" ({len(missing) - 1} more such references)" if len(missing) > 1 else ""
    what = f"neither a node id of the graph nor a name in 'inputs'{others}"
    if where == "outputs":
        index = next((i for i, o in enumerate(graph.get("outputs") or []) if o == name), 0)
        return UnknownNameError(
            f"outputs[{index}] is {clip(name)}, which is {what}",
            loc=["body", "graph", "outputs", index],
        )
    return UnknownNameError(
        f"node {clip(where)} refers to {clip(name)}, which is {what}", loc={"node": where}
    )


def _check_input_name(name: str) -> None:
    """An input's name must be one the function can say: an ASCII identifier of the
    language (a look-alike such as a fullwidth ``ｘ`` would get a zero gradient and a
    warning, never the derivative its sender meant)."""
    ascii_identifier = name.isascii() and name.isidentifier()
    if ascii_identifier and not name.startswith("_") and not keyword.iskeyword(name):
        return
    raise RequestError(
        f"input name {clip(name)} is not a name the function can use: ASCII letters, digits "
        "and underscores, not starting with a digit or an underscore, and not a keyword",
        loc=["body", "inputs", short(name)],
    )


def _decode_inputs(task: Task) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, bool]]:
    limit = task.limits.max_input_elements
    inputs, requires = {}, {}
    for name, raw in task.inputs.items():
        _check_input_name(name)
        inputs[name], requires[name] = wire.decode_input(
            raw, ["body", "inputs", short(name)], max_elements=limit
        )
    return inputs, requires


def _wrt(
    task: Task, inputs: dict[str, Any], requires: dict[str, bool], key: str | None
) -> list[str]:
    given = task.wrt
    directions = task.field(key) if key is not None else None
    # /jvp and /hvp alike: an empty map differentiates nothing, which is only what was
    # asked when nothing can be (an empty hvp answered 200 with nothing)
    if directions is not None and not directions and any(requires.values()):
        raise RequestError(
            f"{key} is empty: give a direction for at least one input", loc=["body", key]
        )
    if given is None:
        if directions is not None:  # the inputs given a direction, constants excepted
            return [n for n in inputs if n in directions and requires[n]]
        return [n for n in inputs if requires[n]]
    for i, name in enumerate(given):
        if name not in inputs:
            raise RequestError(
                f"wrt names {clip(name)}, which is not an input", loc=["body", "wrt", i]
            )
        if not requires[name]:
            raise RequestError(
                f"wrt names {clip(name)}, whose requires_grad is false", loc=["body", "wrt", i]
            )
    return list(dict.fromkeys(given))


def direction_field(task: Task, key: str | None) -> str | None:
    """The field holding the directions: ``key`` ("tangents", "vectors"), or its batch form
    ``key + "_batch"`` (K directions) when that is the one given."""
    if key is not None and task.field(key) is None and task.field(f"{key}_batch") is not None:
        return f"{key}_batch"
    return key


def _ignored_directions(task: Task, wrt: list[str]) -> list[str]:
    """Warnings for tangents/vectors given for inputs that are not differentiated.

    A constant (``requires_grad: false``, or left out of ``wrt``) contributes nothing to a
    derivative, as a tensor that does not require grad in PyTorch: its direction is
    ignored, and the answer says so.
    """
    given = ("tangents", "tangents_batch", "vectors", "vectors_batch")
    key = next((k for k in given if task.field(k)), "vectors")
    directions = task.field(key) or {}
    inputs = task.inputs
    return [
        f"{key} has an entry for {clip(name)}, which is a constant ("
        + ("not in wrt" if task.wrt is not None else "requires_grad false")
        + "): it contributes nothing and is ignored"
        for name in directions
        if name in inputs and name not in wrt
    ]


@contextlib.contextmanager
def recording(problem: Problem) -> Iterator[Any]:
    """A graph recorder around a forward pass when the request asks for the graph."""
    if not problem.task.include_graph:
        yield None
        return
    with Recorder(max_nodes=problem.limits.max_graph_nodes_returned) as rec:
        yield rec


def finish_recording(problem: Problem, rec: Any) -> None:
    if rec is not None and problem.traced is not None:
        outs = problem.traced
        problem.graph = rec.metadata(list(outs) if isinstance(outs, tuple | list) else [outs])
    problem.traced = None


def locate_nonfinite(problem: Problem, outs: list[Any]) -> None:
    """Name the op where a non-finite value first arose (a second forward, only then)."""
    if all(o.dtype.kind not in "fc" or np.isfinite(o).all() for o in outs):
        return
    with Recorder(max_nodes=0, check_finite=True) as rec:
        problem.fn(rec)(*problem.primals)
    problem.traced = None
    for where in rec.nonfinite:
        problem.nonfinite_nodes.append(where["node"])
        loc = where.get("loc")
        place = f" at line {loc['line']}, column {loc['column']}" if loc and "line" in loc else ""
        problem.warnings.append(
            f"non-finite values first arose in {where['op']} (node {where['node']}){place}"
        )


# --------------------------------------------------------------------------- helpers


def output_list(out: Any) -> tuple[list[Any], bool]:
    """The outputs as a list of arrays, and whether there are several."""
    if isinstance(out, tuple | list):
        return [np.asarray(o) for o in out], True
    return [np.asarray(out)], False


def shapes_text(outs: list[Any], multi: bool) -> str:
    return str([list(o.shape) for o in outs] if multi else list(outs[0].shape))


def output_value(outs: list[Any], multi: bool) -> Any:
    return list(outs) if multi else outs[0]


def _decode_like(raw: Any, like: np.ndarray[Any, Any], loc: list[Any], limits: TaskLimits) -> Any:
    arr = wire.decode_value(raw, loc, max_elements=limits.max_input_elements)
    if arr.size == 0 and like.size == 0:
        arr = arr.reshape(like.shape)  # no values to misplace: [] stands for any empty shape
    if arr.shape != like.shape:
        raise ShapeError(
            f"{loc[-1]} has shape {list(arr.shape)} but must have shape {list(like.shape)}",
            shapes=[arr.shape, like.shape],
            loc=loc,
        )
    return cast_like(arr, like, loc)


def cast_like(arr: Any, like: np.ndarray[Any, Any], loc: list[Any]) -> Any:
    """A cotangent, tangent or vector in the dtype of the value it goes with; a complex one
    for a real value is refused (its imaginary part would be dropped without a word)."""
    if arr.dtype.kind == "c" and like.dtype.kind != "c":
        raise RequestError(
            f"{loc[-1]} is complex but the value it goes with is real ({like.dtype.name}): "
            "give a real one",
            loc=loc,
        )
    return arr.astype(like.dtype, copy=False)


def check_holomorphic(what: str, inputs: list[Any], outs: list[Any], holomorphic: bool) -> None:
    """``engine.transforms.check_holomorphic``, located at the request's body."""
    try:
        engine.transforms.check_holomorphic(what, inputs, outs, holomorphic)
    except AutodiffError as exc:
        exc.loc = ["body"]
        raise


def cotangents_for(problem: Problem, outs: list[Any], multi: bool, required: bool) -> list[Any]:
    raw = problem.task.cotangent
    loc: list[Any] = ["body", "cotangent"]
    if raw is None:
        if required or any(o.size != 1 for o in outs):
            raise NonScalarOutputError(
                f"the output has shape {shapes_text(outs, multi)}; a gradient needs a scalar "
                "output: pass a 'cotangent' of the output's shape "
                "(or reduce the output, e.g. with sum)",
                shapes=[o.shape for o in outs],
                loc=["body"],
            )
        check_holomorphic(
            "a gradient",
            [problem.inputs[n] for n in problem.diff],
            outs,
            problem.task.holomorphic,
        )
        return [np.ones_like(o) for o in outs]
    if not multi:
        return [_decode_like(raw, outs[0], loc, problem.limits)]
    if not isinstance(raw, list) or len(raw) != len(outs):
        raise ShapeError(
            f"the function has {len(outs)} outputs: 'cotangent' must be a list of {len(outs)} "
            "cotangents",
            loc=loc,
        )
    return [
        _decode_like(r, o, [*loc, i], problem.limits)
        for i, (r, o) in enumerate(zip(raw, outs, strict=True))
    ]


def directions_for(problem: Problem, key: str) -> Arrays:
    """The directions of ``key`` ("tangents", "vectors") for the differentiated inputs; in
    the batch form (``key + "_batch"``) each is ``(K, *input.shape)`` with one K for all."""
    key = direction_field(problem.task, key) or key
    if key.endswith("_batch"):
        return _batched_directions(problem, key)
    raw = problem.task.field(key) or {}
    for name in raw:
        if name not in problem.inputs:
            raise RequestError(
                f"{key} names {clip(name)}, which is not an input", loc=["body", key, short(name)]
            )
    wanted = problem.diff + problem.zero
    for name in wanted:
        if name not in raw:
            raise RequestError(f"{key} has no entry for input {clip(name)}", loc=["body", key])
    # entries for constants are ignored (``prepare`` warned about them)
    return tuple(
        _decode_like(raw[n], problem.inputs[n], ["body", key, n], problem.limits)
        for n in problem.diff
    )


# The dtype of every derivative, on every endpoint (PyTorch's and jax.grad's rule): a
# derivative with respect to input x (a gradient, a VJP, an HVP, a Jacobian's block for x)
# is in x's dtype; a Hessian block for (x, y) in result_type(x, y); a JVP, output-shaped,
# in the output's dtype (as jax.jvp). A float32 input whose output is promoted to float64
# gets a float32 gradient from every endpoint alike.
# A complex derivative of a real input (a Jacobian block of a complex output, as
# jax.jacfwd's) is complex of the input's precision.
def in_dtype(value: Any, dtype: Any) -> Any:
    value = np.asarray(value)
    if value.dtype.kind == "c" and np.dtype(dtype).kind == "f":
        dtype = np.result_type(dtype, np.complex64)
    return value.astype(dtype, copy=False)


def by_name(problem: Problem, values: Arrays | list[Any]) -> dict[str, Any]:
    """Derivatives by input name (each in its input's dtype), zeros for inputs the function
    never reads."""
    out: dict[str, Any] = {}
    for name, value in zip(problem.diff, values, strict=True):
        x = problem.inputs[name]
        out[name] = np.zeros_like(x) if value is None else in_dtype(value, x.dtype)
    for name in problem.zero:
        out[name] = np.zeros_like(problem.inputs[name])
    return out


# --------------------------------------------------------------------------- K directions


def cotangents_per_output(raw: Any, n_outputs: int, loc: list[Any]) -> list[list[Any]]:
    """Several outputs' ``cotangents`` (K entries, each a list of one cotangent per output),
    checked and regrouped per output: ``[i][k]`` is output i's k-th cotangent, undecoded."""
    if not isinstance(raw, list) or not raw:
        raise ShapeError(
            f"the function has {n_outputs} outputs: 'cotangents' must be a list of K entries, "
            f"each a list of {n_outputs} cotangents",
            loc=loc,
        )
    per_output: list[list[Any]] = [[] for _ in range(n_outputs)]
    for k, entry in enumerate(raw):
        if not isinstance(entry, list) or len(entry) != n_outputs:
            raise ShapeError(
                f"cotangents[{k}] must be a list of {n_outputs} cotangents (one per output)",
                loc=[*loc, k],
            )
        for i, r in enumerate(entry):
            per_output[i].append(r)
    return per_output


def _decode_stack(raw: Any, like: np.ndarray[Any, Any], loc: list[Any], limits: TaskLimits) -> Any:
    """K directions for an array shaped like ``like``: one array whose leading axis is K, or
    a list of K arrays (each a number, a nested list or a data/b64 object); (K, *like.shape)
    in ``like``'s dtype. At least one direction; K x its size within the input limit."""
    limit = limits.max_input_elements
    if isinstance(raw, list) and raw and any(isinstance(r, dict) for r in raw):
        per = max(1, like.size)
        if len(raw) * per > limit:
            raise SizeLimitError(
                f"{loc[-1]} holds {len(raw)} directions of {like.size} numbers, over the "
                f"limit of {limit:,} numbers (max_input_elements)",
                loc=loc,
            )
        parts = [_decode_like(r, like, [*loc, k], limits) for k, r in enumerate(raw)]
        arr = np.stack(parts) if parts else np.zeros((0, *like.shape), like.dtype)
    else:
        arr = wire.decode_value(raw, loc, max_elements=limit)
    if arr.ndim >= 1 and arr.shape[0] == 0:
        raise RequestError(f"{loc[-1]} holds no direction: give at least one", loc=loc)
    if arr.ndim == 0 or arr.shape[1:] != like.shape:
        raise ShapeError(
            f"{loc[-1]} has shape {list(arr.shape)} but must have shape (K, "
            f"{', '.join(map(str, like.shape))}{',' if like.ndim == 1 else ''}): K directions "
            f"of shape {list(like.shape)}",
            shapes=[arr.shape, like.shape],
            loc=loc,
        )
    return cast_like(arr, like, loc)


def _batched_directions(problem: Problem, key: str) -> Arrays:
    raw = problem.task.field(key) or {}
    for name in raw:
        if name not in problem.inputs:
            raise RequestError(
                f"{key} names {clip(name)}, which is not an input", loc=["body", key, short(name)]
            )
    for name in problem.diff + problem.zero:
        if name not in raw:
            raise RequestError(f"{key} has no entry for input {clip(name)}", loc=["body", key])
    # the inputs with a zero derivative too: their K must agree, and it is the answer's
    # K when no input the function reads is differentiated
    wanted = problem.diff + problem.zero
    decoded = {
        n: _decode_stack(raw[n], problem.inputs[n], ["body", key, n], problem.limits)
        for n in wanted
    }
    arrays = tuple(decoded[n] for n in problem.diff)
    counts = {n: a.shape[0] for n, a in decoded.items()}
    if len(set(counts.values())) > 1:
        raise ShapeError(
            f"{key} gives different numbers of directions: "
            + ", ".join(f"{clip(n)} has {k}" for n, k in counts.items())
            + " (every input needs the same K)",
            loc=["body", key],
        )
    problem.directions = next(iter(counts.values()), 1)
    return arrays


def batched_cotangents(problem: Problem, outs: list[Any], multi: bool) -> list[Any]:
    """``cotangents``: K cotangents, one array per output, each (K, *output.shape). For one
    output, one array with a leading axis K or a list of K; for several, a list of K
    entries, each a list with one cotangent per output."""
    raw = problem.task.cotangents
    loc: list[Any] = ["body", "cotangents"]
    if not multi:
        return [_decode_stack(raw, outs[0], loc, problem.limits)]
    per_output = cotangents_per_output(raw, len(outs), loc)
    return [
        _decode_stack(rs, o, [*loc, f"output {i}"], problem.limits)
        for i, (rs, o) in enumerate(zip(per_output, outs, strict=True))
    ]
