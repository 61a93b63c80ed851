"""The rule tables, one module per op family. Importing this registers every op."""

from engine.ops import constructors, elementwise, reductions, shape

try:  # linalg lands separately; TODO(lead): import unconditionally once it exists
    from engine.ops import linalg  # noqa: F401
except ImportError:
    pass

__all__ = ["constructors", "elementwise", "reductions", "shape"]
