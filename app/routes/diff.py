"""The compute endpoints: validate, hand to the runner (inline or pool), answer JSON bytes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from app import schemas
from app.deps import OrjsonRoute, RunnerDep

router = APIRouter(route_class=OrjsonRoute, tags=["derivatives"])


ERRORS = schemas.problem_responses(401, 413, 422, 500, 502, 503, 504)


@router.post(
    "/grad",
    response_model=schemas.GradResponse,
    responses=ERRORS,
    summary="Gradient of a scalar output (or VJP with a cotangent)",
)
async def grad(
    req: Annotated[schemas.GradRequest, Body(openapi_examples=schemas.GRAD_EXAMPLES)],
    request: Request,
    runner: RunnerDep,
) -> Response:
    """Gradient of a scalar output by every differentiated input, as PyTorch's backward()."""
    return await runner.respond("grad", req, request)


@router.post(
    "/vjp",
    response_model=schemas.VjpResponse,
    responses=ERRORS,
    summary="Vector-Jacobian product",
)
async def vjp(
    req: Annotated[schemas.VjpRequest, Body(openapi_examples=schemas.VJP_EXAMPLES)],
    request: Request,
    runner: RunnerDep,
) -> Response:
    """Cotangent times the Jacobian; several outputs' contributions are summed."""
    return await runner.respond("vjp", req, request)


@router.post(
    "/jvp",
    response_model=schemas.JvpResponse,
    responses=ERRORS,
    summary="Jacobian-vector product (forward mode)",
)
async def jvp(
    req: Annotated[schemas.JvpRequest, Body(openapi_examples=schemas.JVP_EXAMPLES)],
    request: Request,
    runner: RunnerDep,
) -> Response:
    """The Jacobian times the tangents, in one forward pass without a tape."""
    return await runner.respond("jvp", req, request)


@router.post(
    "/jacobian",
    response_model=schemas.JacobianResponse,
    responses=ERRORS,
    summary="Full Jacobian",
)
async def jacobian(
    req: Annotated[schemas.JacobianRequest, Body(openapi_examples=schemas.JACOBIAN_EXAMPLES)],
    request: Request,
    runner: RunnerDep,
) -> Response:
    """Jacobian of every output by every differentiated input, in one vectorised pass."""
    return await runner.respond("jacobian", req, request)


@router.post(
    "/hessian",
    response_model=schemas.HessianResponse,
    responses=ERRORS,
    summary="Hessian of a scalar output",
)
async def hessian(
    req: Annotated[schemas.HessianRequest, Body(openapi_examples=schemas.HESSIAN_EXAMPLES)],
    request: Request,
    runner: RunnerDep,
) -> Response:
    """Value, gradient and Hessian by pairs of input names."""
    return await runner.respond("hessian", req, request)


@router.post(
    "/hvp",
    response_model=schemas.HvpResponse,
    responses=ERRORS,
    summary="Hessian-vector product",
)
async def hvp(
    req: Annotated[schemas.HvpRequest, Body(openapi_examples=schemas.HVP_EXAMPLES)],
    request: Request,
    runner: RunnerDep,
) -> Response:
    """The Hessian times the given vectors, without forming the Hessian."""
    return await runner.respond("hvp", req, request)
