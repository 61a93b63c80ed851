"""KNOWN_BEING_FIXED: the one exclusion set of the differential tests.

Each entry is a class of failure that issue 13 lists and another helper is fixing on its own
branch (the issue item is in the entry), or that this run found and reported in
FINDINGS-difftest.md (for the lead to route). A failure is excluded only when its minimal
reproduction matches an entry's predicate; anything else fails the CI test. After merging a
fix, delete its entry here: the CI run then checks that class too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from tests.differential import programs as P
from tests.differential.backends import NumpyModel

BATCHED = ("jacobian", "hessian", "api:jacobian", "api:hessian")
WRONG = ("derivative", "status-500", "status-422", "error", "shape", "structure", "value")


class Known(NamedTuple):
    item: str  # where it is written down
    matches: Callable[[Any], bool]  # on a harness.Failure (its minimal reproduction)


def _program(f: Any) -> P.Program:
    return (f.minimal or f).spec.program


def _nodes(f: Any) -> list[Any]:
    return P.expressions(_program(f))


def _mixed_advanced(f: Any) -> bool:
    """An index array together with another advanced entry (an int or another array)."""
    for n in _nodes(f):
        if isinstance(n, P.Index):
            arrays = [e for e in n.entries if isinstance(e, list)]
            ints = [e for e in n.entries if isinstance(e, int) and not isinstance(e, bool)]
            if arrays and len(arrays) + len(ints) >= 2:
                return True
    return False


def _arrays_apart(f: Any) -> bool:
    """Two index arrays in one index with something (an int, a slice, None) between them."""
    for n in _nodes(f):
        if isinstance(n, P.Index):
            at = [i for i, e in enumerate(n.entries) if isinstance(e, list)]
            if len(at) >= 2 and at[-1] - at[0] + 1 > len(at):
                return True
    return False


def _calls(f: Any, op: str) -> list[P.Call]:
    return [n for n in _nodes(f) if isinstance(n, P.Call) and n.op == op]


def _matrix_norm_ord(f: Any, ords: tuple[float, ...]) -> bool:
    """A norm over two axes (a matrix norm, as NumPy reads it) with one of these ords."""
    for args, kw in _run(f).calls.get("norm", []):
        axis, ndim = kw.get("axis"), np.ndim(args[0])
        matrix = (axis is None and ndim == 2) or (isinstance(axis, tuple) and len(axis) == 2)
        if matrix and kw.get("ord") in ords:
            return True
    return False


def _vector_norm_ord0(f: Any) -> bool:
    return any(kw.get("ord") == 0 for _, kw in _run(f).calls.get("norm", []))


def _traced_constructor(f: Any) -> bool:
    return any(
        any(P.is_expr(v) for _, v in c.kwargs) for op in ("full", "linspace") for c in _calls(f, op)
    )


def _traced_list(f: Any) -> bool:
    """A list literal of traced values given to an array parameter (``mean([a, b])``)."""
    return any(
        isinstance(n, P.Call)
        and n.op not in P.SEQUENCE_OPS
        and any(isinstance(a, P.Seq) for a in n.args)
        for n in _nodes(f)
    )


def _clip_keywords(f: Any) -> bool:
    return any(dict(c.kwargs).keys() & {"a_min", "a_max"} for c in _calls(f, "clip"))


def _inf_attr(f: Any) -> bool:
    return f.form == "graph" and any(
        any(isinstance(v, float) and math.isinf(v) for _, v in c.kwargs)
        for n in _nodes(f)
        if isinstance((c := n), P.Call)
    )


class _Spy(NumpyModel):
    """The NumPy model, recording every call's operands and whether a result was empty."""

    def __init__(self) -> None:
        super().__init__(checked=False)
        self.empty = False
        self.calls: dict[str, list[tuple[list[Any], dict[str, Any]]]] = {}

    def call(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self.calls.setdefault(op, []).append((args, kwargs))
        out = super().call(op, args, kwargs)
        self.empty |= not isinstance(out, tuple) and np.size(out) == 0
        return out

    def index(self, x: Any, entries: tuple[Any, ...]) -> Any:
        out = super().index(x, entries)
        self.empty |= not isinstance(out, tuple) and np.size(out) == 0
        return out


def _run(f: Any) -> _Spy:
    spec = (f.minimal or f).spec
    spy = _Spy()
    with np.errstate(all="ignore"):
        P.run(spec.program, spy, dict(spec.inputs))
    return spy


def _size_zero(f: Any) -> bool:
    return _run(f).empty


def _endpoint(f: Any, *prefixes: str) -> bool:
    return f.endpoint.startswith(prefixes)


KNOWN_BEING_FIXED: dict[str, Known] = {
    # B7: nested transforms (jacobian(jacobian(f)), grad(jacobian(f)), grad(hessian(f)))
    # crash in the Python API. First: its failures may hold any op.
    "nested-transforms": Known(
        "ISSUE13 B7", lambda f: f.endpoint == "api:jacobian(jacobian)" and f.kind == "error"
    ),
    # B1: mixed advanced indexing (an index array with an int or another array) in the
    # batched paths: wrong forward-mode Jacobians, 500s in reverse mode, 422 from /hessian.
    "mixed-advanced-indexing-batched": Known(
        "ISSUE13 B1",
        lambda f: _mixed_advanced(f) and _endpoint(f, *BATCHED) and f.kind in WRONG,
    ),
    # FINDINGS-difftest #2: two index arrays with an int, slice or None between them are
    # refused (422) on every endpoint; the same family as B1.
    "index-arrays-apart": Known(
        "FINDINGS-difftest #2", lambda f: _arrays_apart(f) and f.kind in ("status-422", "error")
    ),
    # B3: norm(m, ord=2) of a matrix (and ord=-2) is the Frobenius norm or refused;
    # norm(v, ord=0) is a 422.
    "norm-matrix-ord-2-and-ord-0": Known(
        "ISSUE13 B3",
        lambda f: (_matrix_norm_ord(f, (2, -2)) or _vector_norm_ord0(f)) and f.kind in WRONG,
    ),
    # FINDINGS-difftest #1: matrix norms with ord 1, -1, inf, -inf are refused with a 422.
    "norm-matrix-ord-1-inf": Known(
        "FINDINGS-difftest #1",
        lambda f: _matrix_norm_ord(f, (1, -1, math.inf, -math.inf)) and f.kind in WRONG,
    ),
    # B4: traced values given to constructors (full's fill value, linspace's end points)
    # lose their gradient.
    "traced-constructor-arguments": Known(
        "ISSUE13 B4", lambda f: _traced_constructor(f) and f.kind in WRONG
    ),
    # B6: a list literal of traced values (mean([x, x + 2])) becomes a constant.
    "list-of-traced-values": Known("ISSUE13 B6", lambda f: _traced_list(f) and f.kind in WRONG),
    # B7: clip with keywords (clip(x, a_min=..., a_max=...)) has a crashing derivative.
    "clip-keywords": Known("ISSUE13 B7", lambda f: _clip_keywords(f) and f.kind in WRONG),
    # B8: requires_grad false is ignored on /jvp and /hvp when the input has a tangent.
    "requires-grad-false-with-tangent": Known(
        "ISSUE13 B8",
        lambda f: (
            _endpoint(f, "jvp", "hvp")
            and bool(f.spec.constants)
            and bool(
                set((f.request or {}).get("tangents", (f.request or {}).get("vectors", {})))
                & f.spec.constants
            )
        ),
    ),
    # B10: the dtype of a derivative depends on the endpoint (and the mode) when a float32
    # input meets a float64 constant; one rule is being made for every endpoint.
    "derivative-dtype-rule": Known(
        "ISSUE13 B10", lambda f: f.kind == "dtype" and f.spec.dtype == "float32"
    ),
    # B11: the graph form cannot say inf in attrs.
    "graph-inf-attrs": Known("ISSUE13 B11", lambda f: _inf_attr(f) and f.kind == "status-422"),
    # B12: /grad with several scalar outputs and no cotangent sums without a warning.
    "grad-several-outputs-warning": Known("ISSUE13 B12", lambda f: f.kind == "no-warning"),
    # A6: after a 500 the server drops the keep-alive connection without Connection: close,
    # and the client's next request on it fails.
    "connection-dropped-after-500": Known(
        "ISSUE13 A6",
        lambda f: f.kind == "connection" and "the previous answer was 5" in f.detail,
    ),
    # A6: size-0 results (x[2:, 0]) give 500s in reverse-mode Jacobians.
    "size-zero-results": Known("ISSUE13 A6", lambda f: _size_zero(f) and f.kind in WRONG),
}


def classify(failure: Any) -> str | None:
    """The key of the entry the failure belongs to, or None (a new class)."""
    for key, known in KNOWN_BEING_FIXED.items():
        try:
            if known.matches(failure):
                return key
        except Exception:  # a predicate that cannot read a failure does not excuse it
            continue
    return None
