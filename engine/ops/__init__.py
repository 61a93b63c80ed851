"""The rule tables, one module per op family. Importing this registers every op."""

from engine.ops import constructors, elementwise, linalg, reductions, shape

__all__ = ["constructors", "elementwise", "linalg", "reductions", "shape"]
