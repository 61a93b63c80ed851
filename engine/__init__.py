"""A vectorised NumPy autodiff engine: reverse and forward mode, any order.

import engine as ad
import engine.numpy as anp

ad.grad(lambda x: 2 * anp.dot(x, x))(np.arange(4.0))   # -> [0, 4, 8, 12]
"""

from engine import numpy  # noqa: F401  (registers the ops and the operators on boxes)
from engine.errors import AutodiffError
from engine.transforms import (
    grad,
    hessian,
    hessian_and_grad,
    hvp,
    hvp_and_grad,
    hvp_many,
    jacobian,
    jacobian_and_value,
    jvp,
    jvp_many,
    value_and_grad,
    vjp,
    vjp_many,
)

__all__ = [
    "AutodiffError",
    "grad",
    "hessian",
    "hessian_and_grad",
    "hvp",
    "hvp_and_grad",
    "hvp_many",
    "jacobian",
    "jacobian_and_value",
    "jvp",
    "jvp_many",
    "value_and_grad",
    "vjp",
    "vjp_many",
]
