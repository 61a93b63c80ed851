"""``Program``: the compiled form of a function, plain data that pickles to a worker process."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.lang.ir import Loc
from engine.lang.limits import Limits


@dataclass(frozen=True)
class Program:
    """A checked function: IR statements plus what is known before running it.

    ``free_names`` are the inputs (names that may be read before any
    assignment), in order of first use; ``num_ops`` counts op call sites,
    operators included; ``kind`` is ``expression``, ``program`` or ``graph``.
    """

    body: tuple[Any, ...]
    free_names: tuple[str, ...]
    free_locs: tuple[Loc, ...]
    has_loops: bool
    num_ops: int
    kind: str
    limits: Limits

    def run(
        self,
        env: dict[str, Any],
        *,
        max_iterations: int | None = None,
        max_elements: int | None = None,
    ) -> Any:
        """Execute define-by-run on engine ops; one output, or a tuple for several."""
        from engine.lang.interp import Interpreter

        iterations = self.limits.max_iterations if max_iterations is None else max_iterations
        elements = self.limits.max_elements if max_elements is None else max_elements
        return Interpreter(self, env, iterations, elements).run()

    def unused(self, names: Iterable[str]) -> list[str]:
        """The given input names that the function never reads."""
        free = set(self.free_names)
        return [n for n in names if n not in free]
