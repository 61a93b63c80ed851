"""From a validated, plain task dict to engine work and a plain result dict. No web imports.

A task is what crosses to a worker process: plain, picklable data (the request's
fields as JSON values, the endpoint name and the limits). ``run`` compiles the
function (cached per process), decodes the inputs, differentiates with respect
to the ``wrt`` inputs only (every other input is closed over as a constant), and
answers NumPy arrays; ``run_encoded`` also renders the answer to JSON bytes, so
large arrays never cross the process boundary as Python lists.
"""

from __future__ import annotations

import contextlib
import keyword
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

import engine
from app import encoding
from app.encoding import clip, short
from app.worker import check_answer_fits
from engine import lang
from engine.errors import (
    AutodiffError,
    NonScalarOutputError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
)
from engine.graph import Recorder
from engine.lang.ir import census
from engine.lang.limits import Limits
from engine.registry import names_of_cost

# NumPy's RuntimeWarnings ("Mean of empty slice", "Degrees of freedom <= 0") describe
# values the answer's own warnings name (non-finite values and where they arose): they
# are not printed to the server's stderr, once per process, as well.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy(\.|$)")

Task = dict[str, Any]
# Request fields holding arrays: the ones a spilled body supplies.
ARRAY_FIELDS = ("inputs", "cotangent", "tangents", "vectors")
Arrays = tuple[np.ndarray[Any, Any], ...]
# The field whose names say which inputs are differentiated when ``wrt`` is not given.
DIRECTION_FIELDS = {"jvp": "tangents", "hvp": "vectors"}
# Finite differences: every coordinate up to this many input elements, else random directions.
FD_COORDINATES_UP_TO = 16
FD_RANDOM_DIRECTIONS = 6
FD_SEED = 0


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

    @property
    def primals(self) -> Arrays:
        """Values of the differentiated inputs, in argnums order."""
        return tuple(self.inputs[n] for n in self.diff)

    @property
    def limits(self) -> dict[str, int]:
        """The task's limits."""
        return self.task["limits"]

    def fn(self, rec: Any = None) -> Callable[..., Any]:
        """The function of the differentiated inputs, constants closed over.

        With a recorder, the first call registers the inputs as graph leaves and
        keeps the traced outputs in ``self.traced`` for the graph metadata.
        """
        program, consts, names = self.program, self.consts, self.diff
        max_iterations = self.limits["max_iterations"]
        max_elements = self.limits["max_intermediate_elements"]
        differentiated = set(names)

        def f(*args: Any) -> Any:
            env = dict(consts)
            env.update(zip(names, args, strict=True))
            if rec is not None and not rec.started:
                for name, value in env.items():
                    rec.leaf(name, value, requires_grad=name in differentiated)
            out = program.run(env, max_iterations=max_iterations, max_elements=max_elements)
            if rec is not None and self.traced is None:
                self.traced = out
            return out

        return f


# --------------------------------------------------------------------------- entry points


def compile_program(task: Task) -> Any:
    """The task's function, compiled (cached per process)."""
    limits = task["limits"]
    return lang.compile_cached(
        expression=task.get("expression"),
        graph=task.get("graph"),
        limits=Limits(
            max_source_chars=limits["max_source_chars"],
            max_iterations=limits["max_iterations"],
            max_elements=limits.get("compile_max_elements", limits["max_intermediate_elements"]),
        ),
    )


def inline_program(task: Task, max_ops: int) -> Any:
    """The compiled program if it is provably small work (no loops, few op sites), else None."""
    program = compile_program(task)
    if program.has_loops or max(program.num_ops, op_census(program)[1]) > max_ops:
        return None
    return program


# Ops whose work is linear in the sizes of their operands and result, as each op declares
# it in the engine's registry (``Op.cost``; engine change, issue 14: was a hand list here).
# Contractions, decompositions (norm too: ord=2 is an SVD) and undeclared ops are not.
LINEAR_OPS = names_of_cost("linear")
_op_cache: dict[int, tuple[Any, frozenset[str], int]] = {}
# Op evaluations counted past this are "many": only comparisons with lane limits use it.
_CENSUS_CAP = 1 << 30


