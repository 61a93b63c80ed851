"""The endpoint table: one row per derivative endpoint. No web imports.

Everything that differs between the six endpoints on the compute side is a column here:
the computation, its finite-difference check, whether its cost is bounded by the
function's (so it may run in the server process), which request field names the
differentiated inputs when ``wrt`` is absent, and the CLI's one-line help. The HTTP
routes (``app.api.routes.derivatives``), the lane rule and the CLI read their names from
this table; adding an endpoint is a row here and a row in the routes' table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.compute import checks, derivatives
from app.compute.problem import Problem

Derive = Callable[[Problem], dict[str, Any]]
Check = Callable[[Problem, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    """One derivative endpoint's computation and what the service needs to know about it."""

    name: str  # the path (POST /{name}), the CLI subcommand and the task's endpoint
    derive: Derive
    check: Check
    # Whether the work is bounded by the function's own: a Jacobian, Hessian or
    # finite-difference check multiplies it by up to the input size (never in-process).
    in_process: bool
    help: str  # the CLI's one-line help
    # The request field whose names are the differentiated inputs when wrt is absent.
    directions: str | None = None


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint(
            "grad",
            derivatives.grad,
            checks.check_vjp,
            in_process=True,
            help="gradient of a scalar output (or a VJP with --cotangent)",
        ),
        Endpoint(
            "vjp",
            derivatives.vjp,
            checks.check_vjp,
            in_process=True,
            help="vector-Jacobian product (needs --cotangent)",
        ),
        Endpoint(
            "jvp",
            derivatives.jvp,
            checks.check_jvp,
            in_process=True,
            help="Jacobian-vector product (tangents with -t)",
            directions="tangents",
        ),
        Endpoint(
            "jacobian",
            derivatives.jacobian,
            checks.check_jacobian,
            in_process=False,
            help="full Jacobian",
        ),
        Endpoint(
            "hessian",
            derivatives.hessian,
            checks.check_hessian,
            in_process=False,
            help="Hessian of a scalar output",
        ),
        Endpoint(
            "hvp",
            derivatives.hvp,
            checks.check_hvp,
            in_process=True,
            help="Hessian-vector product (vectors with -v)",
            directions="vectors",
        ),
    )
}
