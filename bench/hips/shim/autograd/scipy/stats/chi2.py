import scipy.stats as _s

from autograd._shim import guard


def __getattr__(name):
    return guard(getattr(_s.chi2, name), "scipy.stats.chi2." + name)
