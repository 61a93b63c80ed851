import scipy.stats as _s

from autograd._shim import guard


def __getattr__(name):
    return guard(getattr(_s.norm, name), "scipy.stats.norm." + name)
