"""The rule tables, one module per op family. Importing this registers every op.

The families are imported in a fixed order, which is the registration order (and so the
order ``GET /ops`` lists the ops in).
"""

import importlib

FAMILIES = (
    "constructors",
    "elementwise",
    "products",
    "einsum",
    "matrix",
    "reductions",
    "shape",
    "building",
)
for _family in FAMILIES:
    importlib.import_module(f"engine.ops.{_family}")
