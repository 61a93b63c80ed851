import scipy.stats as _s

from autograd._shim import guard


def __getattr__(name):
    return guard(getattr(_s.poisson, name), "scipy.stats.poisson." + name)
