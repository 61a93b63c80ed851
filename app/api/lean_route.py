"""The compute routes' lean request path: one body read, orjson, one validation.

Also the checks on a raw body before it is parsed (its parsed size, its object count,
a graph's node count): what a client sends is bounded before Python objects are built.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app.api import flow
from app.api.body import BodyShape, loads_body
from app.api.deps import get_runner
from app.api.errors import BusyError
from app.api.schemas import ComputeRequest
from app.settings import Settings
from engine.errors import SizeLimitError
from engine.lang.limits import Limits

M = TypeVar("M", bound=ComputeRequest)
# JSON objects per graph node (the node, its attrs, slices of an index) and per input.
MAX_OBJECTS_PER_NODE = 8
SMALL_BODY_BYTES = 1024 * 1024


class OrjsonRequest(Request):
    """A request whose JSON body is parsed by orjson (several times faster than json)."""

    async def json(self) -> Any:
        """The body parsed once with orjson (its errors are json.JSONDecodeError)."""
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """A compute route on a lean request path: one body read, orjson, one validation.

    FastAPI's generic handler (dependency solving, telemetry, content-type
    parsing with ``email.message``, response-model machinery) cost about a
    third of the web stack's time per small request; a compute route needs
    none of it: its body is one model and its one dependency is the runner.
    The answers are the same: invalid JSON and invalid bodies raise
    ``RequestValidationError`` with ``loc`` under "body", as FastAPI does.
    Any other route shape falls back to FastAPI's handler (with orjson).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The lean handler when the endpoint is (model body, request, runner), else FastAPI's."""
        lean = self._lean_handler()
        if lean is not None:
            return lean
        handler = super().get_route_handler()

        async def orjson_handler(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return orjson_handler

    def _lean_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]] | None:
        dependant = self.dependant
        bodies, deps = dependant.body_params, dependant.dependencies
        if (
            len(bodies) != 1
            or dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or [d.call for d in deps] != [get_runner]
            or dependant.request_param_name is None
        ):
            return None
        model = bodies[0].field_info.annotation
        if not (isinstance(model, type) and issubclass(model, ComputeRequest)):
            return None
        body_arg, runner_arg = bodies[0].name, deps[0].name
        request_arg = dependant.request_param_name
        if runner_arg is None:
            return None
        endpoint = self.endpoint

        async def lean_handler(request: Request) -> Response:
            raw = await _read_body(request)
            check_body_shape(raw, request)
            req = model_from_body(model, raw, request.headers)
            runner = await get_runner(request)
            response: Response = await endpoint(
                **{body_arg: req, request_arg: request, runner_arg: runner}
            )
            return response

        return lean_handler


async def _read_body(request: Request) -> bytes:
    try:
        return await request.body()
    except HTTPException:
        raise
    except Exception as exc:
        # The body limit's own errors answer 413 further out; anything else is
        # FastAPI's 400, as its generic handler does.
        if _is_body_limit_error(exc):
            raise
        raise HTTPException(400, "There was an error parsing the body") from exc


def _is_body_limit_error(exc: Exception) -> bool:
    try:
        from fastapi._body_limit import get_body_limit_error
    except ImportError:  # another FastAPI: let the error through unchanged
        return True
    return get_body_limit_error(exc) is not None


def check_body_shape(raw: bytes, request: Request) -> None:
    """Refuse a body whose parsed form would be too big, from its raw bytes (before parsing).

    Parsing builds a Python object per JSON value: a 27 MB graph of 10^6 nodes took the
    server to 1.7 GB (and 12 s of the event loop) before its node count was checked. The
    counts here cost one pass of ``bytes.count`` per character class. What passes is
    charged to the process's budget of bytes in flight (503 past it, see ``app.flow``).
    """
    settings: Settings = request.app.state.settings
    shape = BodyShape(raw)
    limit = settings.max_parsed_body_mb * 1024 * 1024
    if shape.parsed_bytes > limit:
        raise SizeLimitError(
            f"the body holds about {shape.values:,} JSON values and {shape.containers:,} "
            f"arrays or objects, which would take about {shape.parsed_bytes // 2**20:,} MiB "
            f"once parsed, over the limit of {settings.max_parsed_body_mb} MiB "
            '(max_parsed_body_mb): send large arrays as {"b64": ...}',
            loc=["body"],
        )
    # A graph node is an object, so is its attrs and each slice of an index: far fewer
    # than this in any graph under max_graph_nodes with max_inputs input objects.
    # Small bodies parse in milliseconds whatever they hold, and JSON nested past orjson's
    # depth limit stays what it is, invalid JSON (422).
    objects = MAX_OBJECTS_PER_NODE * (Limits().max_graph_nodes + settings.max_inputs)
    if shape.objects > objects and len(raw) > SMALL_BODY_BYTES:
        raise SizeLimitError(
            f"the body holds {shape.objects:,} JSON objects, more than any request under the "
            f"limits needs ({objects:,}: a graph has at most {Limits().max_graph_nodes:,} "
            "nodes)",
            loc=["body"],
        )
    try:
        flow.charge(request.scope, shape.parsed_bytes)
    except flow.BudgetExceededError:
        raise BusyError(
            "the server holds as many request bodies as its memory budget allows "
            "(max_bodies_in_flight_mb): retry shortly",
            {"Retry-After": "1"},
        ) from None


def _is_json(content_type: str | None) -> bool:
    # The common case without parsing; otherwise the same rule as FastAPI
    # (application/json or application/*+json, parameters allowed).
    if content_type is None:
        return False
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def model_from_body(model: type[M], raw: bytes, headers: Mapping[str, str]) -> M:
    """The validated request model, or ``RequestValidationError`` as FastAPI raises it."""
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    body: Any = raw  # not JSON by its content type: validated as bytes (and refused)
    if _is_json(headers.get("content-type")):
        try:
            body = loads_body(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from None
    _check_graph_size(body)
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _check_graph_size(body: Any) -> None:
    """The graph's node count, before a model is built for each node (413 past the limit)."""
    graph = body.get("graph") if isinstance(body, dict) else None
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    limit = Limits().max_graph_nodes
    if isinstance(nodes, list) and len(nodes) > limit:
        raise SizeLimitError(
            f"the graph has {len(nodes):,} nodes, over the limit of {limit:,}",
            loc=["body", "graph", "nodes"],
        )
