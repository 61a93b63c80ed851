from autograd.scipy import integrate, linalg, misc, signal, special, stats  # noqa: F401
