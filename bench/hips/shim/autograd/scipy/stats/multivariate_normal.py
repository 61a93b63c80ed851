import scipy.stats as _s

from autograd._shim import guard


def __getattr__(name):
    return guard(getattr(_s.multivariate_normal, name), "scipy.stats.multivariate_normal." + name)