def op_census(program: Any) -> tuple[frozenset[str], int]:
    """The ops a compiled program calls and how many op evaluations one run makes, indexing
    (``getitem``) included (``num_ops`` leaves it out of text programs); cached per program.

    Linear in the program's IR nodes (``ir.census`` memoises shared nodes): this runs on
    the event loop when a lane is chosen.
    """
    hit = _op_cache.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1], hit[2]
    found = census(program.body, _CENSUS_CAP)
    if len(_op_cache) > 1024:  # compiled programs are cached too, but not forever
        _op_cache.clear()
    _op_cache[id(program)] = (program, found.ops, found.evaluated)
    return found.ops, found.evaluated


def linear_cost(program: Any) -> bool:
    """Whether every op of the program does work linear in its operands' and result's sizes."""
    return op_census(program)[0] <= LINEAR_OPS


def run(task: Task, program: Any = None) -> dict[str, Any]:
    """Compute the task's answer as a plain dict of NumPy arrays (and ``timing_ms``).

    ``program`` is the task's compiled function when the caller already has it.
    """
    start = time.perf_counter()
    problem = prepare(task, program)
    # Non-finite results are answered with warnings, not printed to the server's stderr.
    with np.errstate(all="ignore"):
        result = ENDPOINTS[task["endpoint"]](problem)
        check_output(_elements(result), task["limits"])
        if task.get("check"):
            tick = time.perf_counter()
            result["check"] = CHECKS[task["endpoint"]](problem, result)
            problem.timing["check"] = _ms(tick)
    if problem.graph is not None:
        result["graph"] = problem.graph
    if problem.warnings:
        result["warnings"] = problem.warnings
    problem.timing["total"] = _ms(start)
    result["timing_ms"] = problem.timing
    return result


def run_encoded(task: Task, program: Any = None) -> tuple[bytes | str, dict[str, float], float]:
    """``run`` then render to JSON bytes (without timing): (body, timing_ms, start time).

    With ``body_file`` the array fields come from the spilled request body; with
    ``spill_dir`` a large answer is spilled too and its file path returned instead.
    """
    start = time.perf_counter()
    load_ms = None
    if task.get("body_file"):
        task = _load_spilled(task)
        load_ms = _ms(start)
    result = run(task, program)
    timing = result.pop("timing_ms")
    if load_ms is not None:
        timing["load"] = load_ms
    tick = time.perf_counter()
    # Refused (413) before rendering when the worker's memory cap cannot hold the rendering.
    check_answer_fits(result, task.get("encoding", "json"))
    body = encoding.render(result, task.get("encoding", "json"))
    timing["encode"] = _ms(tick)
    spilled = encoding.spill(body, task.get("spill_dir"))
    return (body if spilled is None else spilled), timing, start


def _load_spilled(task: Task) -> Task:
    # The service validated this same body before spilling it: only the arrays are taken.
    parsed = orjson.loads(encoding.unspill(task["body_file"]))
    return {**task, **{f: parsed.get(f) for f in ARRAY_FIELDS if f in task}, "body_file": None}


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 4)


# --------------------------------------------------------------------------- preparation


def prepare(task: Task, program: Any = None) -> Problem:
    """Compile, decode the inputs, and split them into differentiated and constant ones."""
    tick = time.perf_counter()
    program = program if program is not None else compile_program(task)
    timing = {"parse": _ms(tick)}
    tick = time.perf_counter()
    inputs, requires = _decode_inputs(task)
    timing["decode"] = _ms(tick)
    free = set(program.free_names)
    missing = sorted(free - set(inputs))
    if missing and task.get("graph") is not None:
        raise _missing_in_graph(program, missing, task["graph"])
    if missing:
        raise UnknownNameError(
            f"the function uses {', '.join(map(clip, missing[:5]))} but 'inputs' has no value for "
            f"{'it' if len(missing) == 1 else 'them'}",
            loc=["body", "inputs", short(missing[0])],
        )
    wrt = _wrt(task, inputs, requires)
    warnings = [
        f"input {clip(name)} is not used by the function; its derivative is zero"
        for name in inputs
        if name not in free
    ]
    warnings += _ignored_directions(task, wrt)
    diff = [n for n in wrt if n in free]
    consts = {n: v for n, v in inputs.items() if n not in diff}
    zero = [n for n in wrt if n not in free]
    return Problem(task, program, inputs, diff, zero, consts, warnings, timing)


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
    limit = task["limits"]["max_input_elements"]
    inputs, requires = {}, {}
    for name, raw in task["inputs"].items():
        _check_input_name(name)
        inputs[name], requires[name] = encoding.decode_input(
            raw, ["body", "inputs", short(name)], max_elements=limit
        )
    return inputs, requires


