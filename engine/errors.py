"""Typed errors of the engine and the language.

Every error carries what a user needs to act: the op, the shapes, and where
(`loc`: a source position ``{"line", "column"}``, a graph node id, or None).
They pickle cleanly, so a worker process can raise them to the service. They carry
no HTTP status: the service maps error classes to statuses (``app/errors.py``).
"""

from __future__ import annotations

from typing import Any


class AutodiffError(Exception):
    """Base class: a problem with what the user asked for, never a bug."""

    kind = "autodiff-error"
    title = "Invalid function"

    def __init__(
        self,
        message: str,
        *,
        op: str | None = None,
        shapes: list[tuple[int, ...]] | None = None,
        loc: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.shapes = shapes
        self.loc = loc

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.op, self.shapes, self.loc))

    def with_loc(self, loc: Any) -> AutodiffError:
        """Attach a location if none is set yet (the innermost one wins)."""
        if self.loc is None:
            self.loc = loc
        return self

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[AutodiffError], message: str, op: Any, shapes: Any, loc: Any) -> Any:
    return cls(message, op=op, shapes=shapes, loc=loc)


class ShapeError(AutodiffError):
    """Operands whose shapes do not fit the op (names the op and the shapes)."""

    kind = "shape-mismatch"
    title = "Shape mismatch"


class ValueDomainError(AutodiffError):
    """An argument of the right shape but a wrong value (bad axis, singular matrix...)."""

    kind = "invalid-argument"
    title = "Invalid argument"


class UnknownOpError(AutodiffError):
    kind = "unknown-op"
    title = "Unknown op"


class UnknownNameError(AutodiffError):
    kind = "unknown-name"
    title = "Unknown name"


class NonScalarOutputError(AutodiffError):
    kind = "non-scalar-output"
    title = "Non-scalar output"


class NotDifferentiableError(AutodiffError):
    kind = "not-differentiable"
    title = "Not differentiable"


class TracedValueError(NotDifferentiableError):
    """A traced (differentiated) value used where a plain number is needed: ``float(x)``,
    a shape, an axis, a count. Raised rather than letting the value become a constant,
    whose derivative would silently be lost (JAX raises the same way)."""


class LanguageError(AutodiffError):
    """Text or graph outside the language: syntax, forbidden construct, bad call."""

    kind = "language-error"
    title = "Invalid program"


class IterationLimitError(AutodiffError):
    kind = "iteration-limit"
    title = "Iteration limit exceeded"


class SizeLimitError(AutodiffError):
    """A result (or input, or body) larger than the configured limit; refused before allocation."""

    kind = "size-limit"
    title = "Too large"
