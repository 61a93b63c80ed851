import scipy.signal as _fallback

from autograd._shim import namespace_getattr, unsupported

# autograd's own n-d convolution (with ``axes``/``dot_axes``): the engine has no convolve
convolve = unsupported("autograd.scipy.signal.convolve (the engine has no convolve)")
__getattr__ = namespace_getattr(_fallback, "scipy.signal")
