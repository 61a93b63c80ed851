"""``autograd.numpy.random`` is NumPy's (random draws are inputs, never traced)."""

from numpy.random import *  # noqa: F401,F403
from numpy.random import RandomState, default_rng, rand, randint, randn, seed  # noqa: F401
