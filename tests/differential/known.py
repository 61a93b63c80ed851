"""KNOWN_BEING_FIXED: the one exclusion set of the differential tests.

An entry names a class of failure that is written down elsewhere (an issue item, a
findings file) and is being fixed; a failure is excluded only when its minimal
reproduction matches the entry's predicate, and anything else fails the CI test. Delete
the entry with the fix, so the run checks that class too.

Empty: every class issue 13 listed, and the two the differential run found (matrix norms
of ord 1, -1, inf, -inf; index arrays with something between them), is fixed, and the CI
run and the long run check them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Known(NamedTuple):
    item: str  # where it is written down
    matches: Callable[[Any], bool]  # on a harness.Failure (its minimal reproduction)


KNOWN_BEING_FIXED: dict[str, Known] = {}


def classify(failure: Any) -> str | None:
    """The key of the entry the failure belongs to, or None (a new class)."""
    for key, known in KNOWN_BEING_FIXED.items():
        try:
            if known.matches(failure):
                return key
        except Exception:  # a predicate that cannot read a failure does not excuse it
            continue
    return None
