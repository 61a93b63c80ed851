"""The compute endpoints: validate, build the task, hand it to the runner, answer JSON bytes.

The six endpoints differ only in their models, examples and words, so they are one table
(a row per row of ``app.compute.endpoints.ENDPOINTS``, checked at import) and one route
factory. (No ``from __future__ import annotations`` here: FastAPI reads the
request model from the handler's annotation, which must be the class itself, not a name
to look up in this module.)
"""

import time
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from app.api import schemas
from app.api.deps import RunnerDep
from app.api.lean_route import OrjsonRoute
from app.api.stored import stored_task
from app.api.tasks import build_task, check_request
from app.compute.endpoints import ENDPOINTS
from app.settings import Settings

router = APIRouter(route_class=OrjsonRoute, tags=["derivatives"])


ERRORS = schemas.problem_responses(
    400,
    401,
    404,
    408,
    413,
    422,
    500,
    502,
    503,
    504,
    text={404: "The stored function (function) is unknown or was evicted: store it again."},
)


class Route(NamedTuple):
    """An endpoint's HTTP side: its models, OpenAPI examples and words."""

    name: str  # the path, a name of the endpoint table
    request: type[schemas.ComputeRequest]
    response: type[Any]
    examples: dict[str, Any]
    answers: dict[str, Any]  # response examples: the answers to ``examples`` of the same name
    summary: str
    doc: str  # the handler's docstring: the operation's description in the docs


ROUTES = (
    Route(
        "grad",
        schemas.GradRequest,
        schemas.GradResponse,
        schemas.GRAD_EXAMPLES,
        schemas.GRAD_ANSWERS,
        "Gradient of a scalar output (or VJP with a cotangent)",
        "Gradient of a scalar output by every differentiated input, as PyTorch's backward().",
    ),
    Route(
        "vjp",
        schemas.VjpRequest,
        schemas.VjpResponse,
        schemas.VJP_EXAMPLES,
        schemas.VJP_ANSWERS,
        "Vector-Jacobian product",
        "Cotangent times the Jacobian; several outputs' contributions are summed.",
    ),
    Route(
        "jvp",
        schemas.JvpRequest,
        schemas.JvpResponse,
        schemas.JVP_EXAMPLES,
        schemas.JVP_ANSWERS,
        "Jacobian-vector product (forward mode)",
        "The Jacobian times the tangents, in one forward pass without a tape.",
    ),
    Route(
        "jacobian",
        schemas.JacobianRequest,
        schemas.JacobianResponse,
        schemas.JACOBIAN_EXAMPLES,
        schemas.JACOBIAN_ANSWERS,
        "Full Jacobian",
        "Jacobian of every output by every differentiated input, in one vectorised pass.",
    ),
    Route(
        "hessian",
        schemas.HessianRequest,
        schemas.HessianResponse,
        schemas.HESSIAN_EXAMPLES,
        schemas.HESSIAN_ANSWERS,
        "Hessian of a scalar output",
        "Value, gradient and Hessian by pairs of input names.",
    ),
    Route(
        "hvp",
        schemas.HvpRequest,
        schemas.HvpResponse,
        schemas.HVP_EXAMPLES,
        schemas.HVP_ANSWERS,
        "Hessian-vector product",
        "The Hessian times the given vectors, without forming the Hessian.",
    ),
)


MODELS: dict[str, type[schemas.ComputeRequest]] = {r.name: r.request for r in ROUTES}
if list(MODELS) != list(ENDPOINTS):  # one table of endpoints: the routes follow it
    raise RuntimeError(f"routes {list(MODELS)} do not match the endpoints {list(ENDPOINTS)}")


def add_route(e: Route) -> None:
    """``POST /{e.name}``: the request validated by ``e.request``, answered by the runner."""

    async def handler(
        req: Annotated[e.request, Body(openapi_examples=e.examples)],  # type: ignore[name-defined]
        request: Request,
        runner: RunnerDep,
    ) -> Response:
        start = time.perf_counter()
        settings: Settings = request.app.state.settings
        check_request(req, settings)
        raw = await request.body()
        task = build_task(e.name, req, settings, len(raw))
        if req.function is not None:  # a stored function: its meta, or 404 unknown-function
            task = await stored_task(task, req.function, request)
        answer = await runner.respond(task, raw, start)
        if answer.pool_wait_ms is not None:  # the access log line reports it
            request.state.pool_wait_ms = answer.pool_wait_ms
        return Response(answer.body, media_type="application/json")

    handler.__name__ = handler.__qualname__ = e.name
    handler.__doc__ = e.doc
    answers: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/json": {"examples": e.answers}}}
    }
    router.post(
        f"/{e.name}",
        response_model=e.response,
        responses={**answers, **ERRORS},
        summary=e.summary,
        # A generated client's method is named by the operation id: grad, not grad_grad_post.
        operation_id=e.name,
    )(handler)


for _route in ROUTES:
    add_route(_route)
