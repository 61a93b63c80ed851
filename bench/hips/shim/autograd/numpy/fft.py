import numpy as _np

from autograd._shim import namespace_getattr

__getattr__ = namespace_getattr(_np.fft, "numpy.fft")
