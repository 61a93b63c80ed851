"""Stored functions: ``POST /functions``, ``GET /functions/{id}``, ``DELETE /functions/{id}``.

A function and its constants are stored once in the shared store (``app.store``) under a
content hash; every compute endpoint then takes ``"function": id`` (see
``app.api.routes.derivatives``). (No ``from __future__ import annotations``: FastAPI reads
the request model from the handler's annotation.)
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from app.api import schemas
from app.api.lean_route import check_body_shape, model_from_body
from app.api.stored import store_access
from app.api.tasks import task_limits
from app.compute.stored import Record, make_record, public_meta, store_key, unknown_detail
from app.settings import Settings
from app.store import UnknownEntryError
from engine.errors import SizeLimitError


class StoredFunctionRoute(APIRoute):
    """``POST /functions`` on the compute routes' lean path: the raw body's size is
    bounded before it is parsed (``check_body_shape``), then orjson and one validation."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if self.body_field is None:
            return super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            raw = await request.body()
            check_body_shape(raw, request)
            req = model_from_body(schemas.FunctionRequest, raw, request.headers)  # type: ignore[type-var]
            response: Response = await endpoint(req=req, request=request)
            return response

        return handler


router = APIRouter(tags=["stored functions"])
body_router = APIRouter(tags=["stored functions"], route_class=StoredFunctionRoute)

ERRORS = schemas.problem_responses(401, 413, 422, 500, 503)
NOT_FOUND = schemas.problem_responses(
    401,
    404,
    422,
    500,
    503,
    text={404: "No stored function has this id (type urn:autodiff:problem:unknown-function)."},
)
FunctionId = Annotated[
    str,
    Path(
        pattern=schemas.FUNCTION_ID_PATTERN,
        description='The id POST /functions answered: "sha256:" and 64 hex digits.',
    ),
]


def _check_sizes(req: schemas.FunctionRequest, settings: Settings) -> None:
    limit = settings.max_source_chars
    if req.expression is not None and len(req.expression) > limit:
        raise SizeLimitError(
            f"the expression has {len(req.expression)} characters, over the limit of {limit}",
            loc=["body", "expression"],
        )
    if len(req.constants) > settings.max_inputs:
        raise SizeLimitError(
            f"constants has {len(req.constants)} names, over the limit of "
            f"{settings.max_inputs} (max_inputs)",
            loc=["body", "constants"],
        )


@body_router.post(
    "/functions",
    status_code=201,
    response_model=schemas.StoredFunction,
    responses=ERRORS,
    summary="Store a function and its constants",
)
async def store_function(
    req: Annotated[schemas.FunctionRequest, Body(openapi_examples=schemas.FUNCTION_EXAMPLES)],
    request: Request,
) -> Response:
    """Compile the function, decode the constants, and keep both in the shared store under
    a content hash of the two: the same function and constants give the same id on any
    replica, whatever encoding carried them. Answers 201 with the id and what the function
    still needs as inputs."""
    settings: Settings = request.app.state.settings
    _check_sizes(req, settings)
    graph = req.graph.model_dump() if req.graph is not None else None
    limits = task_limits(settings)
    # compiling and decoding are bounded by the limits; off the event loop all the same
    record: Record = await asyncio.to_thread(
        make_record, req.expression, graph, req.constants, limits
    )
    access = store_access(request)
    meta = record.meta_bytes()
    await access.call(lambda s: s.put(store_key(record.id), meta, record.data))
    body = orjson.dumps(public_meta(record.meta))
    return Response(
        body,
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/functions/{record.id}"},
    )


@router.get(
    "/functions/{function_id}",
    response_model=schemas.StoredFunction,
    responses=NOT_FOUND,
    summary="A stored function's metadata",
)
async def get_function(function_id: FunctionId, request: Request) -> Response:
    """The id, the free inputs, the constants' dtypes and shapes, the source or graph.
    Counts as a use: its time-to-live starts again."""
    meta = await store_access(request).function_meta(function_id)
    return Response(orjson.dumps(public_meta(meta)), media_type="application/json")


@router.delete(
    "/functions/{function_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Remove a stored function",
)
async def delete_function(function_id: FunctionId, request: Request) -> Response:
    """Removes it from the shared store (every replica then answers 404 for it)."""
    existed = await store_access(request).call(lambda s: s.delete(store_key(function_id)))
    if not existed:
        raise UnknownEntryError(unknown_detail(function_id))
    return Response(status_code=204)
