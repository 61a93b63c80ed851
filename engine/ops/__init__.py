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
    "selection",
    "decompositions",
    "matfuncs",
    "ordering",
    "complex_numbers",
    "fft",
    "eig",
    "ufuncs",  # more elementwise functions (the special helper, issue 15)
    "special",  # scipy.special's functions and logsumexp with b= (issue 15)
    "building",
)
for _family in FAMILIES:
    importlib.import_module(f"engine.ops.{_family}")

from engine.ops.complex_numbers import refuse_complex  # noqa: E402

refuse_complex()  # after every family: ordering ops refuse complex values
