"""GET /ops: every op of the language, from the engine's registry."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

import engine.numpy  # noqa: F401  (importing it registers every op)
from app.api.schemas import OpInfo, OpsResponse, problem_responses
from engine.registry import OPS

router = APIRouter(tags=["language"])


@lru_cache(maxsize=1)
def ops_body() -> bytes:
    """The op list as JSON, built once (the registry does not change at run time)."""
    seen: dict[int, OpInfo] = {}
    for op in OPS.values():
        if id(op) in seen or op.name.startswith("_"):  # internal: not callable by users
            continue
        aliases = sorted(a for a in (op.name, *op.aliases) if a != op.name)
        seen[id(op)] = OpInfo(
            name=op.name,
            signature=op.signature,
            differentiable=op.differentiable,
            doc=op.doc,
            aliases=aliases,
        )
    ordered = sorted(seen.values(), key=lambda info: info.name)
    return OpsResponse(ops=ordered).model_dump_json().encode()


@router.get(
    "/ops",
    response_model=OpsResponse,
    summary="The ops of the language",
    operation_id="list_ops",
    responses=problem_responses(500),
)
async def list_ops() -> Response:
    """Every op with its signature, whether it is differentiable, and a one-line description."""
    return Response(ops_body(), media_type="application/json")