def _wrt(task: Task, inputs: dict[str, Any], requires: dict[str, bool]) -> list[str]:
    given = task.get("wrt")
    key = DIRECTION_FIELDS.get(task["endpoint"])
    directions = task.get(key) if key is not None else None
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


def _ignored_directions(task: Task, wrt: list[str]) -> list[str]:
    """Warnings for tangents/vectors given for inputs that are not differentiated.

    A constant (``requires_grad: false``, or left out of ``wrt``) contributes nothing to a
    derivative, as a tensor that does not require grad in PyTorch: its direction is
    ignored, and the answer says so.
    """
    key = "tangents" if task.get("tangents") else "vectors"
    directions = task.get(key) or {}
    inputs = task["inputs"]
    return [
        f"{key} has an entry for {clip(name)}, which is a constant ("
        + ("not in wrt" if task.get("wrt") is not None else "requires_grad false")
        + "): it contributes nothing and is ignored"
        for name in directions
        if name in inputs and name not in wrt
    ]


@contextlib.contextmanager
def recording(problem: Problem) -> Iterator[Any]:
    """A graph recorder around a forward pass when the request asks for the graph."""
    if not problem.task.get("include_graph", True):
        yield None
        return
    with Recorder(max_nodes=problem.limits["max_graph_nodes_returned"]) as rec:
        yield rec


def _finish_recording(problem: Problem, rec: Any) -> None:
    if rec is not None and problem.traced is not None:
        outs = problem.traced
        problem.graph = rec.metadata(list(outs) if isinstance(outs, tuple | list) else [outs])
    problem.traced = None


def _locate_nonfinite(problem: Problem, outs: list[Any]) -> None:
    """Name the op where a non-finite value first arose (a second forward, only then)."""
    if all(o.dtype.kind != "f" or np.isfinite(o).all() for o in outs):
        return
    with Recorder(max_nodes=0, check_finite=True) as rec:
        problem.fn(rec)(*problem.primals)
    problem.traced = None
    for where in rec.nonfinite:
        loc = where.get("loc")
        place = f" at line {loc['line']}, column {loc['column']}" if loc and "line" in loc else ""
        problem.warnings.append(
            f"non-finite values first arose in {where['op']} (node {where['node']}){place}"
        )


# --------------------------------------------------------------------------- helpers


def _outputs(out: Any) -> tuple[list[Any], bool]:
    """The outputs as a list of arrays, and whether there are several."""
    if isinstance(out, tuple | list):
        return [np.asarray(o) for o in out], True
    return [np.asarray(out)], False


def _shapes_text(outs: list[Any], multi: bool) -> str:
    return str([list(o.shape) for o in outs] if multi else list(outs[0].shape))


def _value(outs: list[Any], multi: bool) -> Any:
    return list(outs) if multi else outs[0]


def _decode_like(
    raw: Any, like: np.ndarray[Any, Any], loc: list[Any], limits: dict[str, int]
) -> Any:
    arr = encoding.decode_value(raw, loc, max_elements=limits["max_input_elements"])
    if arr.size == 0 and like.size == 0:
        arr = arr.reshape(like.shape)  # no values to misplace: [] stands for any empty shape
    if arr.shape != like.shape:
        raise ShapeError(
            f"{loc[-1]} has shape {list(arr.shape)} but must have shape {list(like.shape)}",
            shapes=[arr.shape, like.shape],
            loc=loc,
        )
    return arr.astype(like.dtype, copy=False)


