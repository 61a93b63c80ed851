"""``autograd.numpy`` -> the engine's ops (``engine.numpy``), NumPy's guarded names elsewhere."""

import numpy as _np

from autograd._shim import namespace_getattr
from autograd.numpy import fft, linalg, random  # noqa: F401

__getattr__ = namespace_getattr(_np, "numpy")
