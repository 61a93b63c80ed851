"""GET /ops: every op of the language, from the engine's registry."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

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


# The README's op list, by family: the engine module that defines an op's shape rule.
FAMILIES = {
    "engine.ops.elementwise": "Elementwise (NumPy broadcasting)",
    "engine.ops.special": "Special functions (scipy.special names)",
    "engine.ops.reductions": "Reductions and softmax (`axis`, `keepdims`)",
    "engine.ops.shape": "Shape and indexing",
    "engine.ops.selection": "Shape and indexing",
    "engine.ops.building": "Building, splitting and reshaping",
    "engine.ops.products": "Linear algebra",
    "engine.ops.einsum": "Linear algebra",
    "engine.ops.matrix": "Linear algebra",
    "engine.ops._linalg": "Linear algebra",
    "engine.ops.decompositions": "Linear algebra",
    "engine.ops.matfuncs": "Linear algebra",
    "engine.ops.complex_numbers": "Complex numbers",
    "engine.ops.fft": "FFT (numpy.fft)",
    "engine.ops.eig": "Linear algebra",
    "engine.ops.constructors": "Constructors",
    "engine.ops.ordering": "Cumulative, sorting, order statistics and gathering",
}


def op_families() -> dict[str, list[OpInfo]]:
    """Every op of ``GET /ops``, grouped by family (in ``FAMILIES``' order)."""
    infos = {info.name: info for info in OpsResponse.model_validate_json(ops_body()).ops}
    groups: dict[str, list[OpInfo]] = {title: [] for title in [*FAMILIES.values(), "Other"]}
    for op in OPS.values():
        info = infos.get(op.name)
        if info is None or info in groups[_family(op)]:
            continue
        groups[_family(op)].append(info)
    return {title: sorted(ops, key=lambda i: i.name) for title, ops in groups.items() if ops}


def _family(op: Any) -> str:
    return FAMILIES.get(getattr(op.shape_fn, "__module__", ""), "Other")


def markdown_op_list() -> str:
    """The README's op list: one line per family; no gradient flows through ops in italics."""
    lines = []
    for title, infos in op_families().items():
        names = []
        for info in infos:
            name = f"`{info.name}`" if info.differentiable else f"*`{info.name}`*"
            if info.aliases:
                name += f" (alias {', '.join(f'`{a}`' for a in info.aliases)})"
            names.append(name)
        lines.append(f"- **{title}**: {', '.join(names)}")
    return "\n".join(lines) + "\n"


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


if __name__ == "__main__":  # python -m app.api.routes.ops: the README's op list
    print(markdown_op_list(), end="")