def _cotangents(problem: Problem, outs: list[Any], multi: bool, required: bool) -> list[Any]:
    raw = problem.task.get("cotangent")
    loc: list[Any] = ["body", "cotangent"]
    if raw is None:
        if required or any(o.size != 1 for o in outs):
            raise NonScalarOutputError(
                f"the output has shape {_shapes_text(outs, multi)}; a gradient needs a scalar "
                "output: pass a 'cotangent' of the output's shape "
                "(or reduce the output, e.g. with sum)",
                shapes=[o.shape for o in outs],
                loc=["body"],
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


def _directions(problem: Problem, key: str) -> Arrays:
    raw = problem.task.get(key) or {}
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
def _in_dtype(value: Any, dtype: Any) -> Any:
    return np.asarray(value).astype(dtype, copy=False)


def _by_name(problem: Problem, values: Arrays | list[Any]) -> dict[str, Any]:
    """Derivatives by input name (each in its input's dtype), zeros for inputs the function
    never reads."""
    out: dict[str, Any] = {}
    for name, value in zip(problem.diff, values, strict=True):
        x = problem.inputs[name]
        out[name] = np.zeros_like(x) if value is None else _in_dtype(value, x.dtype)
    for name in problem.zero:
        out[name] = np.zeros_like(problem.inputs[name])
    return out


def _forward_vjp(problem: Problem) -> tuple[list[Any], bool, Callable[..., Any] | None]:
    """Forward pass recording a tape: outputs, several?, and the VJP function."""
    tick = time.perf_counter()
    with recording(problem) as rec:
        f = problem.fn(rec)
        if problem.diff:
            out, vjp_fn = engine.vjp(f, *problem.primals)
        else:
            out, vjp_fn = f(), None
    _finish_recording(problem, rec)
    problem.timing["forward"] = _ms(tick)
    outs, multi = _outputs(out)
    _locate_nonfinite(problem, outs)
    return outs, multi, vjp_fn


def _pull_back(problem: Problem, vjp_fn: Any, cots: list[Any], multi: bool) -> dict[str, Any]:
    tick = time.perf_counter()
    grads: Any = ()
    if vjp_fn is not None:
        grads = vjp_fn(tuple(cots) if multi else cots[0])
    problem.timing["backward"] = _ms(tick)
    return _by_name(problem, list(grads))


# --------------------------------------------------------------------------- endpoints


def grad(problem: Problem) -> dict[str, Any]:
    """Gradient of a scalar output, or the VJP with a given cotangent."""
    outs, multi, vjp_fn = _forward_vjp(problem)
    cots = _cotangents(problem, outs, multi, required=False)
    if multi and problem.task.get("cotangent") is None:
        problem.warnings.append(
            f"the function has {len(outs)} outputs and no cotangent was given: the gradients "
            "are of their sum, as torch.autograd.backward([y1, y2]) gives (pass a 'cotangent' "
            "per output to weigh them)"
        )
    return {"value": _value(outs, multi), "gradients": _pull_back(problem, vjp_fn, cots, multi)}


def vjp(problem: Problem) -> dict[str, Any]:
    """Vector-Jacobian product with the given cotangent(s)."""
    outs, multi, vjp_fn = _forward_vjp(problem)
    cots = _cotangents(problem, outs, multi, required=True)
    return {"value": _value(outs, multi), "vjp": _pull_back(problem, vjp_fn, cots, multi)}


def jvp(problem: Problem) -> dict[str, Any]:
    """Jacobian-vector product in forward mode (one pass, no tape)."""
    tangents = _directions(problem, "tangents")
    tick = time.perf_counter()
    with recording(problem) as rec:
        f = problem.fn(rec)
        if problem.diff:
            out, t_out = engine.jvp(f, problem.primals, tangents)
        else:
            out, t_out = f(), None
    _finish_recording(problem, rec)
    problem.timing["forward"] = _ms(tick)
    outs, multi = _outputs(out)
    _locate_nonfinite(problem, outs)
    touts = [np.zeros_like(o) for o in outs] if t_out is None else _outputs(t_out)[0]
    touts = [_in_dtype(t, o.dtype) for t, o in zip(touts, outs, strict=True)]
    return {"value": _value(outs, multi), "jvp": _value(touts, multi)}


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
    _finish_recording(problem, rec)
    problem.timing["forward"] = _ms(tick)
    outs, multi = _outputs(out)
    _locate_nonfinite(problem, outs)
    return outs, multi


def check_output(count: int, limits: dict[str, int], what: str = "the answer") -> None:
    """Refuse (413) an answer of more than ``max_output_elements`` numbers in total.

    Called before rendering (a 133-byte /jvp answered 628 MB), and before computing
    where the shapes tell (a Jacobian holds output size x input size numbers).
    """
    limit = limits.get("max_output_elements")
    if limit is not None and count > limit:
        raise SizeLimitError(
            f"{what} would hold {count:,} numbers, over the limit of {limit:,} "
            "(max_output_elements): ask for a smaller result",
            op=None if what == "the answer" else what.removeprefix("the "),
            loc=["body"],
        )


def _elements(value: Any) -> int:
    """Numbers in a result: every array's size, through dicts and lists (a few levels)."""
    if isinstance(value, np.ndarray | np.generic):
        return int(value.size)
    if isinstance(value, dict):
        return sum(_elements(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_elements(v) for v in value)
    return 1 if isinstance(value, int | float) else 0


def _check_size(what: str, count: int, limits: dict[str, int]) -> None:
    limit = limits["max_intermediate_elements"]
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
    mode = problem.task.get("mode", "auto")
    jac: list[list[Any]] = [[] for _ in outs]
    tick = time.perf_counter()
    if problem.diff:
        argnums = tuple(range(len(problem.diff)))
        _, jac, _, mode = engine.jacobian_and_value(
            problem.fn(),
            problem.primals,
            argnums,
            mode,
            max_elements=problem.limits["max_intermediate_elements"],
        )
    elif mode == "auto":
        mode = "reverse" if out_size < in_size else "forward"
    problem.timing[mode] = _ms(tick)
    result: dict[str, Any] = {}
    for name in problem.diff + problem.zero:
        blocks = [_block(problem, row, o, name) for row, o in zip(jac, outs, strict=True)]
        result[name] = blocks if multi else blocks[0]
    return {"value": _value(outs, multi), "jacobian": result, "mode": mode}


def _block(problem: Problem, row: list[Any], out: Any, name: str) -> Any:
    x = problem.inputs[name]
    if name in problem.zero:
        return np.zeros(out.shape + x.shape, dtype=x.dtype)
    return _in_dtype(row[problem.diff.index(name)], x.dtype)


def _scalar_forward(problem: Problem, what: str) -> Any:
    outs, multi = _plain_forward(problem)
    if multi or outs[0].size != 1:
        raise NonScalarOutputError(
            f"{what} needs one scalar output, got shape {_shapes_text(outs, multi)}: "
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
            max_elements=problem.limits["max_intermediate_elements"],
        )
    problem.timing["hessian"] = _ms(tick)
    names = problem.diff + problem.zero
    table = {a: {b: _hessian_block(problem, blocks, a, b) for b in names} for a in names}
    return {"value": np.asarray(value), "gradients": _by_name(problem, grads), "hessian": table}


def _hessian_block(problem: Problem, blocks: Any, a: str, b: str) -> Any:
    x, y = problem.inputs[a], problem.inputs[b]
    dtype = np.result_type(x, y)
    if a in problem.zero or b in problem.zero:
        return np.zeros(x.shape + y.shape, dtype=dtype)
    return _in_dtype(blocks[problem.diff.index(a)][problem.diff.index(b)], dtype)


def hvp(problem: Problem) -> dict[str, Any]:
    """Hessian-vector product without forming the Hessian."""
    vectors = _directions(problem, "vectors")
    value = _scalar_forward(problem, "a Hessian-vector product")
    tick = time.perf_counter()
    values: Any = []
    if problem.diff:
        value, _, values = engine.hvp_and_grad(problem.fn(), problem.primals, vectors)
    problem.timing["hvp"] = _ms(tick)
    return {"value": np.asarray(value), "hvp": _by_name(problem, list(values))}


ENDPOINTS: dict[str, Callable[[Problem], dict[str, Any]]] = {
    "grad": grad,
    "vjp": vjp,
    "jvp": jvp,
    "jacobian": jacobian,
    "hessian": hessian,
    "hvp": hvp,
}


# --------------------------------------------------------------------------- finite differences
# Each check compares the same derivative the endpoint answered with central
# differences of the function along a few directions: every coordinate for small
# inputs, seeded random directions otherwise, so the cost stays a handful of
# forward passes whatever the size.


def _basis(problem: Problem) -> list[Arrays]:
    shapes = [problem.inputs[n].shape for n in problem.diff]
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    if total == 0:
        return []
    if total <= FD_COORDINATES_UP_TO:
        flat = np.eye(total)
    else:
        flat = np.random.default_rng(FD_SEED).standard_normal((FD_RANDOM_DIRECTIONS, total))
    splits = np.cumsum(sizes)[:-1]
    return [
        tuple(p.reshape(s) for p, s in zip(np.split(row, splits), shapes, strict=True))
        for row in flat
    ]


def _shifted(problem: Problem, direction: Arrays, t: float) -> Arrays:
    return tuple(
        problem.inputs[n].astype(np.float64) + t * d
        for n, d in zip(problem.diff, direction, strict=True)
    )


def _step(problem: Problem, direction: Arrays) -> float:
    scale = max(
        [1.0] + [float(np.max(np.abs(problem.inputs[n]), initial=0.0)) for n in problem.diff]
    )
    size = max([float(np.max(np.abs(d), initial=0.0)) for d in direction] + [1e-300])
    return 6e-6 * scale / size


def _central(g: Callable[[Arrays], list[Any]], problem: Problem, direction: Arrays) -> list[Any]:
    h = _step(problem, direction)
    plus, minus = g(_shifted(problem, direction, h)), g(_shifted(problem, direction, -h))
    # float64: a comparison's output is boolean (NumPy has no boolean subtraction)
    return [
        (np.asarray(p, dtype=np.float64) - np.asarray(m, dtype=np.float64)) / (2 * h)
        for p, m in zip(plus, minus, strict=True)
    ]


def _errors(pairs: list[tuple[Any, Any]], directions: int) -> dict[str, Any]:
    if not pairs:
        return {"max_abs_error": 0.0, "max_rel_error": 0.0, "directions": 0}
    abs_err = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0)) for a, b in pairs
    )
    scale = max(
        max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        for a, b in pairs
    )
    rel = abs_err / scale if scale > 0 else abs_err
    return {"max_abs_error": abs_err, "max_rel_error": rel, "directions": directions}


