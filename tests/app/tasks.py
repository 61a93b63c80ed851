"""Tasks for tests that call compute or scheduling directly, built as the API builds them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.api.routes.derivatives import MODELS
from app.api.schemas import ARRAY, NAMED, fields_with
from app.api.tasks import task_limits
from app.compute.run import Encoded, run, run_encoded
from app.compute.task import Task, TaskLimits
from app.settings import Settings


def make_task(fields: Mapping[str, Any] | Task, settings: Settings | None = None) -> Task:
    """A ``Task`` from request-like fields (``endpoint``, ``expression``, ``inputs``, ...);
    ``limits`` may be given as ``TaskLimits``, else they come from ``settings``."""
    if isinstance(fields, Task):
        return fields
    values = dict(fields)
    model = MODELS[values["endpoint"]]
    limits = values.pop("limits", None)
    if not isinstance(limits, TaskLimits):
        limits = task_limits(settings or Settings())
    return Task(
        **values,
        limits=limits,
        array_fields=fields_with(model, ARRAY),
        named_fields=fields_with(model, NAMED),
    )


def run_task(fields: Mapping[str, Any] | Task, program: Any = None) -> dict[str, Any]:
    """``app.compute.run.run`` of these fields."""
    return run(make_task(fields), program)


def run_encoded_task(fields: Mapping[str, Any] | Task, program: Any = None) -> Encoded:
    """``app.compute.run.run_encoded`` of these fields."""
    return run_encoded(make_task(fields), program)
