"""``autograd.scipy.stats``: the engine has no distribution objects; SciPy's, guarded.

(Not the engine's ops by name: its ``norm`` is linalg's, not the normal distribution.)"""

import scipy.stats as _fallback

from autograd._shim import guard


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return guard(getattr(_fallback, name), "scipy.stats." + name)