def _outputs_of(problem: Problem) -> Callable[[Arrays], list[Any]]:
    f = problem.fn()
    return lambda xs: _outputs(f(*xs))[0]


def _gradient_of(problem: Problem) -> Callable[[Arrays], list[Any]]:
    f = problem.fn()
    argnums = tuple(range(len(problem.diff)))
    return lambda xs: list(engine.value_and_grad(f, argnums=argnums)(*xs)[1])


def _dot(a: Any, b: Any) -> float:
    return float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


def check_vjp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """<vjp, v> against the central difference of <cotangent, f> along v."""
    derivative = result.get("gradients", result.get("vjp", {}))
    outs, multi = _outputs(result["value"])
    cots = _cotangents(problem, outs, multi, required=False)
    outputs = _outputs_of(problem)

    def scalar(xs: Arrays) -> list[Any]:
        return [sum(_dot(c, o) for c, o in zip(cots, outputs(xs), strict=True))]

    pairs = []
    basis = _basis(problem)
    for d in basis:
        ad = sum(_dot(derivative[n], dn) for n, dn in zip(problem.diff, d, strict=True))
        pairs.append((ad, _central(scalar, problem, d)[0]))
    return _errors(pairs, len(basis))


def check_jvp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """The JVP against the central difference of f along the tangent."""
    tangents = _directions(problem, "tangents")
    if not problem.diff:
        return _errors([], 0)
    fd = _central(_outputs_of(problem), problem, tangents)
    ad = result["jvp"] if isinstance(result["value"], list) else [result["jvp"]]
    return _errors(list(zip(ad, fd, strict=True)), 1)


