"""The shim's plumbing: namespaces over the engine's ops, and the "unsupported" error.

A name the engine has is the engine's op. A NumPy/SciPy name it lacks is NumPy's/SciPy's own
function, guarded: called with a traced value it raises ``ShimUnsupported`` (the engine has no
such op), never a silent non-differentiable answer. Constants and types pass through.
"""

from __future__ import annotations

import types
from typing import Any

from engine.core.trace import Box
from engine.registry import OPS


class ShimUnsupported(Exception):
    """The engine or this shim lacks what the test asks for (an op, an autograd API)."""


class ShimMissing(ShimUnsupported, AttributeError):
    """A name neither the engine nor NumPy/SciPy has (autograd's own, e.g. ``make_diagonal``)."""


def contains_box(obj: Any, depth: int = 0) -> bool:
    if isinstance(obj, Box):
        return True
    if depth > 3:
        return False
    if isinstance(obj, (list, tuple)):
        return any(contains_box(o, depth + 1) for o in obj)
    if isinstance(obj, dict):
        return any(contains_box(o, depth + 1) for o in obj.values())
    return False


def unsupported(what: str) -> Any:
    def raiser(*args: Any, **kwargs: Any) -> Any:
        raise ShimUnsupported(what)

    raiser.__name__ = what.split()[-1] if what else "unsupported"
    return raiser


class Guarded:
    """A NumPy/SciPy object whose calls refuse traced arguments."""

    def __init__(self, target: Any, path: str) -> None:
        self._target = target
        self._path = path

    def __getattr__(self, name: str) -> Any:
        return guard(getattr(self._target, name), f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if contains_box(args) or contains_box(kwargs):
            raise ShimUnsupported(f"the engine has no op {self._path}")
        return self._target(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<guarded {self._path}>"


def guard(obj: Any, path: str) -> Any:
    if isinstance(obj, type) or not (callable(obj) or isinstance(obj, types.ModuleType)):
        return obj  # constants, dtypes, classes (np.float64, np.ndarray, np.pi...)
    return Guarded(obj, path)


_NAMED: dict[str, Any] = {}


def named(op: Any, name: str) -> Any:
    """The engine's op as a plain function with a ``__name__`` (tests print ``f.__name__``)."""
    if name not in _NAMED:

        def call(*args: Any, **kwargs: Any) -> Any:
            return op(*args, **kwargs)

        call.__name__ = call.__qualname__ = name
        call.__doc__ = getattr(op, "doc", None) or getattr(op, "__doc__", None)
        _NAMED[name] = call
    return _NAMED[name]


def namespace_getattr(fallback: Any, path: str, aliases: dict[str, str] | None = None):
    """A module ``__getattr__``: the engine's op by that name, else the guarded fallback."""
    aliases = aliases or {}

    def __getattr__(name: str) -> Any:
        if name == "__version__":
            return getattr(fallback, name)
        if name.startswith("__"):
            raise AttributeError(name)
        op = aliases.get(name, name)
        if op in OPS:
            return named(OPS[op], name)
        try:
            target = getattr(fallback, name)
        except AttributeError:
            raise ShimMissing(f"{path} has no attribute {name} (autograd's own)") from None
        return guard(target, f"{path}.{name}")

    return __getattr__
