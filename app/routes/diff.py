"""The compute endpoints: validate, hand to the runner (inline or pool), answer JSON bytes.

The six endpoints differ only in their models, examples and words, so they are one table
and one route factory. (No ``from __future__ import annotations`` here: FastAPI reads the
request model from the handler's annotation, which must be the class itself, not a name
to look up in this module.)
"""

from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from app import schemas
from app.deps import OrjsonRoute, RunnerDep

router = APIRouter(route_class=OrjsonRoute, tags=["derivatives"])


ERRORS = schemas.problem_responses(401, 413, 422, 500, 502, 503, 504)


class Endpoint(NamedTuple):
    name: str  # the path and the runner's endpoint
    request: type[schemas.ComputeRequest]
    response: type[Any]
    examples: dict[str, Any]
    summary: str
    doc: str  # the handler's docstring: the operation's description in the docs


ENDPOINTS = (
    Endpoint(
        "grad",
        schemas.GradRequest,
        schemas.GradResponse,
        schemas.GRAD_EXAMPLES,
        "Gradient of a scalar output (or VJP with a cotangent)",
        "Gradient of a scalar output by every differentiated input, as PyTorch's backward().",
    ),
    Endpoint(
        "vjp",
        schemas.VjpRequest,
        schemas.VjpResponse,
        schemas.VJP_EXAMPLES,
        "Vector-Jacobian product",
        "Cotangent times the Jacobian; several outputs' contributions are summed.",
    ),
    Endpoint(
        "jvp",
        schemas.JvpRequest,
        schemas.JvpResponse,
        schemas.JVP_EXAMPLES,
        "Jacobian-vector product (forward mode)",
        "The Jacobian times the tangents, in one forward pass without a tape.",
    ),
    Endpoint(
        "jacobian",
        schemas.JacobianRequest,
        schemas.JacobianResponse,
        schemas.JACOBIAN_EXAMPLES,
        "Full Jacobian",
        "Jacobian of every output by every differentiated input, in one vectorised pass.",
    ),
    Endpoint(
        "hessian",
        schemas.HessianRequest,
        schemas.HessianResponse,
        schemas.HESSIAN_EXAMPLES,
        "Hessian of a scalar output",
        "Value, gradient and Hessian by pairs of input names.",
    ),
    Endpoint(
        "hvp",
        schemas.HvpRequest,
        schemas.HvpResponse,
        schemas.HVP_EXAMPLES,
        "Hessian-vector product",
        "The Hessian times the given vectors, without forming the Hessian.",
    ),
)


def add_route(e: Endpoint) -> None:
    """``POST /{e.name}``: the request validated by ``e.request``, answered by the runner."""

    async def handler(
        req: Annotated[e.request, Body(openapi_examples=e.examples)],  # type: ignore[name-defined]
        request: Request,
        runner: RunnerDep,
    ) -> Response:
        return await runner.respond(e.name, req, request)

    handler.__name__ = handler.__qualname__ = e.name  # FastAPI's operation id: grad_grad_post
    handler.__doc__ = e.doc
    router.post(f"/{e.name}", response_model=e.response, responses=ERRORS, summary=e.summary)(
        handler
    )


for _endpoint in ENDPOINTS:
    add_route(_endpoint)