def check_jacobian(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """J v against the central difference of f along v, for each direction v."""
    multi = isinstance(result["value"], list)
    outs = result["value"] if multi else [result["value"]]
    pairs = []
    basis = _basis(problem)
    for d in basis:
        fd = _central(_outputs_of(problem), problem, d)
        for k, out in enumerate(outs):
            jv = sum(
                np.tensordot(
                    np.asarray(result["jacobian"][n][k] if multi else result["jacobian"][n]),
                    dn,
                    axes=dn.ndim,
                )
                for n, dn in zip(problem.diff, d, strict=True)
            )
            pairs.append((np.reshape(jv, np.shape(out)), fd[k]))
    return _errors(pairs, len(basis))


def check_hessian(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """H v against the central difference of the gradient along v."""
    pairs = []
    basis = _basis(problem)
    for d in basis:
        fd = _central(_gradient_of(problem), problem, d)
        for i, a in enumerate(problem.diff):
            hv = sum(
                np.tensordot(np.asarray(result["hessian"][a][b]), db, axes=db.ndim)
                for b, db in zip(problem.diff, d, strict=True)
            )
            pairs.append((hv, fd[i]))
    return _errors(pairs, len(basis))


def check_hvp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """The HVP against the central difference of the gradient along the vector."""
    vectors = _directions(problem, "vectors")
    if not problem.diff:
        return _errors([], 0)
    fd = _central(_gradient_of(problem), problem, vectors)
    return _errors([(result["hvp"][n], g) for n, g in zip(problem.diff, fd, strict=True)], 1)


CHECKS: dict[str, Callable[[Problem, dict[str, Any]], dict[str, Any]]] = {
    "grad": check_vjp,
    "vjp": check_vjp,
    "jvp": check_jvp,
    "jacobian": check_jacobian,
    "hessian": check_hessian,
    "hvp": check_hvp,
}
