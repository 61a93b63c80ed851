"""Where a task runs: ``choose_lane(task, program, settings) -> Lane``, a pure function.

Only work proven small before it starts may skip the pool, whose time limit can kill a
runaway computation; the proof comes from the task alone, checked before anything runs:

- every in-process lane: an endpoint whose cost is bounded by the function's (the
  endpoint table's ``in_process``: a gradient, VJP, JVP or HVP, never a Jacobian,
  Hessian or finite-difference check, whose work grows with the input size), a program
  without loops (each op site runs once, and its rules a fixed number of ops) and at most
  ``inline_max_ops`` op sites; with ``batch``, every op batched by a rule of its own
  (sizes are then B x per point, which the caps bound; control flow that differs between
  points reruns at most a bounded number of groups);
- **on the event loop**: a body under ``inline_max_body_bytes``, no einsum, every input
  and intermediate under ``inline_max_elements`` (4,096: a 64x64 matmul per op at worst).
  The pool hop would cost more than such a computation;
- **in a server thread** (the "medium" lane): only ops whose work is linear in their
  sizes (``cost.linear_cost``: no contraction or decomposition), every input and
  intermediate under ``min(thread_max_elements, 2^21 / op sites)`` elements (so the
  whole forward pass touches at most 2^21 elements), a body under
  ``thread_max_body_bytes`` of which all but ``inline_max_body_bytes`` is b64 text (JSON
  lists are decoded holding the GIL, b64 is not). The thread does not block the event
  loop: NumPy releases the GIL in large ufuncs.

Sizes are checked by each op's shape function before it allocates: a task that would go
past its lane's cap stops there (``SizeLimitError``) and the runner asks for the next
lane (``after=``). Whether the process is already computing is the runner's concern
(``app.scheduling.in_process``), not this function's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.compute.endpoints import ENDPOINTS
from app.compute.problem import compile_program
from app.compute.task import Task
from app.compute.wire import B64Text
from app.scheduling.cost import linear_cost, op_census
from engine.batching import rule_for
from engine.registry import OPS

# Sources longer than this are compiled in a worker, not on the event loop. Compiling is
# linear in the text but costs a few microseconds per character; a program the lanes
# accept has at most inline_max_ops (64) op sites, which fits in far fewer characters
# or graph nodes.
INLINE_MAX_SOURCE_CHARS = 4_000
INLINE_MAX_GRAPH_NODES = 256
# Ops whose work is not bounded by the sizes of their inputs and output (einsum's
# contraction over several operands can multiply them): never on the event loop.
INLINE_EXCLUDED_OPS = ("einsum",)
# Medium lane: op sites x elements per op (the whole forward pass's elements).
THREAD_MAX_ELEMENT_OPS = 2**21
# A list this short in an array field may hold one b64 object per output; a longer one
# is numbers.
_B64_LIST_MAX = 16

LaneName = Literal["loop", "thread", "pool"]


@dataclass(frozen=True)
class Lane:
    """A place to run a task, and the element cap a task runs under there (None: its own)."""

    name: LaneName
    max_elements: int | None = None


POOL = Lane("pool")


class LaneSettings(Protocol):
    """What the lane rule reads from the service settings."""

    @property
    def inline_max_ops(self) -> int: ...
    @property
    def inline_max_elements(self) -> int: ...
    @property
    def inline_max_body_bytes(self) -> int: ...
    @property
    def thread_max_elements(self) -> int: ...
    @property
    def thread_max_body_bytes(self) -> int: ...


def choose_lane(
    task: Task, program: Any, settings: LaneSettings, after: LaneName | None = None
) -> Lane:
    """The first lane (past ``after``) whose rule the task meets; the pool when none does.

    ``program`` is ``small_program(task, settings)``: the compiled function when it is
    small work, else None (then only the pool can run the task).
    """
    if program is None or not function_bounded(task):
        return POOL
    ops, sites = op_census(program)
    if after is None and _loop_admits(task, settings) and ops.isdisjoint(INLINE_EXCLUDED_OPS):
        return Lane("loop", settings.inline_max_elements)
    if after in (None, "loop") and _thread_admits(task, settings) and linear_cost(program):
        per_op = THREAD_MAX_ELEMENT_OPS // max(1, sites)
        return Lane("thread", min(settings.thread_max_elements, per_op))
    return POOL


def function_bounded(task: Task) -> bool:
    """Whether the endpoint's work is bounded by the function's and the function is short
    enough to compile on the event loop."""
    # K directions multiply the work by K, which the task does not show: the pool
    if not ENDPOINTS[task.endpoint].in_process or task.check or task.direction_batch:
        return False
    if task.expression is not None:
        return len(task.expression) <= INLINE_MAX_SOURCE_CHARS
    return task.graph is not None and len(task.graph["nodes"]) <= INLINE_MAX_GRAPH_NODES


def small_program(task: Task, settings: LaneSettings) -> Any:
    """The compiled function (cached) when an in-process lane may take the task and it is
    small work (no loops, at most ``inline_max_ops`` op sites); else None.

    Compiles only when the body's size lets a lane take the task: a compile error is then
    raised here, on the event loop, and answered without a pool hop.
    """
    if not function_bounded(task):
        return None
    if not (_loop_admits(task, settings) or _thread_admits(task, settings)):
        return None
    program = compile_program(task)
    if program.has_loops or max(program.num_ops, op_census(program)[1]) > settings.inline_max_ops:
        return None
    if task.batch is not None and not batched_by_rules(program):
        return None
    return program


def batched_by_rules(program: Any) -> bool:
    """Whether every op of the program has a batching rule: a batch of B points then costs
    one pass whose sizes (B x each op's per point) the lane's caps bound. An op batched point
    by point (``engine.batching``'s fallback) makes B op calls per site: the pool."""
    return all(rule_for(OPS[name]) != "fallback" for name in op_census(program)[0] if name in OPS)


def _loop_admits(task: Task, s: LaneSettings) -> bool:
    return s.inline_max_elements > 0 and task.body_bytes <= s.inline_max_body_bytes


def _thread_admits(task: Task, s: LaneSettings) -> bool:
    if s.thread_max_elements <= 0 or task.body_bytes > s.thread_max_body_bytes:
        return False
    # large JSON lists: decoding them would hold the GIL for milliseconds
    return task.body_bytes - b64_chars(task) <= s.inline_max_body_bytes


def b64_chars(task: Task) -> int:
    """Characters of b64 text in the task's array fields (top-level and one list deep)."""
    total = 0
    for name in task.array_fields:
        value = task.field(name)
        named = name in task.named_fields  # a dict by input name, else one value or a list
        values = value.values() if named and isinstance(value, dict) else [value]
        for item in values:
            items = item if isinstance(item, list) and len(item) <= _B64_LIST_MAX else [item]
            for one in items:
                if isinstance(one, dict) and isinstance(one.get("b64"), str | B64Text):
                    total += len(one["b64"])
    return total
