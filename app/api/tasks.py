"""From a validated request model to a ``Task``: the one module that knows both.

Also the refusals that need only the model (a source over ``max_source_chars``, more
names than ``max_inputs``), made before any work.
"""

from __future__ import annotations

from app.api.schemas import ARRAY, NAMED, ComputeRequest, fields_with
from app.compute.task import Task, TaskLimits
from app.settings import Settings
from engine.errors import SizeLimitError


def task_limits(settings: Settings) -> TaskLimits:
    """The limits a task carries to the engine."""
    return TaskLimits(
        max_input_elements=settings.max_input_elements,
        max_intermediate_elements=settings.max_intermediate_elements,
        max_iterations=settings.max_iterations,
        max_graph_nodes_returned=settings.max_graph_nodes_returned,
        max_source_chars=settings.max_source_chars,
        max_output_elements=settings.max_output_elements,
    )


def build_task(endpoint: str, req: ComputeRequest, settings: Settings, body_bytes: int = 0) -> Task:
    """The request as a task (array values stay the parsed JSON, uncopied)."""
    model = type(req)
    fields = {name: getattr(req, name) for name in model.model_fields}
    if req.graph is not None:
        fields["graph"] = req.graph.model_dump()
    return Task(
        endpoint=endpoint,
        limits=task_limits(settings),
        array_fields=fields_with(model, ARRAY),
        named_fields=fields_with(model, NAMED),
        body_bytes=body_bytes,
        **fields,
    )


def check_request(req: ComputeRequest, settings: Settings) -> None:
    """Refuse (413) a source or a name list over the limits, by size alone."""
    limit = settings.max_source_chars
    if req.expression is not None and len(req.expression) > limit:
        raise SizeLimitError(
            f"the expression has {len(req.expression)} characters, over the limit of {limit}",
            loc=["body", "expression"],
        )
    # 100,000 unused inputs would each cost a decode and a warning line: refuse them
    # before any work, by count alone.
    limit = settings.max_inputs
    for field in fields_with(type(req), NAMED):
        names = getattr(req, field)
        if names is not None and len(names) > limit:
            raise SizeLimitError(
                f"{field} has {len(names)} names, over the limit of {limit} (max_inputs)",
                loc=["body", field],
            )
