"""The service's endpoints as one table: what each takes and how its answer is sized.

``Client`` and ``AsyncClient`` both read this table (``client.py``); the methods they
expose are written once, for both, and a test checks they and the table agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

from autodiff_client.codec import Encoding

__all__ = ["COMPUTE", "ENDPOINTS", "Endpoint", "JacobianOptions", "Options"]


@dataclass(frozen=True)
class Endpoint:
    """One endpoint: its path, method, and the fields a call may carry."""

    name: str
    path: str
    method: Literal["GET", "POST"] = "POST"
    direction: str | None = None
    """The required direction field (``cotangent``, ``tangents``, ``vectors``), if any."""
    directions: str | None = None
    """The field that takes K directions at once instead (``cotangents``, ``tangents_batch``,
    ``vectors_batch``): the answer's derivative gains a leading axis K."""
    fields: tuple[str, ...] = ()
    """Optional fields beyond the common ones (``Options``)."""
    square: bool = False
    """The answer grows as the square of the inputs (so it goes b64 sooner)."""
    summary: str = ""

    @property
    def compute(self) -> bool:
        """A compute endpoint: takes a function and inputs, answers a ``Result``."""
        return self.method == "POST"


class Options(TypedDict, total=False):
    """Options every compute method takes (the service's defaults where left out)."""

    wrt: str | Sequence[str] | None
    """Input names to differentiate with respect to (default: every input not constant)."""
    batch: str | Sequence[str] | None
    """Inputs whose leading axis is a batch of B points (the others are shared by every
    point): the function is applied to each point, as JAX's ``vmap``, in one request, and
    every array of the answer gains a leading axis B (before a direction axis K)."""
    constants: Iterable[str]
    """Inputs that get no derivative (sent with ``requires_grad: false``)."""
    check: bool
    """Also compute the derivative by central finite differences (``Result.check``)."""
    include_graph: bool
    """Add the graph metadata (``Result.graph``); off by default in the client."""
    encoding: Encoding | None
    """Force the answer's encoding; by default b64 when the answer will be large."""


class JacobianOptions(Options, total=False):
    """``jacobian``'s options: the common ones and ``mode``."""

    mode: Literal["auto", "reverse", "forward"]


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("grad", "/grad", fields=("cotangent",), summary="Gradient (or VJP)"),
        Endpoint(
            "vjp",
            "/vjp",
            direction="cotangent",
            directions="cotangents",
            summary="Vector-Jacobian product",
        ),
        Endpoint(
            "jvp",
            "/jvp",
            direction="tangents",
            directions="tangents_batch",
            summary="Jacobian-vector product",
        ),
        Endpoint("jacobian", "/jacobian", fields=("mode",), square=True, summary="Jacobian"),
        Endpoint("hessian", "/hessian", square=True, summary="Hessian of a scalar output"),
        Endpoint(
            "hvp",
            "/hvp",
            direction="vectors",
            directions="vectors_batch",
            summary="Hessian-vector product",
        ),
        Endpoint("ops", "/ops", method="GET", summary="The op catalogue"),
        Endpoint("healthz", "/healthz", method="GET", summary="Alive"),
        Endpoint("readyz", "/readyz", method="GET", summary="Ready: the worker pool is up"),
    )
}
COMPUTE = tuple(e for e in ENDPOINTS.values() if e.compute)
