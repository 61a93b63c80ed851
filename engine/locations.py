"""Where something happened in a user's function: shared by the language and the graph metadata.

A ``Loc`` is ``(line, column)`` (1-based) in a source text, or a node id (a string) in a
JSON graph. Here, not in the language, so that ``engine.graph`` needs no language import.
"""

from __future__ import annotations

from typing import Any, TypeAlias

Loc: TypeAlias = "tuple[int, int] | str"


def loc_dict(loc: Loc | None) -> dict[str, Any] | None:
    """The JSON form of a location: ``{"line", "column"}`` or ``{"node"}``."""
    if loc is None:
        return None
    if isinstance(loc, str):
        return {"node": loc}
    return {"line": loc[0], "column": loc[1]}


def loc_text(loc: Loc | None) -> str:
    """A location for a message: ``line 3, column 7`` or ``node 'y'``."""
    if loc is None:
        return "an unknown place"
    if isinstance(loc, str):
        return f"node {loc!r}"
    return f"line {loc[0]}, column {loc[1]}"
