"""A batched run of a Program: B evaluation points in one vectorised pass (``vmap``).

``run_batched`` runs a program as JAX's ``vmap(f, in_axes=0 or None)`` would: the inputs
named in ``batched`` carry a leading axis of B points, the others are shared. Every value
computed from a batched one is batched too (tracked by identity in ``BatchedInterpreter``);
every op call on a batched value goes through a *batching rule* (``engine.batching``) that
calls the ordinary registered ops on the whole batch, so the autodiff engine traces them as
usual and every transform (vjp, jvp, Jacobians, Hessians, second order) works on the
batched function unchanged.

Control flow: a condition, or a static read of a traced value (a ``range`` bound, an index,
a shape), that is the same at every point is taken once for all of them. Where the points
disagree the run stops with ``Divergence``, carrying each point's value; the caller
(``app.compute.batch``) then runs the points apart, grouped by that value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from engine import batching
from engine.core import trace
from engine.errors import AutodiffError, ShapeError
from engine.lang.interp import Interpreter, _shapes
from engine.locations import Loc, loc_dict, loc_text
from engine.registry import Op, shape_of

if TYPE_CHECKING:
    from engine.lang.program import Program


class Divergence(Exception):  # noqa: N818 -- a control-flow signal, not an error
    """The points of a batch disagree at a condition or a static read.

    ``keys[b]`` is point b's value there (hashable); ``loc`` where it happened and
    ``what`` says what was read ("the condition", "a static value").
    """

    def __init__(self, keys: list[Any], loc: Loc, what: str) -> None:
        super().__init__(f"{what} at {loc_text(loc)} differs between the points of the batch")
        self.keys = keys
        self.loc = loc
        self.what = what


class BatchedInterpreter(Interpreter, batching.Batch):
    """An ``Interpreter`` whose batched values carry a leading axis of ``size`` points."""

    def __init__(
        self,
        program: Program,
        env: dict[str, Any],
        max_iterations: int,
        max_elements: int,
        batched: frozenset[str],
        size: int,
    ) -> None:
        Interpreter.__init__(self, program, env, max_iterations, max_elements)
        batching.Batch.__init__(self, size)
        for name in batched:
            if name in self.vars:
                self.mark(self.vars[name])

    def run(self) -> Any:
        out = Interpreter.run(self)
        if isinstance(out, tuple):
            return tuple(self.broadcast(o) for o in out)
        return self.broadcast(out)

    # --- per-point views of batched values ----------------------------------------------

    def shape_of(self, value: Any) -> tuple[int, ...]:
        shape = shape_of(value)
        return shape[1:] if self.is_batched(value) else shape

    def is_traced(self, value: Any) -> bool:
        return isinstance(value, trace.Box) or self.is_batched(value)

    def truth_value(self, value: Any, loc: Loc) -> Any:
        if not self.is_batched(value):
            return trace.unbox_all(value)
        raw = np.asarray(trace.unbox_all(value))
        per_point = raw.reshape(self.size, -1)
        if per_point.shape[1] != 1:
            return raw[0]  # not a scalar per point: the caller's error names its shape
        flags = [bool(v) for v in per_point[:, 0]]
        if len(set(flags)) > 1:
            raise Divergence(flags, loc, "the condition")
        return raw[0]

    def static_value(self, value: Any, loc: Loc, what: str | None) -> Any:
        if not self.is_batched(value):
            return value
        if what is not None and isinstance(value, trace.Box):
            return value  # a traced static argument: the caller refuses it, naming it
        raw = np.asarray(trace.unbox_all(value))
        keys = [(p.shape, p.dtype.str, p.tobytes()) for p in raw]
        if len(set(keys)) > 1:
            raise Divergence(keys, loc, "the value read as a static (index, bound or shape)")
        return raw[0]

    def one_index(self, v: Any, loc: Loc) -> Any:
        """An index item; one computed from a batched value (a mask ``x > 2``, an index
        array ``argsort(x)``) stays batched: it is one index per point (``getitem``'s
        batching rule)."""
        out = Interpreter.one_index(self, v, loc)
        if self.is_batched(v) and isinstance(out, np.ndarray):
            self.mark(out)
        return out

    # --- op calls ------------------------------------------------------------------------

    def apply_op(
        self, op: Op, args: list[Any], kwargs: dict[str, Any], loc: Loc, sized: bool
    ) -> Any:
        if not self.any_batched(args, kwargs):
            return Interpreter.apply_op(self, op, args, kwargs, loc, sized)
        try:
            recorder = trace.current_recorder()
            if recorder is not None:
                recorder.loc = loc
            return self.apply_batched(op, args, kwargs, self.max_elements)
        except AutodiffError as err:
            raise err.with_loc(loc_dict(loc)) from None
        except batching.SelectionDiffers as differs:
            raise Divergence(differs.counts, loc, differs.what) from None
        except (RecursionError, Divergence):
            raise
        except MemoryError:
            raise self.out_of_memory(op.name, loc, args) from None
        except Exception as exc:  # NumPy's ValueError/TypeError...: name the op and shapes
            shapes = _shapes(args)
            text = ", ".join(map(str, shapes))
            msg = f"{op.name}: {exc} (argument shapes {text}) at {loc_text(loc)}"
            raise ShapeError(msg, op=op.name, shapes=shapes, loc=loc_dict(loc)) from None


def run_batched(
    program: Program,
    env: dict[str, Any],
    batched: frozenset[str],
    size: int,
    *,
    max_iterations: int | None = None,
    max_elements: int | None = None,
) -> Any:
    """Run ``program`` over ``size`` points: the ``batched`` inputs carry a leading axis of
    that size, the others are shared; every output has the leading axis. May raise
    ``Divergence`` (the points disagree at a condition or static read)."""
    iterations = program.limits.max_iterations if max_iterations is None else max_iterations
    elements = program.limits.max_elements if max_elements is None else max_elements
    return BatchedInterpreter(program, env, iterations, elements, batched, size).run()
