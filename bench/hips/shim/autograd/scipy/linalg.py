import scipy.linalg as _fallback

from autograd._shim import namespace_getattr

__getattr__ = namespace_getattr(_fallback, "scipy.linalg")
