"""The task: one validated request as plain, frozen, picklable data. No web imports.

A ``Task`` is what crosses from the API layer to compute, in the server process or
in a pool worker: the request's fields as their parsed JSON values (array values are
not copied), the endpoint's name and the limits. The API layer builds it
(``app.api.tasks``); nothing here knows about HTTP or pydantic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The limits a task carries to the engine (from the service's settings)."""

    max_input_elements: int
    max_intermediate_elements: int
    max_iterations: int
    max_graph_nodes_returned: int
    max_source_chars: int
    max_output_elements: int

    def capped(self, elements: int) -> TaskLimits:
        """These limits with input and intermediate sizes at most ``elements`` (a lane's cap)."""
        return dataclasses.replace(
            self,
            max_input_elements=min(elements, self.max_input_elements),
            max_intermediate_elements=min(elements, self.max_intermediate_elements),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """One request's computation: which endpoint, the function, its inputs and options.

    ``array_fields`` names the fields holding arrays and ``named_fields`` those holding
    one entry per input name (both from the request model's field metadata): the arrays
    are what a spilled request body supplies and what the lane rule measures.
    ``body_bytes`` is the size of the request body, which the lane rule reads.
    """

    endpoint: str
    inputs: dict[str, Any]
    limits: TaskLimits
    expression: str | None = None
    graph: dict[str, Any] | None = None
    wrt: list[str] | None = None
    include_graph: bool | str = True  # False, True (JSON) or "dot"
    check: bool = False
    encoding: Literal["json", "b64"] = "json"
    cotangent: Any = None
    tangents: dict[str, Any] | None = None
    vectors: dict[str, Any] | None = None
    mode: Literal["auto", "reverse", "forward"] = "auto"
    holomorphic: bool = False  # complex inputs: df/dz of a holomorphic function
    # K directions at one point (each with a leading axis K), in place of the one above
    cotangents: Any = None
    tangents_batch: dict[str, Any] | None = None
    vectors_batch: dict[str, Any] | None = None
    # B evaluation points: the inputs named here carry a leading axis B (app.compute.batch)
    batch: list[str] | None = None
    # a stored function's id (in place of expression/graph) and the store that holds it
    function: str | None = None
    function_meta: dict[str, Any] | None = None  # the stored meta (app.compute.stored)
    store: Any = None  # app.store.StoreConfig
    array_fields: tuple[str, ...] = ("inputs",)
    named_fields: tuple[str, ...] = ("inputs", "wrt")
    body_bytes: int = 0

    @property
    def direction_batch(self) -> bool:
        """Whether the task asks for K directions at one point."""
        batches = (self.cotangents, self.tangents_batch, self.vectors_batch)
        return any(b is not None for b in batches)

    def field(self, name: str) -> Any:
        """The value of the request field ``name`` (``getattr`` by a name from a field list)."""
        return getattr(self, name)

    def with_fields(self, **values: Any) -> Task:
        """A copy with these fields replaced."""
        return dataclasses.replace(self, **values)

    def with_limits(self, elements: int) -> Task:
        """A copy whose input and intermediate sizes are capped at ``elements``."""
        return dataclasses.replace(self, limits=self.limits.capped(elements))
